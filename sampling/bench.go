package sampling

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/transformer"
)

// BenchOptions describe a synthetic rejection-sampling workload.
type BenchOptions struct {
	// Prompts random prompts of PromptLen tokens, K samples each of exactly
	// MaxNewTokens tokens (no stop tokens, so both sharing modes do the same work).
	Prompts, PromptLen, K, MaxNewTokens int
	// NoSharing measures the baseline where every sample prefills the prompt itself,
	// in the policy and in the reward model.
	NoSharing bool
	// KVBudget bounds the KV cache as in Options (0 = DefaultKVBudget).
	KVBudget int64
	// MaxBatch is the decode batch (0 = DefaultMaxBatch).
	MaxBatch int
	Seed     uint64
}

// DefaultBenchOptions: 4 prompts of 128 tokens, K=16, 64 new tokens.
func DefaultBenchOptions() BenchOptions {
	return BenchOptions{Prompts: 4, PromptLen: 128, K: 16, MaxNewTokens: 64, Seed: 1}
}

// Benchmark runs rejection sampling (temperature 1, top-p 0.95, scoring and best-of-K
// selection included) on a random workload and returns its statistics: SamplesPerSec,
// TokensPerSec and the prefill/decode/score times. rm is the reward model; nil scores
// with a random-weight classifier of the policy's shape. With sharing, scoring goes
// through a PrefixScorer; without, through reward.Scorer's full forward pass.
func Benchmark(ctx context.Context, policy, rm *transformer.Model, opts BenchOptions) (Stats, error) {
	if policy == nil {
		return Stats{}, fmt.Errorf("sampling benchmark: nil policy")
	}
	if opts.Prompts < 1 || opts.PromptLen < 1 || opts.K < 1 || opts.MaxNewTokens < 1 {
		return Stats{}, fmt.Errorf("sampling benchmark: prompts %d, prompt length %d, k %d and max new tokens %d must all be >= 1", opts.Prompts, opts.PromptLen, opts.K, opts.MaxNewTokens)
	}
	var err error
	if rm == nil {
		cfg := policy.Config
		cfg.Architectures = []string{transformer.ArchSequenceClassifier}
		cfg.NumLabels = 1
		m, err := transformer.New(cfg, policy.Pool)
		if err != nil {
			return Stats{}, fmt.Errorf("sampling benchmark: reward model: %w", err)
		}
		m.Init(opts.Seed + 1)
		rm = m
	}
	// Sharing covers scoring too: the shared run scores through the reward model's KV
	// cache (PrefixScorer), the baseline runs the whole prompt+response per sample.
	var scorer Scorer
	if opts.NoSharing {
		scorer, err = reward.NewScorer(rm, reward.DefaultScoreBatch, opts.PromptLen+opts.MaxNewTokens)
	} else {
		scorer, err = NewPrefixScorer(rm, opts.MaxBatch)
	}
	if err != nil {
		return Stats{}, fmt.Errorf("sampling benchmark: %w", err)
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 3))
	prompts := make([]Prompt, opts.Prompts)
	for i := range prompts {
		toks := make([]int32, opts.PromptLen)
		for j := range toks {
			toks[j] = int32(rng.IntN(policy.Config.VocabSize))
		}
		prompts[i] = Prompt{ID: fmt.Sprintf("bench-%d", i), Index: i, Tokens: toks}
	}
	res, err := Run(ctx, policy, scorer, prompts, Options{
		K: opts.K, Seed: opts.Seed, KVBudget: opts.KVBudget, MaxBatch: opts.MaxBatch, NoSharing: opts.NoSharing,
		Params: Params{Temperature: 1, TopP: 0.95, MaxNewTokens: opts.MaxNewTokens},
		Select: Selection{KeepTruncated: true},
	})
	if err != nil {
		return Stats{}, fmt.Errorf("sampling benchmark: %w", err)
	}
	return res.Stats, nil
}

// SharingReport compares one workload with and without prompt-cache sharing.
type SharingReport struct {
	Options  BenchOptions `json:"options"`
	Shared   Stats        `json:"shared"`
	Unshared Stats        `json:"unshared"`
	// Speedup is shared samples/s over unshared samples/s (whole run, scoring
	// included); GenSpeedup the same for generation alone (prefill + decode + draw).
	Speedup    float64 `json:"speedup"`
	GenSpeedup float64 `json:"gen_speedup"`
}

// CompareSharing runs Benchmark with and without sharing on the same workload.
func CompareSharing(ctx context.Context, policy, rm *transformer.Model, opts BenchOptions) (SharingReport, error) {
	rep := SharingReport{Options: opts}
	var err error
	opts.NoSharing = false
	if rep.Shared, err = Benchmark(ctx, policy, rm, opts); err != nil {
		return rep, err
	}
	opts.NoSharing = true
	if rep.Unshared, err = Benchmark(ctx, policy, rm, opts); err != nil {
		return rep, err
	}
	if rep.Unshared.SamplesPerSec > 0 {
		rep.Speedup = rep.Shared.SamplesPerSec / rep.Unshared.SamplesPerSec
	}
	if rep.Unshared.GenTokensPerSec > 0 {
		rep.GenSpeedup = rep.Shared.GenTokensPerSec / rep.Unshared.GenTokensPerSec
	}
	return rep, nil
}
