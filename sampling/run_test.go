package sampling

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAdmissionNeverExceedsBudget(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(6, 1, 512)
	o := baseOpts()
	longest := 0
	for _, p := range prompts {
		longest = max(longest, len(p.Tokens))
	}
	one := inference.RequestKVBytes(e.policy.Config, longest, o.K, o.Params.MaxNewTokens)
	tests := []struct {
		name      string
		budget    int64
		noShare   bool
		minFlight int // prompts that must have been in flight together at some point
		maxFlight int
		kvScorer  bool // score through the reward model's KV cache (counted too)
	}{
		{"one prompt at a time", one, false, 1, 1, false},
		{"two and a half prompts", one * 5 / 2, false, 2, 3, false},
		{"everything fits", 100 * one, false, 6, 6, false},
		{"no sharing needs K prompt copies", int64(o.K) * inference.RequestKVBytes(e.policy.Config, longest, 1, o.Params.MaxNewTokens), true, 1, 1, false},
		{"scorer cache within the budget", one, false, 1, 1, true},
		{"scorer cache, two and a half prompts", one * 5 / 2, false, 2, 3, true},
	}
	ps, err := NewPrefixScorer(e.rm, 0)
	require.NoError(t, err)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			opts := o
			opts.KVBudget, opts.NoSharing = tc.budget, tc.noShare
			var sc Scorer = e.scorer
			if tc.kvScorer {
				sc = ps
			}
			res, err := Run(context.Background(), e.policy, sc, prompts, opts)
			require.NoError(t, err)
			st := res.Stats
			assert.LessOrEqual(t, st.PeakKVBytes, tc.budget, "KV bytes held")
			assert.LessOrEqual(t, st.PeakReservedBytes, tc.budget, "KV bytes reserved")
			assert.Positive(t, st.PeakKVBytes)
			assert.GreaterOrEqual(t, st.PeakPromptsInFlight, tc.minFlight)
			assert.LessOrEqual(t, st.PeakPromptsInFlight, tc.maxFlight)
			assert.Len(t, res.Candidates, len(prompts)*o.K, "every sample of every prompt")
			assert.Equal(t, len(prompts), st.Prompts)
		})
	}
}

func TestAdmissionRefusesImpossiblePrompt(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(3, 2, 512)
	prompts[1].Tokens = make([]int32, 100) // far longer than the others
	o := baseOpts()
	o.KVBudget = inference.RequestKVBytes(e.policy.Config, 50, o.K, o.Params.MaxNewTokens)
	calls := 0
	o.OnPrompt = func(*Prompt, []Candidate) error { calls++; return nil }
	_, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `prompt "p1" (line 2) can never be admitted`)
	assert.Zero(t, calls, "nothing runs before the impossible prompt is reported")

	// A prompt too long for the context window is named too.
	prompts[1].Tokens = make([]int32, e.policy.Config.MaxPositionEmbeddings)
	o.KVBudget = 0
	_, err = Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `prompt "p1" (line 2) has 256 tokens`)

	// So are repeated ids.
	o.KVBudget = 0
	dup := idPrompts(3, 2, 512)
	dup[2].ID = "p0"
	_, err = Run(context.Background(), e.policy, e.scorer, dup, o)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `prompt "p0" (line 3) has the id of prompt "p0" (line 1)`)

	// So is one whose samples would not fit the reward model's scorer.
	short, err := reward.NewScorer(e.rm, 2, 16)
	require.NoError(t, err)
	prompts[1].Tokens = make([]int32, 10)
	_, err = Run(context.Background(), e.policy, short, prompts, o)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `prompt "p1" (line 2) has 10 tokens; with max_new_tokens 8 its samples could exceed the reward model's limit of 16`)
}

func TestPrefixSharingPrefillsOnce(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(5, 3, 512)
	promptTokens := int64(0)
	for _, p := range prompts {
		promptTokens += int64(len(p.Tokens))
	}
	o := baseOpts()
	shared, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	o.NoSharing = true
	alone, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)

	assert.Equal(t, int64(len(prompts)), shared.Stats.Prefills, "one prefill per prompt")
	assert.Equal(t, promptTokens, shared.Stats.PrefillTokens)
	assert.Equal(t, int64(o.K-1)*promptTokens, shared.Stats.PrefillTokensSaved)
	assert.Equal(t, int64(o.K*len(prompts)), alone.Stats.Prefills, "one prefill per sample")
	assert.Equal(t, int64(o.K)*promptTokens, alone.Stats.PrefillTokens)
	assert.Zero(t, alone.Stats.PrefillTokensSaved)
	// Sharing changes the work, not the samples.
	assert.Equal(t, tokensOf(shared.Candidates), tokensOf(alone.Candidates))
}

