package sampling

import (
	"context"
	"testing"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/reward"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPrefixScorerMatchesForward(t *testing.T) {
	e := newEnv(t)
	ps, err := NewPrefixScorer(e.rm, 3) // batch 3: chunks split a prompt's responses
	require.NoError(t, err)
	plain, err := reward.NewScorer(e.rm, 4, 0)
	require.NoError(t, err)
	pa, pb := []int32{5, 9, 11, 3}, []int32{7, 7}
	seqs := []datasets.Sequence{
		{Prompt: pa, Response: []int32{1, 2, 3}},
		{Prompt: pb, Response: []int32{4}},
		{Prompt: pa, Response: []int32{8}},
		{Prompt: pa, Response: nil}, // reward at the prompt's last token
		{Prompt: pa, Response: []int32{8, 8, 8, 8, 8, 8}},
		{Prompt: []int32{5, 9, 11, 3}, Response: []int32{2}}, // same prompt, other slice
		{Prompt: pb, Response: []int32{9, 9, 1}},
	}
	got, err := ps.Score(context.Background(), seqs)
	require.NoError(t, err)
	want, err := plain.Score(context.Background(), seqs)
	require.NoError(t, err)
	require.Len(t, got, len(seqs))
	for i := range seqs {
		assert.InDelta(t, want[i], got[i], 1e-4, "sequence %d", i)
	}
	assert.NotEqual(t, got[0], got[2], "different responses, different rewards")

	// Prefill once per distinct prompt: 2 prompts here.
	before := ps.eng.Stats().Prompts
	_, err = ps.Score(context.Background(), seqs)
	require.NoError(t, err)
	assert.Equal(t, int64(2), ps.eng.Stats().Prompts-before)

	_, err = ps.Score(context.Background(), []datasets.Sequence{{Response: []int32{1}}})
	assert.ErrorContains(t, err, "sequence 0 has a 0-token prompt")
	_, err = NewPrefixScorer(e.policy, 4)
	assert.ErrorContains(t, err, "not a LlamaForSequenceClassification")
}

func TestRunWithPrefixScorer(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(4, 10, 512)
	ps, err := NewPrefixScorer(e.rm, 0)
	require.NoError(t, err)
	a, err := Run(context.Background(), e.policy, e.scorer, prompts, baseOpts())
	require.NoError(t, err)
	b, err := Run(context.Background(), e.policy, ps, prompts, baseOpts())
	require.NoError(t, err)
	require.Equal(t, tokensOf(a.Candidates), tokensOf(b.Candidates))
	for i := range a.Candidates {
		assert.InDelta(t, a.Candidates[i].Reward, b.Candidates[i].Reward, 1e-4)
	}
}
