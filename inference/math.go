package inference

import (
	"math"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/kernels/nn"
)

// dot returns sum x[i]*y[i], with four accumulators for instruction-level parallelism.
func dot(x, y []float32) float32 {
	y = y[:len(x)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// axpy computes y += a*x.
func axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

// softmax turns row into probabilities in place, subtracting the row's max for stability.
func softmax(row []float32) {
	mx := float32(math.Inf(-1))
	for _, v := range row {
		if v > mx {
			mx = v
		}
	}
	sum := nn.ExpShift(row, row, 1, -mx)
	kernels.Scale(1/sum, row)
}
