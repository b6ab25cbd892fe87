package report

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
)

// seedRun stores a two-round run the way the workflow's activities do: training losses
// per step, evaluation metrics per stage, stage times and sampling candidates.
func seedRun(t *testing.T, s *datastore.Store) {
	t.Helper()
	ctx := context.Background()
	_, err := s.CreateRun(ctx, datastore.Run{ID: "run1", WorkflowID: "run1", Preset: "demo"})
	require.NoError(t, err)
	var ms []datastore.Metric
	add := func(round int, stage, variant, name string, step int64, v float64) {
		ms = append(ms, datastore.Metric{RunID: "run1", Round: round, Stage: stage, Variant: variant, Step: step, Name: name, Value: v})
	}
	add(0, datastore.StageEval, EvalBase, "accuracy", 0, 0.2)
	add(0, datastore.StageEval, EvalBase, "accuracy_add", 0, 0.1)
	add(0, datastore.StageEval, EvalBase, "format_compliance", 0, 0.5)
	for r := 1; r <= 2; r++ {
		_, err := s.StartRound(ctx, "run1", r, "")
		require.NoError(t, err)
		f := float64(r)
		add(r, datastore.StageEval, EvalReward, "accuracy", 0, 0.6+0.1*f)
		for _, v := range []string{"0", "1"} {
			add(r, datastore.StageSFT, v, "loss", 1, 9)          // an early step: not the final value
			add(r, datastore.StageSFT, v, "loss", 40, 1.0/f+0.1) // the final value
		}
		add(r, datastore.StageDPO, "0", "loss", 30, 0.5/f)
		add(r, datastore.StageEval, EvalDPO, "dpo_margin", 0, 0.2*f)
		add(r, datastore.StageEval, EvalSFT, "accuracy", 0, 0.3*f)
		add(r, datastore.StageEval, EvalDPO, "accuracy", 0, 0.35*f)
		add(r, datastore.StageEval, EvalDPO, "accuracy_add", 0, 0.4*f)
		add(r, datastore.StageEval, EvalDPO, "accuracy_upper", 0, 0.25*f)
		add(r, datastore.StageEval, EvalDPO, "format_compliance", 0, 0.9)
		add(r, datastore.StageEval, EvalDPO, "mean_length", 0, 3)
		st, err := s.StartStage(ctx, datastore.StageKey{RunID: "run1", Round: r, Kind: datastore.StageSFT, Variant: "0"}, 1)
		require.NoError(t, err)
		require.NoError(t, s.FinishStage(ctx, st.ID, datastore.StatusCompleted, "", ""))
		st2, err := s.StartStage(ctx, datastore.StageKey{RunID: "run1", Round: r, Kind: datastore.StageDPO, Variant: "0"}, 1)
		require.NoError(t, err)
		require.NoError(t, s.FinishStage(ctx, st2.ID, datastore.StatusCompleted, "", ""))
		if r == 2 { // the round summary's stage times win over the stage rows
			add(r, datastore.StageSummary, datastore.StageSFT, "seconds", 0, 12.5)
			add(r, datastore.StageSummary, datastore.StageDPO, "seconds", 0, 7.5)
		}
		var cs []datastore.Candidate
		for p := 0; p < 4; p++ {
			for k := 0; k < 4; k++ {
				c := datastore.Candidate{RunID: "run1", Round: r, PromptID: fmt.Sprintf("p%d", p), SampleIndex: k,
					Text: "x", Reward: float64(k) + f, Selected: k == 3}
				if r == 2 && p < 2 { // round 2 verified two prompts: 3 of 8 samples right
					ok := k >= 3-p
					c.Verified = &ok
				}
				cs = append(cs, c)
			}
		}
		require.NoError(t, s.RecordCandidates(ctx, cs))
	}
	require.NoError(t, s.RecordMetrics(ctx, ms))
}

