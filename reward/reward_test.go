package reward

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/trainer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// firstLoss trains one update on every row at once and returns the loss the trainer saw.
func firstLoss(t *testing.T, cfg Config, rows []datasets.EncodedPreference, pool int) float64 {
	t.Helper()
	m := tinyRM(t, newPool(t, pool), 3)
	cfg.Steps, cfg.Batch = 1, len(rows)
	var got []float64
	_, _, err := Train(context.Background(), cfg, m, rows, nil, Hooks{Progress: func(p trainer.Progress) { got = append(got, p.Loss) }})
	require.NoError(t, err)
	require.Len(t, got, 1)
	return got[0]
}

func TestLossMatchesHandComputation(t *testing.T) {
	pool := newPool(t, 2)
	m := tinyRM(t, pool, 3) // the same weights firstLoss trains from
	plain := randomRows(11, 3, 200, false)
	triples := randomRows(12, 3, 200, true)
	rated := randomRows(13, 3, 200, false)
	for i, r := range []string{"significantly better", "slightly_better", "Better"} {
		rated[i].Rating = r
	}
	withField := randomRows(14, 2, 200, false)
	f0, f1 := 0.25, 1.5
	withField[0].Margin, withField[1].Margin = &f0, &f1

	// hand computes the loss from per-row single-sequence forwards: all ordered pairs of
	// each row (best first), margin m, centering eta.
	hand := func(rows []datasets.EncodedPreference, margins []float64, eta float64) float64 {
		var bt, center float64
		n := 0
		for i, r := range rows {
			rw := make([]float64, len(r.Responses))
			for k, resp := range r.Responses {
				rw[k] = rewardOf(t, m, concat(r.Prompt, resp))
			}
			for a := range rw {
				for b := a + 1; b < len(rw); b++ {
					bt += negLogSigmoid(rw[a] - rw[b] - margins[i])
					center += (rw[a] + rw[b]) * (rw[a] + rw[b])
					n++
				}
			}
		}
		return bt/float64(n) + eta*center/float64(n)
	}
	cases := []struct {
		name    string
		rows    []datasets.EncodedPreference
		margin  MarginMode
		eta     float64
		margins []float64
	}{
		{"pairs, no margin (Llama 3)", plain, MarginNone, 0, []float64{0, 0, 0}},
		{"ranked triples: 3 pairs per row", triples, MarginNone, 0, []float64{0, 0, 0}},
		{"Llama 2 margin table", rated, MarginLlama2, 0, []float64{1, 1.0 / 3, 2.0 / 3}},
		{"Llama 2 large margin table", rated, MarginLlama2Large, 0, []float64{3, 1, 2}},
		{"margin field", withField, MarginField, 0, []float64{0.25, 1.5}},
		{"ratings ignored without a margin mode", rated, MarginNone, 0, []float64{0, 0, 0}},
		{"centering", plain, MarginNone, 0.1, []float64{0, 0, 0}},
		{"triples with margin and centering", func() []datasets.EncodedPreference {
			rows := randomRows(12, 3, 200, true)
			for i := range rows {
				rows[i].Rating = "better"
			}
			return rows
		}(), MarginLlama2, 0.05, []float64{2.0 / 3, 2.0 / 3, 2.0 / 3}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Margin, cfg.Centering, cfg.SimilarityThreshold = tc.margin, tc.eta, 0
			want := hand(tc.rows, tc.margins, tc.eta)
			got := firstLoss(t, cfg, tc.rows, 2)
			assert.InDelta(t, want, got, 1e-5*math.Max(1, math.Abs(want)))
		})
	}
	t.Run("per-row weighting of pairs and triples", func(t *testing.T) {
		rows := append(randomRows(15, 2, 200, false), randomRows(16, 2, 200, true)...)
		// Each row weighs 1/rows, split evenly over its pairs.
		var want float64
		for _, r := range rows {
			var rowLoss float64
			n := 0
			for a := range r.Responses {
				for b := a + 1; b < len(r.Responses); b++ {
					rowLoss += negLogSigmoid(rewardOf(t, m, concat(r.Prompt, r.Responses[a])) - rewardOf(t, m, concat(r.Prompt, r.Responses[b])))
					n++
				}
			}
			want += rowLoss / float64(n) / float64(len(rows))
		}
		cfg := DefaultConfig()
		cfg.Weighting, cfg.SimilarityThreshold = objectives.WeightPerRow, 0
		got := firstLoss(t, cfg, rows, 2)
		assert.InDelta(t, want, got, 1e-5)
		cfg.Weighting = objectives.WeightPerPair
		assert.NotEqual(t, got, firstLoss(t, cfg, rows, 2), "per-pair weighs triples differently")
	})
}

