package sampling

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/require"
)

// BenchmarkRejectionSampling measures K=16 and K=30 on the bench preset with and
// without prompt-cache sharing (4 prompts of 128 tokens, 64 new tokens per sample,
// scoring included). Compare samples/s between the shared and unshared variants.
func BenchmarkRejectionSampling(b *testing.B) {
	pool := kernels.NewPool(runtime.GOMAXPROCS(0))
	defer pool.Close()
	cfg, err := transformer.Preset("bench")
	require.NoError(b, err)
	policy, err := transformer.New(cfg, pool)
	require.NoError(b, err)
	policy.Init(1)
	for _, k := range []int{16, 30} {
		for _, share := range []bool{true, false} {
			name := fmt.Sprintf("K=%d/shared=%v", k, share)
			b.Run(name, func(b *testing.B) {
				o := DefaultBenchOptions()
				o.K, o.NoSharing = k, !share
				var st Stats
				cpu0 := cpuSeconds()
				runs := 0
				for b.Loop() {
					st, err = Benchmark(context.Background(), policy, nil, o)
					require.NoError(b, err)
					runs++
				}
				// CPU time is the fairer figure on a shared machine: wall time counts
				// the time other processes hold the cores.
				if cpu := (cpuSeconds() - cpu0) / float64(runs); cpu > 0 {
					b.ReportMetric(float64(st.Samples)/cpu, "samples/cpu-s")
					b.ReportMetric(float64(st.GeneratedTokens)/cpu, "tokens/cpu-s")
				}
				b.ReportMetric(st.SamplesPerSec, "samples/s")
				b.ReportMetric(st.TokensPerSec, "tokens/s")
				b.ReportMetric(st.GenTokensPerSec, "gen-tokens/s")
				b.ReportMetric(float64(st.PrefillTime.Milliseconds()), "prefill-ms")
				b.ReportMetric(float64(st.DecodeTime.Milliseconds()), "decode-ms")
				b.ReportMetric(float64(st.DrawTime.Milliseconds()), "draw-ms")
				b.ReportMetric(float64(st.ScoreTime.Milliseconds()), "score-ms")
			})
		}
	}
}

func TestBenchmarkSmoke(t *testing.T) {
	e := newEnv(t)
	o := BenchOptions{Prompts: 2, PromptLen: 16, K: 3, MaxNewTokens: 4, Seed: 1}
	st, err := Benchmark(context.Background(), e.policy, e.rm, o)
	require.NoError(t, err)
	require.Equal(t, 6, st.Samples)
	require.Equal(t, int64(24), st.GeneratedTokens)
	require.Equal(t, int64(2*16), st.PrefillTokens)
	o.NoSharing = true
	st, err = Benchmark(context.Background(), e.policy, nil, o)
	require.NoError(t, err)
	require.Equal(t, int64(6*16), st.PrefillTokens)
	rep, err := CompareSharing(context.Background(), e.policy, nil, BenchOptions{Prompts: 2, PromptLen: 16, K: 3, MaxNewTokens: 4, Seed: 1})
	require.NoError(t, err)
	require.Equal(t, int64(2*16), rep.Shared.PrefillTokens)
	require.Equal(t, int64(6*16), rep.Unshared.PrefillTokens)
	require.Positive(t, rep.Speedup)
	_, err = Benchmark(context.Background(), e.policy, nil, BenchOptions{})
	require.ErrorContains(t, err, "must all be >= 1")
}