func TestBuildTableFromStore(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	seedRun(t, s)
	d, err := Load(ctx, s, "run1")
	require.NoError(t, err)
	tab := BuildTable(d)
	require.Len(t, tab.Rows, 3)
	assert.Equal(t, []string{"add", "upper"}, tab.Families)

	base := tab.Rows[0]
	assert.Equal(t, 0, base.Round)
	assert.InDelta(t, 0.2, base.Accuracy, 1e-12)
	assert.False(t, base.Has["sft_loss"])

	cases := []struct {
		got, want float64
		name      string
	}{
		{tab.Rows[1].SFTLoss, 1.1, "round 1 SFT loss: final step, mean of two variants"},
		{tab.Rows[2].SFTLoss, 0.6, "round 2 SFT loss"},
		{tab.Rows[2].DPOLoss, 0.25, "round 2 DPO loss"},
		{tab.Rows[2].RMAccuracy, 0.8, "round 2 RM accuracy"},
		{tab.Rows[2].Accuracy, 0.7, "round 2 final accuracy"},
		{tab.Rows[2].SFTAccuracy, 0.6, "round 2 SFT accuracy"},
		{tab.Rows[2].DPOMargin, 0.4, "round 2 margin"},
		{tab.Rows[2].ByFamily["upper"], 0.5, "round 2 upper"},
		{tab.Rows[2].SamplesCorrect, 3.0 / 8, "round 2 share of checked samples that passed"},
	}
	for _, c := range cases {
		assert.InDelta(t, c.want, c.got, 1e-9, c.name)
	}
	assert.False(t, tab.Rows[1].Has["samples_correct"], "round 1 checked no sample")
	assert.Equal(t, 4, tab.Rows[1].Kept)
	assert.Equal(t, []string{datastore.StageSFT, datastore.StageDPO}, tab.Stages)
	assert.Len(t, tab.Rows[1].Seconds, 2, "round 1: both stage rows timed")
	assert.Equal(t, map[string]float64{"sft": 12.5, "dpo": 7.5}, tab.Rows[2].Seconds)
	assert.InDelta(t, 20, tab.Rows[2].TotalSeconds(), 1e-9)
	assert.Nil(t, tab.WithoutTimings().Rows[1].Seconds)

	md := tab.Markdown()
	assert.Contains(t, md, "| 0 (base) | - | - |")
	assert.Contains(t, md, "| 1 | 0.700 | - | 4 | 1.1000 |")
	assert.Contains(t, md, "| 2 | 0.800 | 0.375 | 4 | 0.6000 | 0.2500 | 0.400 | 0.600 | 0.700 |")

	_, err = Load(ctx, s, "nope")
	require.ErrorContains(t, err, "run nope")
}

func TestWriteReportDirectory(t *testing.T) {
	ctx := context.Background()
	s := datastore.New(pgtest.NewDB(t))
	seedRun(t, s)
	d, err := Load(ctx, s, "run1")
	require.NoError(t, err)
	require.Len(t, d.Candidates, 32)
	dir := filepath.Join(t.TempDir(), "out")
	if out := os.Getenv("REPORT_TEST_OUT"); out != "" {
		dir = out // to look at the plots
	}
	files, err := Write(d, dir, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	require.NoError(t, err)
	require.Len(t, files.Plots, 4)
	for _, p := range files.Plots {
		raw, err := os.ReadFile(p)
		require.NoError(t, err)
		img, err := png.Decode(bytes.NewReader(raw))
		require.NoError(t, err, p)
		assert.Greater(t, img.Bounds().Dx(), 400, p)
	}
	md, err := os.ReadFile(files.Markdown)
	require.NoError(t, err)
	assert.Contains(t, string(md), "Held-out exact-match accuracy: base model 20.0%, round 1 35.0%, round 2 70.0%.")
	for _, p := range []string{AccuracyPNG, FamilyPNG, MarginPNG, RewardsPNG} {
		assert.Contains(t, string(md), "]("+p+")")
	}
	page, err := os.ReadFile(files.HTML)
	require.NoError(t, err)
	assert.Equal(t, 2, strings.Count(string(page), "<table>"), "metrics and timing tables")
	assert.Contains(t, string(page), `<img src="rewards.png"`)
}
