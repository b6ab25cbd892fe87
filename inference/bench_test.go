package inference

import (
	"context"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/transformer"
)

// BenchmarkSample measures the bench preset's sampling shape, as `posttrain bench` reports
// it (sample_tokens_per_s) and as ../shared/bench/torch_llama.py --mode sample runs it: one
// 64-token prompt, K=16 samples of 128 new tokens, temperature 1, KV cache.
func BenchmarkSample(b *testing.B) {
	cfg, err := transformer.Preset("bench")
	require.NoError(b, err)
	pool := kernels.NewPool(runtime.GOMAXPROCS(0))
	b.Cleanup(pool.Close)
	m, err := transformer.New(cfg, pool)
	require.NoError(b, err)
	m.Init(1)
	e, err := NewEngine(m, Options{MaxBatch: 16})
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(1, 2))
	req := Request{Prompt: randTokens(rng, 64, cfg.VocabSize), Samples: 16, Params: Params{MaxNewTokens: 128, Temperature: 1, Seed: 1}}
	ctx := context.Background()
	_, err = e.Generate(ctx, req)
	require.NoError(b, err)
	e.ResetStats()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.Generate(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	st := e.Stats()
	b.ReportMetric(float64(b.N*16*128)/b.Elapsed().Seconds(), "tokens/s")
	n := float64(b.N)
	b.ReportMetric(st.PrefillTime.Seconds()*1e3/n, "prefill-ms/op")
	b.ReportMetric(st.DecodeTime.Seconds()*1e3/n, "decode-ms/op")
	b.ReportMetric(st.SampleTime.Seconds()*1e3/n, "sample-ms/op")
}

// BenchmarkSampleBatch is the rejection-sampling shape: four 64-token prompts, 16 samples
// each of 128 new tokens, all 64 sequences decoded together.
func BenchmarkSampleBatch(b *testing.B) {
	cfg, err := transformer.Preset("bench")
	require.NoError(b, err)
	pool := kernels.NewPool(runtime.GOMAXPROCS(0))
	b.Cleanup(pool.Close)
	m, err := transformer.New(cfg, pool)
	require.NoError(b, err)
	m.Init(1)
	e, err := NewEngine(m, Options{MaxBatch: 64})
	require.NoError(b, err)
	rng := rand.New(rand.NewPCG(1, 2))
	var reqs []Request
	for i := range 4 {
		reqs = append(reqs, Request{Prompt: randTokens(rng, 64, cfg.VocabSize), Samples: 16, Params: Params{MaxNewTokens: 128, Temperature: 1, Seed: uint64(i)}})
	}
	ctx := context.Background()
	_, err = e.GenerateBatch(ctx, reqs, nil)
	require.NoError(b, err)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := e.GenerateBatch(ctx, reqs, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*64*128)/b.Elapsed().Seconds(), "tokens/s")
}
