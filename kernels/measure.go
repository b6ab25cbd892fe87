package kernels

import (
	"math/rand/v2"
	"time"
)

// SgemmRate is the result of MeasureSgemm.
type SgemmRate struct {
	// GFLOPS is flops per wall-clock second, over all workers.
	GFLOPS float64
	// GFLOPSPerCPUSecond is flops per second of CPU time used by the whole process
	// during the measurement (0 where the platform does not report it). On a shared
	// machine it shows what one core delivers when it actually runs, which wall-clock
	// rates hide; with one worker and an idle machine the two agree.
	GFLOPSPerCPUSecond float64
	// Calls is the number of timed Sgemm calls.
	Calls int
}

// MeasureSgemm runs C = A*B^T (the shape of a linear layer's forward pass) with m x k
// activations and n x k weights on p repeatedly for about d and returns the rates
// (2*m*n*k flops per call). It allocates the operands once, warms up with one call,
// and always times at least one call.
func MeasureSgemm(p *Pool, m, n, k int, d time.Duration) SgemmRate {
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
	cpu0 := processCPUTime()
	start := time.Now()
	var el time.Duration
	for calls == 0 || el < d {
		p.Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		calls++
		el = time.Since(start)
	}
	gflop := 2 * float64(m) * float64(n) * float64(k) * float64(calls) / 1e9
	rate := SgemmRate{GFLOPS: gflop / el.Seconds(), Calls: calls}
	if cpu := processCPUTime() - cpu0; cpu0 > 0 && cpu > 0 {
		rate.GFLOPSPerCPUSecond = gflop / cpu.Seconds()
	}
	return rate
}

// MeasureSgemmGFLOPS is MeasureSgemm's wall-clock rate in GFLOP/s.
func MeasureSgemmGFLOPS(p *Pool, m, n, k int, d time.Duration) float64 {
	return MeasureSgemm(p, m, n, k, d).GFLOPS
}
