package kernels

import "fmt"

// Dot returns sum_i a[i]*b[i]. It panics if the lengths differ. The summation order
// (several vector accumulators) differs from a plain loop, so the last bits may too.
func Dot(a, b []float32) float32 {
	if len(a) != len(b) {
		panic(fmt.Sprintf("kernels: Dot: lengths %d and %d differ", len(a), len(b)))
	}
	return dot(a, b)
}

// Axpy sets y += alpha*x. It panics if the lengths differ.
func Axpy(alpha float32, x, y []float32) {
	if len(x) != len(y) {
		panic(fmt.Sprintf("kernels: Axpy: lengths %d and %d differ", len(x), len(y)))
	}
	axpy(alpha, x, y)
}

// Scale sets x *= alpha.
func Scale(alpha float32, x []float32) { scale(alpha, x) }

// dotGo is the portable Dot; four accumulators break the add dependency chain.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}

func axpyGo(alpha float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += alpha * v
	}
}

func scaleGo(alpha float32, x []float32) {
	for i := range x {
		x[i] *= alpha
	}
}
