package nn

import (
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/posttrain/posttrain/kernels"
)

// The benchmarks use the bench preset's shapes (T=256, head_dim 32, hidden 256,
// intermediate 688, vocab 4096) and report per-call time, single-threaded, as a
// breakdown of a training step's non-matmul work.

func BenchmarkAttentionHead(b *testing.B) {
	const T, hd, stride = 256, 32, 256
	pool := kernels.NewPool(1)
	b.Cleanup(pool.Close)
	rng := rand.New(rand.NewPCG(1, 1))
	q, k, v := randVec(rng, T*stride, 1), randVec(rng, T*stride, 1), randVec(rng, T*stride, 1)
	out, dout := make([]float32, T*stride), randVec(rng, T*stride, 1)
	dq, dk, dv := make([]float32, T*stride), make([]float32, T*stride), make([]float32, T*stride)
	probs, lse, scratch := make([]float32, T*T), make([]float32, T), make([]float32, AttentionBackwardScratch(T, T))
	sh := AttnShape{Tq: T, S: T, HeadDim: hd, QStride: stride, KStride: stride, VStride: stride, OStride: stride, Scale: float32(1 / math.Sqrt(hd))}
	b.Run("forward", func(b *testing.B) {
		c0 := cpuTime()
		for b.Loop() {
			AttentionHeadForwardLSE(pool, sh, q, k, v, nil, nil, probs, lse, out)
		}
		reportCPU(b, c0)
	})
	b.Run("backward", func(b *testing.B) {
		c0 := cpuTime()
		for b.Loop() {
			AttentionHeadBackward(pool, sh, q, k, v, nil, nil, lse, dout, dq, dk, dv, scratch)
		}
		reportCPU(b, c0)
	})
}

func BenchmarkLogProb(b *testing.B) {
	const rows, vocab = 64, 4096
	rng := rand.New(rand.NewPCG(2, 2))
	logits := randVec(rng, rows*vocab, 2)
	dl := make([]float32, rows*vocab)
	targets := make([]int32, rows)
	coef := make([]float32, rows)
	for i := range targets {
		targets[i] = int32(rng.IntN(vocab))
		coef[i] = -1.0 / rows
	}
	logp, lse := make([]float32, rows), make([]float32, rows)
	b.Run("forward", func(b *testing.B) {
		cpuLoop(b, func() { LogProbForward(logits, vocab, targets, logp, lse) })
	})
	b.Run("backward", func(b *testing.B) {
		cpuLoop(b, func() { LogProbBackward(logits, vocab, targets, lse, coef, dl) })
	})
}

func BenchmarkSwiGLU(b *testing.B) {
	const n = 64 * 688
	rng := rand.New(rand.NewPCG(3, 3))
	g, u, d := randVec(rng, n, 1), randVec(rng, n, 1), randVec(rng, n, 1)
	out, dg, du := make([]float32, n), make([]float32, n), make([]float32, n)
	b.Run("forward", func(b *testing.B) {
		cpuLoop(b, func() { SwiGLUForward(g, u, out) })
	})
	b.Run("backward", func(b *testing.B) {
		cpuLoop(b, func() { SwiGLUBackward(g, u, d, dg, du) })
	})
}

func BenchmarkRMSNorm(b *testing.B) {
	const rows, dim = 64, 256
	rng := rand.New(rand.NewPCG(4, 4))
	x, w, dy := randVec(rng, rows*dim, 1), randVec(rng, dim, 1), randVec(rng, rows*dim, 1)
	y, dx, dw, rinv := make([]float32, rows*dim), make([]float32, rows*dim), make([]float32, dim), make([]float32, rows)
	b.Run("forward", func(b *testing.B) {
		cpuLoop(b, func() { RMSNormForward(x, w, y, rinv, dim, 1e-5) })
	})
	b.Run("backward", func(b *testing.B) {
		cpuLoop(b, func() { RMSNormBackward(x, w, rinv, dy, dx, dw, dim) })
	})
}

func BenchmarkRoPE(b *testing.B) {
	const rows, heads, hd = 64, 8, 32
	r, err := NewRoPE(hd, 256, 500000)
	if err != nil {
		b.Fatal(err)
	}
	x := randVec(rand.New(rand.NewPCG(5, 5)), rows*heads*hd, 1)
	pos := make([]int32, rows)
	for i := range pos {
		pos[i] = int32(i)
	}
	for b.Loop() {
		r.Forward(x, heads*hd, heads, pos)
	}
}

func BenchmarkExpShift(b *testing.B) {
	x := randVec(rand.New(rand.NewPCG(6, 6)), 4096, 3)
	dst := make([]float32, len(x))
	b.Run("vector", func(b *testing.B) {
		cpuLoop(b, func() { ExpShift(dst, x, 1, -9) })
	})
	b.Run("scalar", func(b *testing.B) {
		for b.Loop() {
			for i, v := range x {
				dst[i] = expf(v - 9)
			}
		}
	})
	b.Run("max", func(b *testing.B) {
		cpuLoop(b, func() { _ = maxOf(x) })
	})
}

// reportCPU reports the process CPU time per call, steadier than wall time on a busy machine.
func reportCPU(b *testing.B, c0 time.Duration) {
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the user+system CPU time used by the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuLoop runs fn b.N times and reports the CPU time per call.
func cpuLoop(b *testing.B, fn func()) {
	c0 := cpuTime()
	for b.Loop() {
		fn()
	}
	reportCPU(b, c0)
}
