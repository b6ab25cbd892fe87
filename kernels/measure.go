package kernels

import (
	"math/rand/v2"
	"time"
)

// MeasureSgemmGFLOPS runs C = A*B^T (the shape of a linear layer's forward pass) with
// m x k activations and n x k weights on p repeatedly for about d and returns the rate in
// GFLOP/s (2*m*n*k flops per call). It allocates the operands once, warms up with one
// call, and always times at least one call.
func MeasureSgemmGFLOPS(p *Pool, m, n, k int, d time.Duration) float64 {
	r := rand.New(rand.NewPCG(1, 2))
	a := make([]float32, m*k)
	b := make([]float32, n*k)
	c := make([]float32, m*n)
	for i := range a {
		a[i] = r.Float32() - 0.5
	}
	for i := range b {
		b[i] = r.Float32() - 0.5
	}
	p.Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
	calls := 0
	start := time.Now()
	var el time.Duration
	for calls == 0 || el < d {
		p.Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		calls++
		el = time.Since(start)
	}
	return 2 * float64(m) * float64(n) * float64(k) * float64(calls) / el.Seconds() / 1e9
}