// lossAndGrad runs the training step once over every row and returns the loss and the
// accumulated parameter gradient.
func lossAndGrad(t *testing.T, sc *Scorer, rows []datasets.EncodedPreference, cfg Config) (float64, []float32) {
	t.Helper()
	prep, _, err := prepare(rows, cfg.Margin, 0)
	require.NoError(t, err)
	bt, err := cfg.objective()
	require.NoError(t, err)
	grads := sc.m.NewGrads()
	st := &trainer.State{Data: trainer.NewShuffler(len(prep), 1)}
	s := &trainStep{sc: sc, grads: grads, bt: bt, rows: rows, prep: prep, state: st,
		idx: make([]int, len(prep)), dOut: make([]float32, sc.MaxBatch()), rewards: make([]float64, sc.MaxBatch())}
	mi, err := s.run(context.Background(), 0, 0, nil)
	require.NoError(t, err)
	return mi.Loss, grads.Data
}

func TestGradientMatchesFiniteDifference(t *testing.T) {
	pool := newPool(t, 2)
	rows := randomRows(21, 3, 200, true)
	for i := range rows {
		rows[i].Rating = "better"
	}
	cfg := DefaultConfig()
	cfg.Margin, cfg.Centering = MarginLlama2, 0.1
	m := tinyRM(t, pool, 5)
	sc, err := NewScorer(m, 9, 0)
	require.NoError(t, err)
	_, g := lossAndGrad(t, sc, rows, cfg)
	// Directional derivative along the normalised gradient equals |g| to first order.
	var norm float64
	for _, v := range g {
		norm += float64(v) * float64(v)
	}
	norm = math.Sqrt(norm)
	require.Greater(t, norm, 1e-4)
	orig := append([]float32(nil), m.W.Data...)
	const eps = 2e-3
	shift := func(s float64) float64 {
		for i := range m.W.Data {
			m.W.Data[i] = orig[i] + float32(s*float64(g[i])/norm)
		}
		l, _ := lossAndGrad(t, sc, rows, cfg)
		return l
	}
	fd := (shift(eps) - shift(-eps)) / (2 * eps)
	copy(m.W.Data, orig)
	assert.InDelta(t, norm, fd, 0.02*norm, "directional derivative %g vs gradient norm %g", fd, norm)
}

func TestLearnsSyntheticPreference(t *testing.T) {
	tok := testmodel.Tokenizer(t)
	train := demoPreferences(t, tok, 1, demotask.Train, 320)
	val := demoPreferences(t, tok, 2, demotask.Eval, 64)
	pool := newPool(t, 2)
	lm := testmodel.Tiny(t, pool, 9)
	m, err := FromCausalLM(lm, 9, 0.02)
	require.NoError(t, err)
	cfg := DefaultConfig()
	cfg.Steps, cfg.Batch = 40, 8 // 320 pairs: one epoch
	cfg.Schedule.PeakLR, cfg.Schedule.WarmupSteps = 2e-3, 5
	cfg.Seed = 4
	out, res, err := Train(context.Background(), cfg, m, train, val, Hooks{})
	require.NoError(t, err)
	require.NotNil(t, res.Val)
	t.Logf("val before %+v after %+v, train acc %.3f, loss %.4f -> %.4f", *res.ValBefore, *res.Val, res.TrainAccuracy, res.FirstLoss, res.FinalLoss)
	assert.Greater(t, res.Val.Accuracy, 0.9, "held-out accuracy")
	assert.Greater(t, res.Val.MeanMargin, res.ValBefore.MeanMargin)
	assert.Less(t, res.Val.Loss, res.ValBefore.Loss)
	assert.Equal(t, 64, res.Val.N)
	// Train leaves its input unchanged and returns a different model.
	assert.NotEqual(t, testmodel.Bits(m.W.Data), testmodel.Bits(out.W.Data))
	// Evaluate on the returned model gives the same metrics as the final validation.
	ev, rewards, err := Evaluate(context.Background(), out, val, EvalOptions{Batch: 5})
	require.NoError(t, err)
	assert.InDelta(t, res.Val.Accuracy, ev.Accuracy, 1e-12)
	assert.InDelta(t, res.Val.Loss, ev.Loss, 1e-5)
	require.Len(t, rewards, len(val))
}

