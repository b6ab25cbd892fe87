package sampling

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/require"
)

// env is a tiny random policy and reward model on one kernel pool.
type env struct {
	pool   *kernels.Pool
	policy *transformer.Model
	rm     *transformer.Model
	scorer *reward.Scorer
}

func newEnv(t testing.TB) *env {
	t.Helper()
	pool := kernels.NewPool(2)
	t.Cleanup(pool.Close)
	cfg, err := transformer.Preset("tiny")
	require.NoError(t, err)
	policy, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	policy.Init(11)
	rcfg := cfg
	rcfg.Architectures = []string{transformer.ArchSequenceClassifier}
	rcfg.NumLabels = 1
	rm, err := transformer.New(rcfg, pool)
	require.NoError(t, err)
	rm.Init(12)
	sc, err := reward.NewScorer(rm, 8, 0)
	require.NoError(t, err)
	return &env{pool: pool, policy: policy, rm: rm, scorer: sc}
}

// idPrompts makes n pre-tokenized prompts of varied lengths with ids p0, p1, ...
func idPrompts(n int, seed uint64, vocab int) []Prompt {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]Prompt, n)
	for i := range out {
		toks := make([]int32, 3+rng.IntN(10))
		for j := range toks {
			toks[j] = int32(rng.IntN(vocab))
		}
		out[i] = Prompt{ID: fmt.Sprintf("p%d", i), Index: i, Line: i + 1, Tokens: toks}
	}
	return out
}

// baseOpts samples K=4 of up to 8 tokens, stopping on a quarter of the vocabulary so
// that both finish reasons occur.
func baseOpts() Options {
	stops := make([]int32, 0, 128)
	for i := int32(0); i < 512; i += 4 {
		stops = append(stops, i)
	}
	return Options{K: 4, Seed: 7, Params: Params{Temperature: 1, TopP: 0.95, MaxNewTokens: 8, StopTokens: stops},
		Select: Selection{KeepTruncated: true}}
}

// tokensOf maps (prompt id, sample index) to the sampled tokens.
func tokensOf(cands []Candidate) map[string][]int32 {
	out := make(map[string][]int32, len(cands))
	for _, c := range cands {
		out[fmt.Sprintf("%s/%d", c.PromptID, c.SampleIndex)] = c.Tokens
	}
	return out
}