func TestSamplesReproducibleAndDistinct(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(3, 4, 512)
	o := baseOpts()
	o.Params.StopTokens = nil // full-length samples: collisions would be a bug, not luck
	a, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	b, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	assert.Equal(t, a.Candidates, b.Candidates, "same seed, same candidates and rewards")
	for _, p := range prompts {
		seen := map[string]int{}
		for _, c := range a.Candidates {
			if c.PromptID == p.ID {
				key := fmt.Sprint(c.Tokens)
				_, dup := seen[key]
				assert.False(t, dup, "prompt %s: samples %d and %d are identical", p.ID, seen[key], c.SampleIndex)
				seen[key] = c.SampleIndex
			}
		}
		assert.Len(t, seen, o.K)
	}
	o.Seed++
	c, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	assert.NotEqual(t, tokensOf(a.Candidates), tokensOf(c.Candidates), "another seed, other samples")
}

func TestShardsGiveTheFullRunsCandidates(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(7, 5, 512)
	o := baseOpts()
	o.KVBudget = 3 * inference.RequestKVBytes(e.policy.Config, 13, o.K, o.Params.MaxNewTokens)
	full, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	var union []Candidate
	covered := 0
	for i := range 3 {
		shard, err := Shard(prompts, 3, i)
		require.NoError(t, err)
		covered += len(shard)
		res, err := Run(context.Background(), e.policy, e.scorer, shard, o)
		require.NoError(t, err)
		union = append(union, res.Candidates...)
	}
	assert.Equal(t, len(prompts), covered)
	require.Len(t, union, len(full.Candidates))
	for i := range union {
		assert.Equal(t, full.Candidates[i].Tokens, union[i].Tokens, "candidate %d", i)
		assert.InDelta(t, full.Candidates[i].Reward, union[i].Reward, 1e-5, "candidate %d", i)
		assert.Equal(t, full.Candidates[i].Selected, union[i].Selected, "candidate %d", i)
	}
}

func TestShard(t *testing.T) {
	items := []int{0, 1, 2, 3, 4, 5, 6}
	tests := []struct {
		n, i int
		want []int
	}{
		{1, 0, items}, {3, 0, []int{0, 1}}, {3, 1, []int{2, 3}}, {3, 2, []int{4, 5, 6}}, {10, 0, []int{}},
	}
	for _, tc := range tests {
		got, err := Shard(items, tc.n, tc.i)
		require.NoError(t, err)
		assert.Equal(t, tc.want, append([]int{}, got...), "shard %d of %d", tc.i, tc.n)
	}
	_, err := Shard(items, 0, 0)
	assert.ErrorContains(t, err, "shard count")
	_, err = Shard(items, 3, 3)
	assert.ErrorContains(t, err, "index 3")
}

func TestRewardsEqualDirectForward(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(3, 6, 512)
	res, err := Run(context.Background(), e.policy, e.scorer, prompts, baseOpts())
	require.NoError(t, err)
	ws := e.rm.NewWorkspace(1, e.rm.Config.MaxPositionEmbeddings)
	for _, c := range res.Candidates {
		seq := append(append([]int32{}, prompts[c.PromptIndex].Tokens...), c.Tokens...)
		b := &transformer.Batch{B: 1, T: len(seq), Tokens: seq, Last: []int32{int32(len(seq) - 1)}}
		require.NoError(t, e.rm.Forward(ws, b))
		assert.InDelta(t, float64(ws.Rewards[0]), c.Reward, 1e-5, "%s/%d", c.PromptID, c.SampleIndex)
	}
}

func TestCancellationStopsBetweenSteps(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(8, 7, 512)
	o := baseOpts()
	o.Params.StopTokens = nil
	o.Params.MaxNewTokens = 32
	o.KVBudget = inference.RequestKVBytes(e.policy.Config, 13, o.K, o.Params.MaxNewTokens) // one at a time
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stepsAtCancel int64 = -1
	o.Progress = func(p Progress) {
		if stepsAtCancel < 0 {
			stepsAtCancel = p.DecodeSteps
			cancel()
		}
	}
	res, err := Run(ctx, e.policy, e.scorer, prompts, o)
	require.ErrorIs(t, err, context.Canceled)
	require.NotNil(t, res)
	assert.Equal(t, []string{"p0"}, res.Done, "only the prompt finished before the cancel")
	assert.Equal(t, stepsAtCancel, res.Stats.DecodeSteps, "no decode step after the cancel")
	assert.Len(t, res.Candidates, o.K)
}

