package evaluation

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer/pretrain"
)

func item(fam demotask.Family, answer string) demotask.Item {
	return demotask.Item{ID: string(fam) + "-" + answer, Family: fam,
		Prompt: []demotask.Message{{Role: "user", Content: "q " + answer}}, Answer: answer}
}

func TestScoreHandMadeResponses(t *testing.T) {
	items := []demotask.Item{item(demotask.Add, "12"), item(demotask.Add, "7"), item(demotask.Upper, "CAT"), item(demotask.Reverse, "god")}
	responses := []Response{
		{Text: "12", Tokens: 1, Stop: StopEOT},         // right, compliant
		{Text: "8 8 8", Tokens: 5, Stop: StopLength},   // wrong, repeats, cut at the limit
		{Text: " CAT ", Tokens: 3, Stop: StopOther},    // right (space ignored), ended with end-of-text
		{Text: "The answer", Tokens: 2, Stop: StopEOT}, // wrong, compliant
	}
	previous := []string{"11", "7", "CAT", "dog"}
	m, err := Score(items, responses, previous)
	require.NoError(t, err)
	want := map[string]float64{
		Prompts: 4, Accuracy: 0.5, FormatCompliance: 0.5, EndsWithEOT: 0.5, TailRepetition: 0.25, Truncated: 0.25,
		MeanLength: float64(2+5+5+10) / 4, MeanTokens: float64(1+5+3+2) / 4,
		AccuracyPrefix + "add": 0.5, AccuracyPrefix + "upper": 1, AccuracyPrefix + "reverse": 0,
		// wins: 1 (12 vs 11), 0 (8 8 8 vs 7), 0.5 (both right), 0.5 (both wrong)
		WinRate: 0.5,
	}
	assert.Equal(t, want, m)

	noPrev, err := Score(items, responses, nil)
	require.NoError(t, err)
	assert.NotContains(t, noPrev, WinRate)
}

func TestWinsAndErrors(t *testing.T) {
	items := []demotask.Item{item(demotask.Add, "1"), item(demotask.Add, "2")}
	cases := []struct {
		name     string
		cur, old []string
		want     float64
		wantErr  string
	}{
		{"all better", []string{"1", "2"}, []string{"0", "0"}, 1, ""},
		{"all worse", []string{"0", "0"}, []string{"1", "2"}, 0, ""},
		{"ties", []string{"1", "x"}, []string{"1", "y"}, 0.5, ""},
		{"length mismatch", []string{"1"}, []string{"1", "2"}, 0, "one current and one previous"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, err := Wins(items, tc.cur, tc.old)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.InDelta(t, tc.want, w, 1e-12)
		})
	}
	_, err := Score(items, []Response{{Text: "1"}}, nil)
	require.ErrorContains(t, err, "1 responses for 2 items")
	_, err = Score(nil, nil, nil)
	require.ErrorContains(t, err, "no items")
}

func TestCompliant(t *testing.T) {
	for _, tc := range []struct {
		r    Response
		want bool
	}{
		{Response{Text: "42", Stop: StopEOT}, true},
		{Response{Text: "42", Stop: StopLength}, false},
		{Response{Text: "42", Stop: StopOther}, false},
		{Response{Text: "  ", Stop: StopEOT}, false},
		{Response{Text: "ab ab ab", Stop: StopEOT}, false},
	} {
		assert.Equal(t, tc.want, Compliant(tc.r), "%+v", tc.r)
	}
}

// tinyModel writes a randomly initialised tiny causal LM with a tokenizer learned on the
// task's corpus, and returns its directory.
func tinyModel(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	tr := tokenizer.NewTrainer(tokenizer.TrainOptions{})
	c := demotask.BuildCorpus(1, 200, 0.5)
	for _, s := range c.Texts {
		tr.Add(s)
	}
	for _, m := range c.Transcripts {
		msgs := make([]tokenizer.Message, len(m))
		for i, x := range m {
			msgs[i] = tokenizer.Message{Role: x.Role, Content: x.Content}
		}
		require.NoError(t, tr.AddMessages(msgs))
	}
	tok, err := tr.Train(ctx, 512)
	require.NoError(t, err)
	dir := t.TempDir()
	tokDir := filepath.Join(dir, "tok")
	require.NoError(t, tok.SaveDir(tokDir))
	model := filepath.Join(dir, "model")
	_, err = pretrain.Init(ctx, pretrain.InitOptions{Preset: "tiny", Tokenizer: tokDir, VocabSize: tok.VocabSize(), Seed: 3, OutDir: model})
	require.NoError(t, err)
	return model
}

