package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/transformer"
)

// measureSampling times what the peer's sample mode does: one random prompt, Samples
// completions of exactly NewTokens tokens each (temperature 1, no stop tokens) with a KV
// cache, counting Samples*NewTokens over the wall time including the prefill.
func measureSampling(ctx context.Context, m *transformer.Model, opts Options, res *Result) error {
	if opts.PromptLen < 1 || opts.Samples < 1 || opts.NewTokens < 1 {
		return fmt.Errorf("bench: prompt %d, samples %d and new tokens %d must be >= 1", opts.PromptLen, opts.Samples, opts.NewTokens)
	}
	if opts.PromptLen+opts.NewTokens > m.Config.MaxPositionEmbeddings {
		return fmt.Errorf("bench: prompt %d + new tokens %d exceed the context %d", opts.PromptLen, opts.NewTokens, m.Config.MaxPositionEmbeddings)
	}
	eng, err := inference.NewEngine(m, inference.Options{MaxBatch: opts.Samples})
	if err != nil {
		return fmt.Errorf("bench: sampling: %w", err)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 7))
	prompt := make([]int32, opts.PromptLen)
	for i := range prompt {
		prompt[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	req := inference.Request{Prompt: prompt, Samples: opts.Samples,
		Params: inference.Params{MaxNewTokens: opts.NewTokens, Temperature: 1, Seed: opts.Seed}}
	cpu0, start := cpuTime(), time.Now()
	out, err := eng.Generate(ctx, req)
	el, cpu := time.Since(start), cpuTime()-cpu0
	if err != nil {
		return fmt.Errorf("bench: sampling: %w", err)
	}
	tokens := 0
	for _, c := range out {
		tokens += len(c.Tokens)
	}
	if tokens != opts.Samples*opts.NewTokens {
		return fmt.Errorf("bench: sampling produced %d tokens, want %d", tokens, opts.Samples*opts.NewTokens)
	}
	res.SampleTokensPerS = float64(tokens) / el.Seconds()
	if cpu > 0 {
		res.SampleTokensPerCPUS = float64(tokens) / cpu.Seconds()
	}
	return nil
}
