package sft

import (
	"context"
	"math"
	"testing"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckRowsNamesTheBadRow(t *testing.T) {
	pool := kernels.NewPool(1)
	defer pool.Close()
	cfg := testmodel.Tiny(t, pool, 1).Config
	long := make([]int32, cfg.MaxPositionEmbeddings+1)
	longMask := make([]bool, len(long))
	longMask[len(long)-1] = true
	good := datasets.EncodedSFT{IDs: []int32{1, 2, 3}, Targets: []bool{false, false, true}, Line: 1}
	cases := []struct {
		name string
		row  datasets.EncodedSFT
		want string
	}{
		{"empty", datasets.EncodedSFT{Line: 7}, "line 7: example is empty"},
		{"one token", datasets.EncodedSFT{IDs: []int32{4}, Targets: []bool{true}, Line: 8}, "line 8: example has 1 token"},
		{"mask length", datasets.EncodedSFT{IDs: []int32{4, 5}, Targets: []bool{true}, Line: 9}, "line 9: target mask has 1 entries for 2 tokens"},
		{"too long", datasets.EncodedSFT{IDs: long, Targets: longMask, Line: 10}, "line 10: example is 257 tokens, longer than the context window of 256"},
		{"no targets", datasets.EncodedSFT{IDs: []int32{4, 5, 6}, Targets: []bool{true, false, false}, Line: 11}, "line 11: example has no target tokens"},
		{"vocab", datasets.EncodedSFT{IDs: []int32{4, 9999}, Targets: []bool{false, true}, Line: 12}, "line 12: token 1 is id 9999"},
		{"no line", datasets.EncodedSFT{IDs: []int32{4, 5}, Targets: []bool{false, false}}, "row 2: example has no target tokens"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := CheckRows([]datasets.EncodedSFT{good, c.row}, cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	require.NoError(t, CheckRows([]datasets.EncodedSFT{good}, cfg))
}

// TestLossIgnoresPromptTokens: positions whose next token is a prompt token get target -1
// (so the engine gives their logits no gradient), the assistant answer and its
// end-of-turn are targets, and the training loss and gradient equal a hand computation
// that reads only the assistant positions of a forward pass that scores every position.
func TestLossIgnoresPromptTokens(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	tok := testmodel.Tokenizer(t)
	rows := demoRows(t, tok, 3, 2)
	m := testmodel.Tiny(t, pool, 11)
	l := unpackedLayout(rows)
	groups := []int{0, 1}
	tt := l.maxWidth(groups)
	b := newBatch(2, tt)
	scored := fillBatch(b, rows, l, groups, tt)
	require.Equal(t, targetCount(rows[0])+targetCount(rows[1]), scored)

	eot := tok.EOT()
	for r, ex := range rows {
		ids := ex.IDs
		require.Equal(t, eot, ids[len(ids)-1], "a rendered conversation ends with the answer's end-of-turn")
		for p := 0; p+1 < len(ids); p++ {
			got := b.Targets[r*tt+p]
			if ex.Targets[p+1] {
				assert.Equal(t, ids[p+1], got)
			} else {
				assert.Equal(t, int32(-1), got, "row %d position %d predicts a prompt token", r, p)
			}
		}
		assert.Equal(t, eot, b.Targets[r*tt+len(ids)-2], "the end-of-turn token is trained")
		assert.False(t, ex.Targets[1], "the prompt is not a target")
	}

	// Training path: mean NLL over targets with its gradient.
	grads := m.NewGrads()
	ws := m.NewWorkspace(2, tt)
	weights := make([]float32, 2*tt)
	for i := range weights {
		weights[i] = 1
	}
	loss, err := m.WeightedNLL(ws, b, weights, grads)
	require.NoError(t, err)

	// Hand path: score every position, then keep only the assistant positions.
	full := *b
	full.Targets = make([]int32, len(b.Targets))
	for r, ex := range rows {
		for p := 0; p < tt; p++ {
			full.Targets[r*tt+p] = -1
			if p+1 < len(ex.IDs) {
				full.Targets[r*tt+p] = ex.IDs[p+1]
			}
		}
	}
	ws2 := m.NewWorkspace(2, tt)
	require.NoError(t, m.Forward(ws2, &full))
	var sum float64
	dOut := make([]float32, 2*tt)
	for r, ex := range rows {
		for p := 0; p+1 < len(ex.IDs); p++ {
			if ex.Targets[p+1] {
				sum -= float64(ws2.LogProbs[r*tt+p])
				dOut[r*tt+p] = -1 / float32(scored)
			}
		}
	}
	assert.InDelta(t, sum/float64(scored), loss, 1e-5)
	hand := m.NewGrads()
	require.NoError(t, m.Backward(ws2, &full, dOut, hand))
	for i := range hand.Data {
		require.InDelta(t, hand.Data[i], grads.Data[i], 1e-6+1e-4*math.Abs(float64(hand.Data[i])), "gradient %d", i)
	}
}

// TestPackingMatchesUnpacked: the same examples packed into shared rows give the same
// per-example losses and the same training gradient as one example per row.
func TestPackingMatchesUnpacked(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	rows := demoRows(t, testmodel.Tokenizer(t), 5, 6)
	m := testmodel.Tiny(t, pool, 13)

	unpacked, err := Evaluate(context.Background(), m, rows)
	require.NoError(t, err)
	pl, err := packedLayout(rows, 256)
	require.NoError(t, err)
	require.Less(t, len(pl.groups), len(rows), "short examples share rows")
	packed, err := newEvaluator(m, rows, pl, len(pl.groups), 256).run(context.Background())
	require.NoError(t, err)
	assert.Equal(t, unpacked.Tokens, packed.Tokens)
	assert.InDelta(t, unpacked.Loss, packed.Loss, 1e-5)
	assert.InDelta(t, unpacked.MeanExampleLoss, packed.MeanExampleLoss, 1e-5)

	gradOf := func(l layout) ([]float32, float64) {
		groups := make([]int, len(l.groups))
		for i := range groups {
			groups[i] = i
		}
		tt := l.maxWidth(groups)
		b := newBatch(len(groups), tt)
		fillBatch(b, rows, l, groups, tt)
		w := make([]float32, len(groups)*tt)
		for i := range w {
			w[i] = 1
		}
		g := m.NewGrads()
		loss, err := m.WeightedNLL(m.NewWorkspace(len(groups), tt), b, w, g)
		require.NoError(t, err)
		return g.Data, loss
	}
	gu, lu := gradOf(unpackedLayout(rows))
	gp, lp := gradOf(pl)
	assert.InDelta(t, lu, lp, 1e-5)
	for i := range gu {
		require.InDelta(t, gu[i], gp[i], 1e-6+1e-4*math.Abs(float64(gu[i])), "gradient %d", i)
	}
}

func TestLastTurnOnlyTrainsFewerTokens(t *testing.T) {
	tok := testmodel.Tokenizer(t)
	msgs := []tokenizer.Message{
		{Role: "user", Content: "two plus two"}, {Role: "assistant", Content: "four"},
		{Role: "user", Content: "and three more"}, {Role: "assistant", Content: "seven"},
	}
	enc := &datasets.Encoder{Tok: tok}
	all, err := enc.EncodeSFT(datasets.SFTExample{Messages: msgs}, datasets.SFTOptions{})
	require.NoError(t, err)
	last, err := enc.EncodeSFT(datasets.SFTExample{Messages: msgs}, datasets.SFTOptions{LastTurnOnly: true})
	require.NoError(t, err)
	assert.Equal(t, all.IDs, last.IDs)
	want := len(tok.Encode("seven")) + 1 // the answer and its end-of-turn
	assert.Equal(t, want, targetCount(last))
	assert.Equal(t, want+len(tok.Encode("four"))+1, targetCount(all))
}

func testConfig(steps int) Config {
	c := DefaultConfig()
	c.Steps, c.Batch = steps, 4
	c.Schedule = trainer.Schedule{PeakLR: 3e-3, WarmupSteps: 3, MinLRRatio: 0.1}
	c.Seed = 21
	return c
}

// TestSFTLowersValidationLossAndLearnsToStop trains on demo conversations and checks the
// held-out loss falls, and that the end-of-turn after a held-out answer became likely.
func TestSFTLowersValidationLossAndLearnsToStop(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	tok := testmodel.Tokenizer(t)
	train := demoRows(t, tok, 1, 48)
	val := demoRows(t, tok, 99, 8)
	base := testmodel.Tiny(t, pool, 3)
	cfg := testConfig(60)
	if testing.Short() {
		cfg.Steps = 25
	}
	cfg.Packing, cfg.SeqLen = true, 128
	var evals []float64
	var progress int
	m, res, err := Train(context.Background(), cfg, base, train, val, Hooks{
		Progress: func(trainer.Progress) { progress++ },
		Eval:     func(_ int, r EvalResult) { evals = append(evals, r.Loss) },
	})
	require.NoError(t, err)
	assert.Equal(t, cfg.Steps, progress)
	require.NotNil(t, res.ValLossBefore)
	require.NotNil(t, res.ValLoss)
	assert.Less(t, *res.ValLoss, *res.ValLossBefore*0.6, "validation loss %.3f -> %.3f", *res.ValLossBefore, *res.ValLoss)
	assert.Less(t, res.Rows, len(train), "packing shares rows")
	assert.Equal(t, []float64{*res.ValLossBefore, *res.ValLoss}, evals)
	assert.Empty(t, m.W.HasNonFinite())

	before, err := Evaluate(context.Background(), base, val)
	require.NoError(t, err)
	assert.InDelta(t, *res.ValLossBefore, before.Loss, 1e-9, "the base model is left unchanged")

	// -log p(end-of-turn | held-out prompt + answer) fell: the model learned to stop.
	eotOnly := make([]datasets.EncodedSFT, len(val))
	for i, r := range val {
		mask := make([]bool, len(r.IDs))
		mask[len(mask)-1] = true
		eotOnly[i] = datasets.EncodedSFT{IDs: r.IDs, Targets: mask, Line: r.Line}
	}
	eotBefore, err := Evaluate(context.Background(), base, eotOnly)
	require.NoError(t, err)
	eotAfter, err := Evaluate(context.Background(), m, eotOnly)
	require.NoError(t, err)
	assert.Less(t, eotAfter.Loss, eotBefore.Loss/4, "end-of-turn NLL %.3f -> %.3f", eotBefore.Loss, eotAfter.Loss)
	assert.Greater(t, eotBefore.Loss, 4.0)
}

// TestResumeIsBitExact: a run interrupted after a checkpoint and resumed ends with
// exactly the weights, moments and losses of an uninterrupted run.
func TestResumeIsBitExact(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	tok := testmodel.Tokenizer(t)
	train := demoRows(t, tok, 2, 16)
	base := testmodel.Tiny(t, pool, 4)
	cfg := testConfig(8)
	cfg.CheckpointEvery = 100

	cfg.OutDir = t.TempDir() + "/straight"
	var straightLosses []float64
	straight, _, err := Train(context.Background(), cfg, base, train, nil, Hooks{Progress: func(p trainer.Progress) { straightLosses = append(straightLosses, p.Loss) }})
	require.NoError(t, err)

	cfg.OutDir = t.TempDir() + "/interrupted"
	ctx, cancel := context.WithCancel(context.Background())
	_, res, err := Train(ctx, cfg, base, train, nil, Hooks{Progress: func(p trainer.Progress) {
		if p.Step == 3 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 3, res.Steps)

	_, _, err = Train(context.Background(), cfg, base, train, nil, Hooks{})
	require.ErrorContains(t, err, "not empty", "a fresh run refuses a used output directory")

	cfg.Resume = true
	var resumedLosses []float64
	resumed, res, err := Train(context.Background(), cfg, base, train, nil, Hooks{Progress: func(p trainer.Progress) { resumedLosses = append(resumedLosses, p.Loss) }})
	require.NoError(t, err)
	assert.Equal(t, 3, res.StartStep)
	assert.Equal(t, 8, res.Steps)
	assert.Equal(t, testmodel.Bits(straight.W.Data), testmodel.Bits(resumed.W.Data), "weights")
	assert.Equal(t, straightLosses[3:], resumedLosses)

	saved, err := checkpoint.Load(context.Background(), cfg.OutDir, pool)
	require.NoError(t, err)
	assert.Equal(t, testmodel.Bits(straight.W.Data), testmodel.Bits(saved.W.Data), "the final checkpoint holds the final weights")
	st, err := trainer.LoadState(cfg.OutDir)
	require.NoError(t, err)
	assert.Equal(t, 8, st.Step)

	other := train[:15]
	_, _, err = Train(context.Background(), cfg, base, other, nil, Hooks{})
	require.ErrorContains(t, err, "sft_data_sha256", "a resume with other data is refused")
}
