package transformer

import (
	"math/rand/v2"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/kernels"
)

// benchSetup builds a preset with a batch of random tokens (B=8, T=256).
func benchSetup(b *testing.B, preset string) (*Model, *Workspace, *Batch, []float32, *Params) {
	cfg, err := Preset(preset)
	require.NoError(b, err)
	pool := kernels.NewPool(runtime.GOMAXPROCS(0))
	b.Cleanup(pool.Close)
	m, err := New(cfg, pool)
	require.NoError(b, err)
	m.Init(1)
	const B, T = 8, 256
	rng := rand.New(rand.NewPCG(1, 2))
	batch := &Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T)}
	for i := range batch.Tokens {
		batch.Tokens[i] = int32(rng.IntN(cfg.VocabSize))
		batch.Targets[i] = int32(rng.IntN(cfg.VocabSize))
	}
	w := make([]float32, B*T)
	for i := range w {
		w[i] = 1
	}
	return m, m.NewWorkspace(B, T), batch, w, m.NewGrads()
}

// BenchmarkTrainStep measures forward+backward (weighted NLL) on the bench preset.
func BenchmarkTrainStep(b *testing.B) { benchTrainStep(b, "bench") }

// BenchmarkTrainStepTiny is the same on the tiny preset the demo trains.
func BenchmarkTrainStepTiny(b *testing.B) { benchTrainStep(b, "tiny") }

func benchTrainStep(b *testing.B, preset string) {
	m, ws, batch, w, g := benchSetup(b, preset)
	_, err := m.WeightedNLL(ws, batch, w, g)
	require.NoError(b, err)
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.WeightedNLL(ws, batch, w, g); err != nil {
			b.Fatal(err)
		}
	}
	reportThroughput(b, batch, cpu0)
}

// BenchmarkForward measures the forward pass alone on the bench preset.
func BenchmarkForward(b *testing.B) {
	m, ws, batch, _, _ := benchSetup(b, "bench")
	require.NoError(b, m.Forward(ws, batch))
	b.ReportAllocs()
	cpu0 := cpuTime()
	b.ResetTimer()
	for b.Loop() {
		if err := m.Forward(ws, batch); err != nil {
			b.Fatal(err)
		}
	}
	reportThroughput(b, batch, cpu0)
}

// reportThroughput reports wall-clock tokens/s and the process CPU time per step: on a
// shared, busy machine the CPU time is the steadier of the two.
func reportThroughput(b *testing.B, batch *Batch, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N*batch.B*batch.T)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// cpuTime is the user+system CPU time used by the process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