func TestTokenSimilarity(t *testing.T) {
	twenty := make([]int32, 20)
	for i := range twenty {
		twenty[i] = int32(i + 1)
	}
	oneOff := append([]int32(nil), twenty...)
	oneOff[7] = 99
	cases := []struct {
		name string
		a, b []int32
		want float64
	}{
		{"identical", []int32{1, 2, 3}, []int32{1, 2, 3}, 1},
		{"both empty", nil, nil, 1},
		{"one substitution in twenty", twenty, oneOff, 0.95},
		{"one insertion", []int32{1, 2, 3}, []int32{1, 2, 3, 4}, 0.75},
		{"disjoint", []int32{1, 2}, []int32{3, 4}, 0},
		{"one empty", []int32{1, 2}, nil, 0},
		{"shifted by one", []int32{1, 2, 3, 4}, []int32{2, 3, 4, 5}, 0.5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDelta(t, tc.want, TokenSimilarity(tc.a, tc.b), 1e-12)
			assert.InDelta(t, tc.want, TokenSimilarity(tc.b, tc.a), 1e-12)
		})
	}
}

func TestSimilarityFilterCounts(t *testing.T) {
	twenty := make([]int32, 20)
	for i := range twenty {
		twenty[i] = int32(i + 1)
	}
	oneOff := append([]int32(nil), twenty...)
	oneOff[3] = 99
	other := []int32{50, 51, 52, 53, 54}
	prompt := []int32{5, 6}
	rows := []datasets.EncodedPreference{
		{Prompt: prompt, Responses: [][]int32{twenty, twenty}},                          // identical: dropped
		{Prompt: prompt, Responses: [][]int32{twenty, oneOff}},                          // 0.95: dropped at 0.95
		{Prompt: prompt, Responses: [][]int32{twenty, other}},                           // distinct: kept
		{Prompt: prompt, Responses: [][]int32{twenty, oneOff, other}, HasEdited: true},  // edited ~ chosen: 2 of 3 kept
		{Prompt: prompt, Responses: [][]int32{other, twenty, twenty}, HasEdited: true},  // chosen = rejected: 2 of 3 kept
		{Prompt: prompt, Responses: [][]int32{twenty, twenty, oneOff}, HasEdited: true}, // all alike: row dropped
	}
	cases := []struct {
		threshold                   float64
		filtered, droppedRows, kept int
		keptRows                    int
	}{
		{0, 0, 0, 12, 6},
		{1, 3, 1, 9, 5},
		{0.96, 3, 1, 9, 5},
		{0.95, 7, 3, 5, 3},
		{0.5, 7, 3, 5, 3},
	}
	for _, tc := range cases {
		prep, st, err := prepare(rows, MarginNone, tc.threshold)
		require.NoError(t, err)
		assert.Equal(t, 6, st.Rows)
		assert.Equal(t, 12, st.Pairs)
		assert.Equal(t, tc.filtered, st.FilteredPairs, "threshold %g", tc.threshold)
		assert.Equal(t, tc.droppedRows, st.DroppedRows, "threshold %g", tc.threshold)
		assert.Equal(t, tc.kept, st.KeptPairs(), "threshold %g", tc.threshold)
		assert.Len(t, prep, tc.keptRows, "threshold %g", tc.threshold)
		for _, p := range prep {
			for _, q := range p.pairs {
				r := rows[p.row]
				// Local indices map back to responses in best-first order.
				assert.Less(t, p.resp[q.Better], p.resp[q.Worse])
				if tc.threshold > 0 {
					assert.Less(t, TokenSimilarity(r.Responses[p.resp[q.Better]], r.Responses[p.resp[q.Worse]]), tc.threshold)
				}
			}
		}
	}
	// Train reports the same counts.
	m := tinyRM(t, newPool(t, 1), 1)
	cfg := DefaultConfig()
	cfg.Steps, cfg.Batch = 1, 2
	_, res, err := Train(context.Background(), cfg, m, rows, nil, Hooks{})
	require.NoError(t, err)
	assert.Equal(t, 7, res.Filter.FilteredPairs)
	assert.Equal(t, 3, res.Filter.DroppedRows)
	assert.Equal(t, 5, res.Pairs)
	assert.Equal(t, 3, res.Rows)
	// Everything filtered is an error, not a silent no-op.
	cfg.SimilarityThreshold = 0.01
	_, _, err = Train(context.Background(), cfg, m, rows[:2], nil, Hooks{})
	require.ErrorContains(t, err, "similarity filter")
}