func TestRunEndToEndOnTinyModel(t *testing.T) {
	ctx := context.Background()
	dir := tinyModel(t)
	pool := kernels.NewPool(2)
	defer pool.Close()
	m, err := checkpoint.Load(ctx, dir, pool)
	require.NoError(t, err)
	tok, err := tokenizer.LoadDir(dir)
	require.NoError(t, err)
	items := demotask.Generate(1, demotask.Eval, 16)

	calls := 0
	rep, err := Run(ctx, m, tok, items, Options{MaxNewTokens: 6, Progress: func(done, total int) { calls++ }})
	require.NoError(t, err)
	require.Len(t, rep.Responses, len(items))
	assert.Positive(t, calls, "progress is reported")
	for i, r := range rep.Responses {
		assert.Equal(t, items[i].ID, r.ItemID)
		assert.LessOrEqual(t, r.Tokens, 6)
		if r.Stop == StopLength {
			assert.Equal(t, 6, r.Tokens, "a cut answer used the whole budget")
		}
	}
	again, err := Score(items, rep.Responses, nil)
	require.NoError(t, err)
	assert.Equal(t, again, rep.Metrics, "Run's metrics are Score of its responses")
	for _, k := range []string{Accuracy, FormatCompliance, Truncated, EndsWithEOT} {
		assert.GreaterOrEqual(t, rep.Metrics[k], 0.0, k)
		assert.LessOrEqual(t, rep.Metrics[k], 1.0, k)
	}

	// Greedy decoding is deterministic, and against its own answers the win rate is 1/2.
	rep2, err := Run(ctx, m, tok, items, Options{MaxNewTokens: 6, Previous: rep.Texts()})
	require.NoError(t, err)
	assert.Equal(t, rep.Texts(), rep2.Texts())
	assert.InDelta(t, 0.5, rep2.Metrics[WinRate], 1e-12)

	_, err = Run(ctx, m, tok, items, Options{Previous: []string{"x"}})
	require.ErrorContains(t, err, "1 previous responses for 16 items")
	_, err = Run(ctx, m, tok, nil, Options{})
	require.ErrorContains(t, err, "no items")
}

func TestRewardModelOnTinyClassifier(t *testing.T) {
	ctx := context.Background()
	dir := tinyModel(t)
	pool := kernels.NewPool(2)
	defer pool.Close()
	rm, err := checkpoint.LoadAsClassifier(ctx, dir, pool, checkpoint.ScoreInit{Seed: 1})
	require.NoError(t, err)
	tok, err := tokenizer.LoadDir(dir)
	require.NoError(t, err)
	ann := demotask.NewAnnotator(demotask.AnnotatorOptions{Edit: true}, 1)
	rng := demotask.Generate(2, demotask.Eval, 8)
	var pairs []Pair
	for i, it := range rng {
		p, ok := ann.Compare(it, it.Answer, "The answer is "+it.Answer)
		require.True(t, ok)
		pairs = append(pairs, Pair{Item: it, Pref: p})
		if i == 0 { // both wrong: the edited answer ranks first (3 ordered pairs)
			p, ok := ann.Compare(it, "x", "y")
			require.True(t, ok)
			require.NotEmpty(t, p.Edited)
			pairs = append(pairs, Pair{Item: it, Pref: p})
		}
	}
	m, err := RewardModel(ctx, rm, tok, pairs, 0)
	require.NoError(t, err)
	assert.Equal(t, float64(len(pairs)+2), m[RMPairs], "one pair per row, three for the edited row")
	assert.GreaterOrEqual(t, m[RMAccuracy], 0.0)
	assert.LessOrEqual(t, m[RMAccuracy], 1.0)
	assert.Positive(t, m[RMLoss])

	_, err = RewardModel(ctx, rm, tok, nil, 0)
	require.ErrorContains(t, err, "no held-out pairs")
	_, err = RewardModel(ctx, rm, tok, pairs[:1], 3)
	require.ErrorContains(t, err, "pair 0")
}
