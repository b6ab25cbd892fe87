package dpo

import (
	"context"
	"math"
	"os"
	"testing"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tokenLogProbs runs m on prompt+resp alone and returns log p(resp_j | prompt, resp_<j)
// for every response token, read straight from ws.LogProbs.
func tokenLogProbs(t *testing.T, m *transformer.Model, prompt, resp []int32) []float64 {
	t.Helper()
	seq := append(append([]int32{}, prompt...), resp...)
	n := len(seq) - 1
	b := &transformer.Batch{B: 1, T: n, Tokens: seq[:n], Targets: make([]int32, n)}
	for p := range b.Targets {
		b.Targets[p] = -1
		if p >= len(prompt)-1 {
			b.Targets[p] = seq[p+1]
		}
	}
	ws := m.NewWorkspace(1, n)
	require.NoError(t, m.Forward(ws, b))
	out := make([]float64, len(resp))
	for j := range resp {
		out[j] = float64(ws.LogProbs[len(prompt)-1+j])
	}
	return out
}

func TestPairsFromRankedRows(t *testing.T) {
	row := datasets.EncodedPreference{
		Prompt:     []int32{1, 2},
		Responses:  [][]int32{{10}, {20}, {30}},
		Formatting: [][]bool{{false}, {false}, {false}},
		HasEdited:  true, Line: 4,
	}
	plain := datasets.EncodedPreference{Prompt: []int32{1}, Responses: [][]int32{{20}, {30}}, Formatting: [][]bool{{false}, {false}}, Line: 5}
	cases := []struct {
		mode EditedMode
		want [][2]int32 // chosen, rejected first tokens
	}{
		{"", [][2]int32{{10, 30}, {20, 30}}},
		{EditedOverRejected, [][2]int32{{10, 30}, {20, 30}}},
		{EditedIgnore, [][2]int32{{20, 30}, {20, 30}}},
		{EditedAllPairs, [][2]int32{{10, 20}, {10, 30}, {20, 30}, {20, 30}}},
	}
	for _, c := range cases {
		t.Run(string(c.mode), func(t *testing.T) {
			pairs, err := Pairs([]datasets.EncodedPreference{row, plain}, c.mode)
			require.NoError(t, err)
			var got [][2]int32
			for _, p := range pairs {
				got = append(got, [2]int32{p.Chosen[0], p.Rejected[0]})
			}
			assert.Equal(t, c.want, got)
		})
	}
	_, err := Pairs([]datasets.EncodedPreference{row}, "best-of")
	assert.ErrorContains(t, err, `unknown edited-response mode "best-of"`)
	_, err = Pairs([]datasets.EncodedPreference{{Prompt: []int32{1}, Responses: [][]int32{{2}}, Formatting: [][]bool{{false}}, Line: 9}}, "")
	assert.ErrorContains(t, err, "line 9: a preference row needs a chosen and a rejected response")
}

func TestCheckPairsNamesTheBadRow(t *testing.T) {
	cfg, err := transformer.Preset("tiny")
	require.NoError(t, err)
	ok := Pair{Prompt: []int32{1}, Chosen: []int32{2}, ChosenFmt: []bool{false}, Rejected: []int32{3}, RejectedFmt: []bool{false}, Line: 1}
	long := make([]int32, 256)
	cases := []struct {
		name string
		edit func(p *Pair)
		want string
	}{
		{"empty prompt", func(p *Pair) { p.Prompt = nil }, "line 3: the prompt is empty"},
		{"empty chosen", func(p *Pair) { p.Chosen, p.ChosenFmt = nil, nil }, "line 3: field chosen: the response is empty"},
		{"empty rejected", func(p *Pair) { p.Rejected, p.RejectedFmt = nil, nil }, "line 3: field rejected: the response is empty"},
		{"too long", func(p *Pair) { p.Rejected, p.RejectedFmt = long, make([]bool, 256) }, "line 3: field rejected: prompt + response is 257 tokens, longer than the context window of 256"},
		{"vocab", func(p *Pair) { p.Chosen = []int32{600} }, "line 3: field chosen: token id 600 is outside the vocabulary"},
		{"mask", func(p *Pair) { p.ChosenFmt = nil }, "line 3: field chosen: formatting mask has 0 entries for 1 tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bad := ok
			bad.Line = 3
			c.edit(&bad)
			err := CheckPairs([]Pair{ok, bad}, cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	require.NoError(t, CheckPairs([]Pair{ok}, cfg))
}

// TestEvaluateMatchesHandComputation checks every metric, for each NLL normalisation and
// both masking settings, against float64 formulas over per-token log-probs read from
// separate forward passes of each sequence alone (so batching, padding and the split
// into several batches cannot hide a mistake).
func TestEvaluateMatchesHandComputation(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	tok := testmodel.Tokenizer(t)
	pairs := demoPairs(t, tok, 4, 5)
	policy, ref := testmodel.Tiny(t, pool, 1), testmodel.Tiny(t, pool, 2)

	type seq struct{ pol, ref []float64 }
	lp := make([][2]seq, len(pairs))
	for i, p := range pairs {
		lp[i][0] = seq{tokenLogProbs(t, policy, p.Prompt, p.Chosen), tokenLogProbs(t, ref, p.Prompt, p.Chosen)}
		lp[i][1] = seq{tokenLogProbs(t, policy, p.Prompt, p.Rejected), tokenLogProbs(t, ref, p.Prompt, p.Rejected)}
		require.True(t, p.ChosenFmt[len(p.ChosenFmt)-1], "the end-of-turn is a formatting token")
	}
	for _, norm := range objectives.NLLNorms() {
		for _, mask := range []bool{true, false} {
			t.Run(string(norm)+map[bool]string{true: "/masked", false: "/unmasked"}[mask], func(t *testing.T) {
				const beta, coef = 0.3, 0.2
				opts := Options{Objective: objectives.DPOOptions{Beta: beta, NLLCoef: coef, NLLNorm: norm}, MaskFormatting: mask, Batch: 2}
				got, err := Evaluate(context.Background(), policy, ref, pairs, opts)
				require.NoError(t, err)

				var dpo, rc, rr, acc, logpc, nllSeqMean, nllSum, tokens float64
				for i, p := range pairs {
					sum := func(s seq, fmtMask []bool) (masked, all, refMasked float64) {
						for j := range s.pol {
							all += s.pol[j]
							if !mask || !fmtMask[j] {
								masked += s.pol[j]
								refMasked += s.ref[j]
							}
						}
						return
					}
					pc, pcAll, rcM := sum(lp[i][0], p.ChosenFmt)
					pr, _, rrM := sum(lp[i][1], p.RejectedFmt)
					c, r := beta*(pc-rcM), beta*(pr-rrM)
					dpo += softplus(-(c - r))
					rc += c
					rr += r
					if c > r {
						acc++
					}
					logpc += pc
					nllSeqMean += -pcAll / float64(len(p.Chosen))
					nllSum += -pcAll
					tokens += float64(len(p.Chosen))
				}
				n := float64(len(pairs))
				nll := map[objectives.NLLNorm]float64{
					objectives.NLLPerSequenceMean: nllSeqMean / n,
					objectives.NLLBatchTokenMean:  nllSum / tokens,
					objectives.NLLPerSequenceSum:  nllSum / n,
				}[norm]
				const tol = 2e-5
				assert.Equal(t, len(pairs), got.N)
				assert.InDelta(t, dpo/n, got.DPOLoss, tol)
				assert.InDelta(t, nll, got.NLLLoss, tol*math.Max(1, nll))
				assert.InDelta(t, dpo/n+coef*nll, got.Loss, tol*math.Max(1, nll))
				assert.InDelta(t, rc/n, got.RewardsChosen, tol)
				assert.InDelta(t, rr/n, got.RewardsRejected, tol)
				assert.InDelta(t, (rc-rr)/n, got.Margin, tol)
				assert.InDelta(t, acc/n, got.Accuracy, 1e-12)
				assert.InDelta(t, logpc/n, got.LogpsChosen, tol*math.Abs(logpc/n))
			})
		}
	}
}

// TestMaskedFormattingTokenDoesNotMoveTheDPOLoss: two chosen responses that differ only
// in their final formatting token (end-of-turn vs end-of-message) have different
// log-probs there and nowhere else. With masking the DPO loss is the same for both (the
// NLL term, over all chosen tokens, still differs); without masking it changes.
func TestMaskedFormattingTokenDoesNotMoveTheDPOLoss(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	tok := testmodel.Tokenizer(t)
	pairs := demoPairs(t, tok, 6, 3)
	alt := make([]Pair, len(pairs))
	for i, p := range pairs {
		c := append([]int32{}, p.Chosen...)
		require.Equal(t, tok.EOT(), c[len(c)-1])
		c[len(c)-1] = tok.EOM()
		alt[i] = p
		alt[i].Chosen = c
		require.True(t, alt[i].ChosenFmt[len(c)-1])
	}
	policy, ref := testmodel.Tiny(t, pool, 1), testmodel.Tiny(t, pool, 2)
	eval := func(ps []Pair, mask bool) objectives.DPOMetrics {
		opts := DefaultOptions()
		opts.MaskFormatting = mask
		r, err := Evaluate(context.Background(), policy, ref, ps, opts)
		require.NoError(t, err)
		return r.DPOMetrics
	}
	a, b := eval(pairs, true), eval(alt, true)
	assert.Equal(t, a.DPOLoss, b.DPOLoss, "masked: the formatting token is out of both log-ratios")
	assert.Equal(t, a.RewardsChosen, b.RewardsChosen)
	assert.NotEqual(t, a.NLLLoss, b.NLLLoss, "the NLL term covers formatting tokens")
	ua, ub := eval(pairs, false), eval(alt, false)
	assert.NotEqual(t, ua.DPOLoss, ub.DPOLoss, "unmasked: the formatting token moves the loss")
	assert.NotEqual(t, a.DPOLoss, ua.DPOLoss)

	// The per-token gradient: masked chosen tokens get only the NLL part, masked rejected
	// tokens nothing, prompt positions nothing.
	s := newScorer(policy, 1, maxWidth(pairs[:1]))
	c, r := make([]Sums, 1), make([]Sums, 1)
	require.NoError(t, s.forward(pairs, []int{0}, true, c, r))
	d := s.dOut(nil, pairs, []int{0}, true, []float64{-3}, []float64{5}, []float64{-0.25})
	p := pairs[0]
	tt := s.t
	for pos := 0; pos < len(p.Prompt)-1; pos++ {
		assert.Zero(t, d[pos])
		assert.Zero(t, d[tt+pos])
	}
	for j := range p.Chosen {
		want := float32(-0.25)
		if !p.ChosenFmt[j] {
			want = -3.25
		}
		assert.Equal(t, want, d[len(p.Prompt)-1+j], "chosen token %d", j)
	}
	for j := range p.Rejected {
		want := float32(5)
		if p.RejectedFmt[j] {
			want = 0
		}
		assert.Equal(t, want, d[tt+len(p.Prompt)-1+j], "rejected token %d", j)
	}
}

// TestReferenceIsComputedOnceAndCached: the reference runs once per dataset (counted
// forward passes), the values land in refcache-<key>.json, and a later call reads them
// back without a forward pass; other weights or masking miss the cache.
func TestReferenceIsComputedOnceAndCached(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	pairs := demoPairs(t, testmodel.Tokenizer(t), 8, 7)
	ref := testmodel.Tiny(t, pool, 2)
	dir := t.TempDir()

	first, info, err := ReferenceLogProbs(context.Background(), ref, pairs, true, 3, dir)
	require.NoError(t, err)
	assert.False(t, info.Hit)
	assert.Equal(t, 3, info.Forwards, "ceil(7/3) batches")
	require.FileExists(t, info.Path)
	assert.Contains(t, info.Path, "refcache-")

	again, info2, err := ReferenceLogProbs(context.Background(), ref, pairs, true, 3, dir)
	require.NoError(t, err)
	assert.True(t, info2.Hit)
	assert.Zero(t, info2.Forwards)
	assert.Equal(t, first, again)
	assert.Equal(t, info.Key, info2.Key)

	// Batching does not change the values (beyond float noise).
	single, _, err := ReferenceLogProbs(context.Background(), ref, pairs, true, 1, "")
	require.NoError(t, err)
	assert.InDeltaSlice(t, first.Chosen, single.Chosen, 1e-4)

	_, info3, err := ReferenceLogProbs(context.Background(), ref, pairs, false, 3, dir)
	require.NoError(t, err)
	assert.False(t, info3.Hit, "masking is part of the key")
	other := testmodel.Tiny(t, pool, 3)
	_, info4, err := ReferenceLogProbs(context.Background(), other, pairs, true, 3, dir)
	require.NoError(t, err)
	assert.False(t, info4.Hit, "the reference weights are part of the key")

	// A damaged cache file is recomputed, not trusted.
	require.NoError(t, os.WriteFile(info.Path, []byte(`{"version":1,"key":"x"}`), 0o644))
	fixed, info5, err := ReferenceLogProbs(context.Background(), ref, pairs, true, 3, dir)
	require.NoError(t, err)
	assert.False(t, info5.Hit)
	assert.Equal(t, first, fixed)

	// Training computes the reference once for all its steps, then reuses the file.
	cfg := testConfig(4)
	cfg.CacheDir = t.TempDir()
	_, res, err := Train(context.Background(), cfg, ref, ref, pairs, nil, Hooks{})
	require.NoError(t, err)
	assert.False(t, res.RefCache.Hit)
	assert.Equal(t, 2, res.RefCache.Forwards, "ceil(7/4) batches for 4 steps")
	_, res, err = Train(context.Background(), cfg, ref, ref, pairs, nil, Hooks{})
	require.NoError(t, err)
	assert.True(t, res.RefCache.Hit)
	assert.Zero(t, res.RefCache.Forwards)
}

func testConfig(steps int) Config {
	c := DefaultConfig()
	c.Steps = steps
	c.Schedule = trainer.Schedule{PeakLR: 2e-3, WarmupSteps: 2, MinLRRatio: 0.1}
	c.Seed = 5
	return c
}

// TestDPOWidensTheMargin trains the policy from the reference on correct-vs-mistaken
// answers and checks the held-out and training margins grow from zero.
func TestDPOWidensTheMargin(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	tok := testmodel.Tokenizer(t)
	train := demoPairs(t, tok, 10, 32)
	val := demoPairs(t, tok, 11, 8)
	sftModel := testmodel.Tiny(t, pool, 9)
	cfg := testConfig(60)
	var steps []objectives.DPOMetrics
	m, res, err := Train(context.Background(), cfg, sftModel, sftModel, train, val, Hooks{
		Metrics: func(_ int, mm objectives.DPOMetrics) { steps = append(steps, mm) },
	})
	require.NoError(t, err)
	require.Len(t, steps, cfg.Steps)
	for _, s := range steps {
		assert.Equal(t, cfg.Batch, s.N)
	}
	assert.InDelta(t, math.Log(2), steps[0].DPOLoss, 1e-6, "policy = reference on the first step")
	assert.Zero(t, steps[0].Margin)
	require.NotNil(t, res.ValBefore)
	require.NotNil(t, res.Val)
	assert.Zero(t, res.ValBefore.Margin)
	assert.Greater(t, res.Val.Margin, 0.1, "held-out margin %.3f", res.Val.Margin)
	assert.Greater(t, res.Val.Accuracy, 0.7)
	assert.Less(t, res.Val.DPOLoss, math.Log(2))

	tr, err := Evaluate(context.Background(), m, sftModel, train, DefaultOptions())
	require.NoError(t, err)
	assert.Greater(t, tr.Margin, 1.0, "training margin %.3f", tr.Margin)
	assert.Greater(t, tr.Accuracy, 0.9)
	assert.Empty(t, sftModel.W.HasNonFinite())
}

// TestDPOResumeIsBitExact: interrupted and resumed equals uninterrupted, bit for bit.
func TestDPOResumeIsBitExact(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	pairs := demoPairs(t, testmodel.Tokenizer(t), 12, 12)
	base := testmodel.Tiny(t, pool, 9)
	cfg := testConfig(6)
	cfg.CacheDir = t.TempDir()

	cfg.OutDir = t.TempDir() + "/straight"
	var straightLoss []float64
	straight, _, err := Train(context.Background(), cfg, base, base, pairs, nil, Hooks{Progress: func(p trainer.Progress) { straightLoss = append(straightLoss, p.Loss) }})
	require.NoError(t, err)

	cfg.OutDir = t.TempDir() + "/interrupted"
	ctx, cancel := context.WithCancel(context.Background())
	_, res, err := Train(ctx, cfg, base, base, pairs, nil, Hooks{Progress: func(p trainer.Progress) {
		if p.Step == 2 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 2, res.Steps)

	cfg.Resume = true
	var resumedLoss []float64
	resumed, res, err := Train(context.Background(), cfg, base, base, pairs, nil, Hooks{Progress: func(p trainer.Progress) { resumedLoss = append(resumedLoss, p.Loss) }})
	require.NoError(t, err)
	assert.Equal(t, 2, res.StartStep)
	assert.Equal(t, testmodel.Bits(straight.W.Data), testmodel.Bits(resumed.W.Data))
	assert.Equal(t, straightLoss[2:], resumedLoss)

	cfg.Objective.Beta = 0.5
	_, _, err = Train(context.Background(), cfg, base, base, pairs, nil, Hooks{})
	assert.ErrorContains(t, err, "objective", "a resume with another objective is refused")
}

// TestTrainGradientMatchesFiniteDifference: the per-token coefficients handed to the
// engine's backward pass give the true gradient of the DPO + NLL loss. The directional
// derivative of Evaluate's loss along the accumulated gradient, by central differences,
// equals the gradient's norm, for each NLL normalisation, with and without masking.
func TestTrainGradientMatchesFiniteDifference(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	pairs := demoPairs(t, testmodel.Tokenizer(t), 14, 4)
	ref := testmodel.Tiny(t, pool, 2)
	for _, norm := range objectives.NLLNorms() {
		for _, mask := range []bool{true, false} {
			t.Run(string(norm)+map[bool]string{true: "/masked", false: "/unmasked"}[mask], func(t *testing.T) {
				policy := testmodel.Tiny(t, pool, 1)
				cfg := testConfig(1)
				cfg.Objective = objectives.DPOOptions{Beta: 0.5, NLLCoef: 0.2, NLLNorm: norm}
				cfg.MaskFormatting, cfg.Batch = mask, len(pairs)
				obj, err := objectives.NewDPO(cfg.Objective)
				require.NoError(t, err)
				refLP, _, err := ReferenceLogProbs(context.Background(), ref, pairs, mask, 2, "")
				require.NoError(t, err)
				st := &trainer.State{Data: trainer.NewShuffler(len(pairs), 3)}
				grads := policy.NewGrads()
				step := newTrainStep(policy, grads, obj, pairs, refLP, st, cfg)
				micro, err := step.run(context.Background(), 0, 0, nil)
				require.NoError(t, err)

				var norm2 float64
				for _, g := range grads.Data {
					norm2 += float64(g) * float64(g)
				}
				gnorm := math.Sqrt(norm2)
				require.Greater(t, gnorm, 0.0)
				theta := append([]float32(nil), policy.W.Data...)
				loss := func(eps float64) float64 {
					for i, g := range grads.Data {
						policy.W.Data[i] = theta[i] + float32(eps*float64(g)/gnorm)
					}
					r, err := Evaluate(context.Background(), policy, ref, pairs, cfg.Options)
					require.NoError(t, err)
					return r.Loss
				}
				const eps = 2e-2
				l0 := loss(0)
				assert.InDelta(t, micro.Loss, l0, 1e-5, "the step's loss is Evaluate's loss")
				fd := (loss(eps) - loss(-eps)) / (2 * eps)
				assert.InEpsilon(t, gnorm, fd, 0.02, "directional derivative %.5f vs gradient norm %.5f", fd, gnorm)
			})
		}
	}
}