func TestScoreMatchesPerRowForward(t *testing.T) {
	pool := newPool(t, 2)
	m := tinyRM(t, pool, 8)
	rows := randomRows(31, 7, 500, true)
	var seqs []datasets.Sequence
	for _, r := range rows {
		for _, resp := range r.Responses {
			seqs = append(seqs, datasets.Sequence{Prompt: r.Prompt, Response: resp})
		}
	}
	for _, batch := range []int{1, 3, 8, 64} {
		got, err := Score(context.Background(), m, seqs, batch)
		require.NoError(t, err)
		require.Len(t, got, len(seqs))
		for i, q := range seqs {
			want := rewardOf(t, m, concat(q.Prompt, q.Response))
			assert.InDelta(t, want, got[i], 1e-5*math.Max(1, math.Abs(want)), "batch %d sequence %d", batch, i)
		}
	}
	// Progress reports every batch, ending at the total.
	var done []int
	sc0, err := NewScorer(m, 8, 0)
	require.NoError(t, err)
	_, err = sc0.ScoreProgress(context.Background(), seqs, func(d, total int) {
		assert.Equal(t, len(seqs), total)
		done = append(done, d)
	})
	require.NoError(t, err)
	assert.Equal(t, []int{8, 16, 21}, done)
	// A reusable scorer gives the same answers call after call.
	sc, err := NewScorer(m, 4, 64)
	require.NoError(t, err)
	a, err := sc.Score(context.Background(), seqs)
	require.NoError(t, err)
	b, err := sc.Score(context.Background(), seqs[:5])
	require.NoError(t, err)
	assert.Equal(t, a[:5], b)
	// Errors name the sequence.
	_, err = sc.Score(context.Background(), []datasets.Sequence{{Prompt: []int32{1}}, {}})
	require.ErrorContains(t, err, "sequence 1 is empty")
	_, err = sc.Score(context.Background(), []datasets.Sequence{{Prompt: make([]int32, 65)}})
	require.ErrorContains(t, err, "longer than the limit of 64")
	_, err = Score(context.Background(), testmodel.Tiny(t, pool, 1), seqs, 4)
	require.ErrorContains(t, err, "LlamaForSequenceClassification")
}

func TestEvaluateMatchesHandMetrics(t *testing.T) {
	pool := newPool(t, 2)
	m := tinyRM(t, pool, 6)
	rows := append(randomRows(41, 4, 300, false), randomRows(42, 2, 300, true)...)
	res, rewards, err := Evaluate(context.Background(), m, rows, EvalOptions{Batch: 3})
	require.NoError(t, err)
	var loss, margin float64
	correct, n := 0, 0
	for i, r := range rows {
		require.Len(t, rewards[i], len(r.Responses))
		for a := range r.Responses {
			want := rewardOf(t, m, concat(r.Prompt, r.Responses[a]))
			assert.InDelta(t, want, rewards[i][a], 1e-5)
			for b := a + 1; b < len(r.Responses); b++ {
				d := rewards[i][a] - rewards[i][b]
				loss += negLogSigmoid(d)
				margin += d
				if d > 0 {
					correct++
				}
				n++
			}
		}
	}
	assert.Equal(t, 4+2*3, res.N)
	assert.Equal(t, 6, res.Rows)
	assert.InDelta(t, loss/float64(n), res.Loss, 1e-9)
	assert.InDelta(t, margin/float64(n), res.MeanMargin, 1e-9)
	assert.InDelta(t, float64(correct)/float64(n), res.Accuracy, 1e-12)
}

func TestResumeIsBitExact(t *testing.T) {
	pool := newPool(t, 2)
	rows := randomRows(51, 12, 300, true)
	val := randomRows(52, 3, 300, false)
	base := tinyRM(t, pool, 2)
	cfg := DefaultConfig()
	cfg.Steps, cfg.Batch, cfg.Accum = 6, 3, 2
	cfg.Schedule.WarmupSteps = 2

	straight := cfg
	straight.OutDir = t.TempDir() + "/straight"
	want, _, err := Train(context.Background(), straight, base, rows, val, Hooks{})
	require.NoError(t, err)

	cut := cfg
	cut.OutDir = t.TempDir() + "/cut"
	ctx, cancel := context.WithCancel(context.Background())
	_, res, err := Train(ctx, cut, base, rows, val, Hooks{Progress: func(p trainer.Progress) {
		if p.Step == 3 {
			cancel()
		}
	}})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 3, res.Steps)
	cut.Resume = true
	got, res, err := Train(context.Background(), cut, base, rows, val, Hooks{})
	require.NoError(t, err)
	assert.Equal(t, 3, res.StartStep)
	assert.Equal(t, 6, res.Steps)
	assert.Equal(t, testmodel.Bits(want.W.Data), testmodel.Bits(got.W.Data), "resumed weights differ from a straight run")

	// The saved checkpoint loads as the trained reward model.
	saved, err := checkpoint.Load(context.Background(), cut.OutDir, pool)
	require.NoError(t, err)
	assert.Equal(t, testmodel.Bits(got.W.Data), testmodel.Bits(saved.W.Data))
	assert.True(t, saved.Config.IsSequenceClassifier())

	// Resuming with different data is refused.
	_, _, err = Train(context.Background(), cut, base, rows[:11], val, Hooks{})
	require.ErrorContains(t, err, "resume")
	// A fresh run into a used directory is refused.
	cut.Resume = false
	_, _, err = Train(context.Background(), cut, base, rows, val, Hooks{})
	require.ErrorContains(t, err, "not empty")
}