func TestResumeSkipsDonePrompts(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(5, 8, 512)
	o := baseOpts()
	full, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	o.Done = map[string]bool{"p0": true, "p3": true}
	var progress []Progress
	o.Progress = func(p Progress) { progress = append(progress, p) }
	rest, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	assert.Equal(t, []string{"p1", "p2", "p4"}, rest.Done)
	assert.Equal(t, 2, rest.Stats.Skipped)
	var want []Candidate
	for _, c := range full.Candidates {
		if !o.Done[c.PromptID] {
			want = append(want, c)
		}
	}
	assert.Equal(t, tokensOf(want), tokensOf(rest.Candidates))
	require.Len(t, progress, 3)
	assert.Equal(t, Progress{PromptsDone: 5, PromptsTotal: 5}, Progress{PromptsDone: progress[2].PromptsDone, PromptsTotal: progress[2].PromptsTotal})
}

func TestVerifierFiltersBeforeSelection(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(4, 8, 512)
	o := baseOpts()
	free, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	// The verifier fails every prompt's reward-best sample and does not check p3.
	best := map[string]int{}
	for _, c := range free.Candidates {
		if c.Selected {
			best[c.PromptID] = c.SampleIndex
		}
	}
	require.Len(t, best, 4)
	o.Verifier = func(p *Prompt, c *Candidate) (bool, bool) {
		if p.ID == "p3" {
			return false, false
		}
		return c.SampleIndex != best[p.ID], true
	}
	res, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	assert.Equal(t, tokensOf(free.Candidates), tokensOf(res.Candidates), "verifying changes selection, not sampling")
	checked := 0
	for _, c := range res.Candidates {
		if c.PromptID == "p3" {
			assert.Nil(t, c.Verified)
			assert.Equal(t, c.SampleIndex == best["p3"], c.Selected, "an unchecked prompt keeps its reward-best sample")
			continue
		}
		checked++
		require.NotNil(t, c.Verified)
		assert.Equal(t, c.SampleIndex != best[c.PromptID], *c.Verified)
		if c.Selected {
			assert.True(t, *c.Verified, "a failed sample is never selected")
		}
	}
	assert.Equal(t, checked-3, res.Stats.VerifiedSamples)
	assert.Equal(t, 3, res.Stats.RejectedSamples)
}

func TestRunRejectsBadOptions(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"negative k", func(o *Options) { o.K = -1 }, "k must be"},
		{"no max new tokens", func(o *Options) { o.Params.MaxNewTokens = 0 }, "max_new_tokens"},
		{"bad top-p", func(o *Options) { o.Params.TopP = 2 }, "top_p"},
	}
	for _, tc := range tests {
		o := baseOpts()
		tc.edit(&o)
		_, err := New(e.policy, e.scorer, o)
		assert.ErrorContains(t, err, tc.want, tc.name)
	}
	_, err := New(e.rm, e.scorer, baseOpts())
	assert.ErrorContains(t, err, "sequence classifier", "the policy must be a causal LM")
	_, err = New(e.policy, nil, baseOpts())
	assert.ErrorContains(t, err, "nil scorer")
}

func TestProgressBetweenPrompts(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(2, 9, 512)
	o := baseOpts()
	o.Params.StopTokens = nil
	o.ProgressInterval = time.Nanosecond // every decode step
	var calls []Progress
	o.Progress = func(p Progress) { calls = append(calls, p) }
	res, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	finished := 0
	for i, p := range calls {
		if p.LastPromptID != "" {
			finished++
		}
		if i > 0 {
			assert.GreaterOrEqual(t, p.DecodeSteps, calls[i-1].DecodeSteps)
		}
		assert.Equal(t, 2, p.PromptsTotal)
	}
	assert.Equal(t, 2, finished, "one call per finished prompt")
	assert.Greater(t, len(calls), int(res.Stats.DecodeSteps)/2, "heartbeats between prompts")
}

func TestBatchCompositionDoesNotChangeSamples(t *testing.T) {
	e := newEnv(t)
	prompts := idPrompts(4, 11, 512)
	o := baseOpts()
	wide, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	o.MaxBatch = 3 // K=4: a prompt's samples split over decode calls
	narrow, err := Run(context.Background(), e.policy, e.scorer, prompts, o)
	require.NoError(t, err)
	assert.Equal(t, tokensOf(wide.Candidates), tokensOf(narrow.Candidates))
	assert.Greater(t, narrow.Stats.DecodeSteps, int64(0))
}
