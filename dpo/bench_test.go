package dpo

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/kernels"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// BenchmarkDPOTrainStep measures DPO training throughput on the bench preset: one
// optimizer update per iteration over 4 pairs (64-token prompt, 64-token chosen and
// rejected responses: 8 sequences of 127 positions), forward + objective + backward +
// AdamW. The reference log-probs are precomputed, as in training. Reports pairs/s.
func BenchmarkDPOTrainStep(b *testing.B) {
	pool := kernels.NewPool(runtime.NumCPU())
	defer pool.Close()
	m := testmodel.Preset(b, pool, "bench", 1)
	o := DefaultThroughputOptions()
	r, err := newBenchRun(context.Background(), m, o)
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := r.update(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*o.Batch)/time.Since(start).Seconds(), "pairs/s")
}

func TestMeasureThroughput(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	m := testmodel.Tiny(t, pool, 1)
	before := append([]float32(nil), m.W.Data...)
	o := ThroughputOptions{Batch: 2, PromptLen: 8, ResponseLen: 8, Steps: 2, Seed: 1}
	r, err := MeasureThroughput(context.Background(), m, o)
	require.NoError(t, err)
	assert.Equal(t, 2, r.Steps)
	assert.Equal(t, 15, r.SeqTokens)
	assert.Greater(t, r.PairsPerSec, 0.0)
	assert.InDelta(t, r.PairsPerSec*2*15, r.TokensPerSec, 1e-6*r.TokensPerSec)
	assert.Equal(t, testmodel.Bits(before), testmodel.Bits(m.W.Data), "the model is left unchanged")

	o.PromptLen = 300
	_, err = MeasureThroughput(context.Background(), m, o)
	assert.ErrorContains(t, err, "longer than the context window of 256")
}