func TestFromCausalLMKeepsTheBackbone(t *testing.T) {
	pool := newPool(t, 1)
	lm := testmodel.Tiny(t, pool, 4)
	m, err := FromCausalLM(lm, 1, 0)
	require.NoError(t, err)
	assert.True(t, m.Config.IsSequenceClassifier())
	for _, tt := range m.W.Tensors {
		if tt.Name == "score.weight" {
			assert.Equal(t, []int{1, lm.Config.HiddenSize}, tt.Shape)
			assert.Equal(t, make([]float32, lm.Config.HiddenSize), tt.Data, "std 0 gives a zero head")
			continue
		}
		src, ok := lm.W.Lookup(tt.Name)
		require.True(t, ok, tt.Name)
		assert.Equal(t, testmodel.Bits(src.Data), testmodel.Bits(tt.Data), tt.Name)
	}
	_, ok := m.W.Lookup("lm_head.weight")
	assert.False(t, ok)
	// A zero head scores every sequence 0.
	assert.Equal(t, 0.0, rewardOf(t, m, []int32{1, 2, 3}))
}

func TestBadInput(t *testing.T) {
	pool := newPool(t, 1)
	m := tinyRM(t, pool, 1)
	good := randomRows(61, 2, 300, false)
	long := make([]int32, 300)
	cases := []struct {
		name string
		edit func(rows []datasets.EncodedPreference)
		cfg  func(c *Config)
		want string
	}{
		{"empty response", func(r []datasets.EncodedPreference) { r[1].Responses[1] = nil }, nil, "row 1 (line 2): rejected: the response is empty"},
		{"longer than the context", func(r []datasets.EncodedPreference) { r[0].Responses[0] = long }, nil, "row 0 (line 1): chosen: prompt + response is"},
		{"token outside the vocabulary", func(r []datasets.EncodedPreference) { r[1].Prompt[0] = 9999 }, nil, "row 1 (line 2): prompt: token 9999"},
		{"one response", func(r []datasets.EncodedPreference) { r[0].Responses = r[0].Responses[:1] }, nil, "row 0 (line 1): has 1 responses"},
		{"margin field missing", nil, func(c *Config) { c.Margin = MarginField }, "row 0 (line 1): margin mode \"field\" needs"},
		{"bad rating", func(r []datasets.EncodedPreference) { r[0].Rating = "meh" }, func(c *Config) { c.Margin = MarginLlama2 }, "unknown preference rating"},
		{"unknown margin mode", nil, func(c *Config) { c.Margin = "huge" }, "margin \"huge\""},
		{"bad threshold", nil, func(c *Config) { c.SimilarityThreshold = 2 }, "similarity threshold"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows := randomRows(61, 2, 300, false)
			if tc.edit != nil {
				tc.edit(rows)
			}
			cfg := DefaultConfig()
			cfg.Steps = 1
			if tc.cfg != nil {
				tc.cfg(&cfg)
			}
			_, _, err := Train(context.Background(), cfg, m, rows, nil, Hooks{})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	_, _, err := Train(context.Background(), DefaultConfig(), testmodel.Tiny(t, pool, 1), good, nil, Hooks{})
	require.ErrorContains(t, err, "not a LlamaForSequenceClassification")
	_, _, err = Evaluate(context.Background(), m, nil, EvalOptions{})
	require.ErrorContains(t, err, "no rows")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err = Evaluate(ctx, m, good, EvalOptions{})
	require.True(t, errors.Is(err, context.Canceled))
}
