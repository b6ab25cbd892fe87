package kernels

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// benchShapes are the bench model's matmuls (batch*seq = 2048 rows, hidden 256,
// intermediate 688, vocab 4096), their backward-pass transposes, and decoding shapes
// (16 sequences).
var benchShapes = []struct {
	name           string
	transA, transB bool
	m, n, k        int
}{
	{"fwd_qkv_2048x256x256", false, true, 2048, 256, 256},
	{"fwd_mlp_2048x688x256", false, true, 2048, 688, 256},
	{"fwd_down_2048x256x688", false, true, 2048, 256, 688},
	{"fwd_head_2048x4096x256", false, true, 2048, 4096, 256},
	{"bwd_dx_2048x256x688", false, false, 2048, 256, 688},
	{"bwd_dw_688x256x2048", true, false, 688, 256, 2048},
	{"bwd_dw_4096x256x2048", true, false, 4096, 256, 2048},
	{"dec_mlp_16x688x256", false, true, 16, 688, 256},
	{"dec_head_16x4096x256", false, true, 16, 4096, 256},
	{"dec_down_16x256x688", false, true, 16, 256, 688},
	{"attn_qk_256x256x32", false, true, 256, 256, 32},
	{"attn_pv_256x32x256", false, false, 256, 32, 256},
	{"dec_nn_head_16x4096x256", false, false, 16, 4096, 256},
	{"dec_nn_mlp_16x1376x256", false, false, 16, 1376, 256},
	{"dec_nn_head_1x4096x256", false, false, 1, 4096, 256},
	{"dec_head_1x4096x256", false, true, 1, 4096, 256},
	{"dec_nn_mlp_1x1376x256", false, false, 1, 1376, 256},
	{"dec_scores_1x200x32", false, false, 1, 200, 32},
	{"dec_pv_1x32x200", false, false, 1, 32, 200},
	{"dec_scores_2x200x32", false, false, 2, 200, 32},
	{"dec_pv_2x32x200", false, false, 2, 32, 200},
	{"square_512", false, false, 512, 512, 512},
}

func BenchmarkSgemm(b *testing.B) {
	type namedPool struct {
		name string
		p    *Pool
	}
	var pools []namedPool
	for _, k := range Kernels() {
		pools = append(pools, namedPool{"w1", NewPool(1, WithKernel(k))})
		if k != "go" {
			pools = append(pools, namedPool{"w2", NewPool(2, WithKernel(k))})
		}
	}
	for _, pc := range pools {
		defer pc.p.Close()
		for _, s := range benchShapes {
			b.Run(fmt.Sprintf("%s/%s/%s", s.name, pc.p.Kernel(), pc.name), func(b *testing.B) {
				ar, ac := s.m, s.k
				if s.transA {
					ar, ac = s.k, s.m
				}
				br, bc := s.k, s.n
				if s.transB {
					br, bc = s.n, s.k
				}
				a, bb, c := make([]float32, ar*ac), make([]float32, br*bc), make([]float32, s.m*s.n)
				for i := range a {
					a[i] = float32(i%7) - 3
				}
				for i := range bb {
					bb[i] = float32(i%5) - 2
				}
				b.ReportAllocs()
				cpu0 := processCPUTime()
				for b.Loop() {
					pc.p.Sgemm(s.transA, s.transB, s.m, s.n, s.k, 1, a, ac, bb, bc, 0, c, s.n)
				}
				flops := 2 * float64(s.m) * float64(s.n) * float64(s.k) * float64(b.N)
				b.ReportMetric(flops/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				if cpu := (processCPUTime() - cpu0).Seconds(); cpu0 > 0 && cpu > 0 {
					// Per CPU-second of all threads: what one core delivers, whatever
					// else runs on the machine.
					b.ReportMetric(flops/cpu/1e9, "GFLOP/cpu-s")
				}
			})
		}
	}
}

func TestMeasureSgemm(t *testing.T) {
	p := NewPool(1)
	defer p.Close()
	r := MeasureSgemm(p, 32, 48, 16, 5*time.Millisecond)
	assert.Positive(t, r.GFLOPS)
	assert.GreaterOrEqual(t, r.Calls, 1)
	if runtime.GOOS == "linux" {
		assert.Positive(t, r.GFLOPSPerCPUSecond)
	} else {
		assert.Zero(t, r.GFLOPSPerCPUSecond)
	}
	assert.Positive(t, MeasureSgemmGFLOPS(p, 8, 8, 8, 0), "at least one call is timed")
}
