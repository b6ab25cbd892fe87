package inference

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/transformer"
)

// TestCompletionsIndependentOfBatch decodes one request alone and inside batches of other
// sizes (other prompts before and after it, MaxBatch from 1 to 16, so its samples share
// decode steps with 0 to 15 other rows and start at different times), on every sgemm
// kernel with one and two workers, and requires bit-identical tokens and log-probs: a
// sample must not depend on which other samples share its decode batch, or on the worker
// that runs a shard of the prompts. One config has one query head per key/value head, so
// attention runs one-row products too; its MLP reduces over more than one K block.
func TestCompletionsIndependentOfBatch(t *testing.T) {
	wide := testConfig()
	wide.NumKeyValueHeads = wide.NumAttentionHeads
	wide.HiddenSize, wide.IntermediateSize = 64, 300
	ctx := context.Background()
	for ci, cfg := range []struct {
		name string
		c    transformer.Config
	}{{"gqa", testConfig()}, {"mha-wide", wide}} {
		c := cfg.c
		rng := rand.New(rand.NewPCG(9, uint64(ci)))
		req := Request{Prompt: randTokens(rng, 9, c.VocabSize), Samples: 5, Params: Params{MaxNewTokens: 12, Temperature: 1, Seed: 7, LogProbs: true}}
		before := Request{Prompt: randTokens(rng, 6, c.VocabSize), Samples: 3, Params: Params{MaxNewTokens: 5, Temperature: 0.8, Seed: 3}}
		after := Request{Prompt: randTokens(rng, 13, c.VocabSize), Samples: 4, Params: Params{MaxNewTokens: 9, Temperature: 1, TopK: 6, Seed: 4}}
		var want []Completion
		for _, kname := range kernels.Kernels() {
			for _, workers := range []int{1, 2} {
				pool := kernels.NewPool(workers, kernels.WithKernel(kname))
				t.Cleanup(pool.Close)
				m := newModelOn(t, c, pool)
				for _, maxBatch := range []int{1, 2, 3, 5, 16} {
					e, err := NewEngine(m, Options{MaxBatch: maxBatch})
					require.NoError(t, err)
					for _, bt := range []struct {
						reqs []Request
						at   int // index of req
					}{{[]Request{req}, 0}, {[]Request{before, req}, 1}, {[]Request{req, after}, 0}, {[]Request{before, req, after}, 1}} {
						batch := bt.reqs
						name := fmt.Sprintf("%s/%s/w%d/maxbatch%d/%d requests", cfg.name, kname, workers, maxBatch, len(batch))
						got, err := e.GenerateBatch(ctx, batch, nil)
						require.NoError(t, err, name)
						comps := got[bt.at]
						if want == nil {
							want = comps
							require.Len(t, want, req.Samples)
						}
						requireSameCompletions(t, want, comps, name)
					}
				}
			}
			// Kernels differ in blocking and tile shape, so each one has its own bits.
			want = nil
		}
	}
}

// requireSameCompletions compares tokens and the bits of every log-prob.
func requireSameCompletions(t *testing.T, want, got []Completion, name string) {
	t.Helper()
	require.Len(t, got, len(want), name)
	for i := range want {
		require.Equal(t, want[i].Tokens, got[i].Tokens, "%s: sample %d tokens", name, i)
		require.Len(t, got[i].LogProbs, len(want[i].LogProbs), name)
		for j, lp := range want[i].LogProbs {
			require.Equal(t, math.Float32bits(lp), math.Float32bits(got[i].LogProbs[j]),
				"%s: sample %d token %d log-prob %v, want %v", name, i, j, got[i].LogProbs[j], lp)
		}
	}
}
