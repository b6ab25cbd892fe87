package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/internal/pgtest"
)

func TestDemoCorpusWritesTheFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "corpus")
	out, _, err := runCLI(t, "demo", "corpus", "--out", dir, "--docs", "40", "--seed", "3", "--json")
	require.NoError(t, err)
	var got struct {
		Files       []string `json:"files"`
		Texts       int      `json:"texts"`
		Transcripts int      `json:"transcripts"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	assert.Equal(t, 40, got.Texts)
	assert.Equal(t, 40, got.Transcripts)
	require.Len(t, got.Files, 2)
	for _, f := range got.Files {
		raw, err := os.ReadFile(f)
		require.NoError(t, err)
		assert.Len(t, splitLines(raw), 40, f)
	}
	// The same seed writes the same bytes.
	again := filepath.Join(t.TempDir(), "again")
	_, _, err = runCLI(t, "demo", "corpus", "--out", again, "--docs", "40", "--seed", "3")
	require.NoError(t, err)
	a, _ := os.ReadFile(filepath.Join(dir, demotask.ChatFile))
	b, _ := os.ReadFile(filepath.Join(again, demotask.ChatFile))
	assert.Equal(t, a, b)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "corpus"}, "--out is required"},
		{[]string{"demo", "corpus", "--out", dir, "--docs", "0"}, "--docs must be >= 1"},
		{[]string{"demo", "corpus", "--out", dir, "--mistake-rate", "2"}, "--mistake-rate must be in [0, 1]"},
	} {
		_, _, err := runCLI(t, tc.args...)
		require.ErrorContains(t, err, tc.want, tc.args)
	}
}

func splitLines(b []byte) [][]byte {
	var out [][]byte
	start := 0
	for i, c := range b {
		if c == '\n' {
			out = append(out, b[start:i])
			start = i + 1
		}
	}
	return out
}

func TestDemoEvalOnTheShippedBaseModel(t *testing.T) {
	out, _, err := runCLI(t, "demo", "eval", "--model", filepath.Join("..", "..", "assets", "basemodel"), "--prompts", "16", "--max-new-tokens", "8", "--json")
	require.NoError(t, err)
	var rep struct {
		Responses []struct {
			Text string `json:"text"`
		} `json:"responses"`
		Metrics map[string]float64 `json:"metrics"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	assert.Len(t, rep.Responses, 16)
	assert.Equal(t, 16.0, rep.Metrics["prompts"])
	assert.GreaterOrEqual(t, rep.Metrics["accuracy"], 0.0)
	assert.Less(t, rep.Metrics["accuracy"], 1.0, "the base model does not follow every instruction")
	assert.Greater(t, rep.Metrics["ends_with_eot"], 0.5, "the base model knows the chat format")

	_, _, err = runCLI(t, "demo", "eval")
	require.ErrorContains(t, err, "--model is required")
	_, _, err = runCLI(t, "demo", "eval", "--model", t.TempDir())
	require.Error(t, err)
}

func TestReportCommandFromTheDatastore(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.NewEmptyDatabase(t)
	pool := pgtest.Open(t, dsn)
	require.NoError(t, datastore.Migrate(ctx, pool))
	s := datastore.New(pool)
	_, err := s.CreateRun(ctx, datastore.Run{ID: "r1", WorkflowID: "r1", Preset: "demo"})
	require.NoError(t, err)
	_, err = s.StartRound(ctx, "r1", 1, "")
	require.NoError(t, err)
	require.NoError(t, s.RecordMetrics(ctx, []datastore.Metric{
		{RunID: "r1", Round: 1, Stage: datastore.StageEval, Variant: "dpo", Name: "accuracy", Value: 0.5},
		{RunID: "r1", Round: 1, Stage: datastore.StageEval, Variant: "dpo", Name: "accuracy_add", Value: 0.25},
		{RunID: "r1", Round: 1, Stage: datastore.StageSFT, Variant: "0", Step: 40, Name: "loss", Value: 0.125},
	}))
	dir := filepath.Join(t.TempDir(), "rep")
	out, _, err := runCLI(t, "report", "--database-url", dsn, "--run", "r1", "--out", dir, "--json")
	require.NoError(t, err)
	var got struct {
		Table struct {
			Rows []struct {
				Round    int                `json:"round"`
				Accuracy float64            `json:"accuracy"`
				SFTLoss  float64            `json:"sft_loss"`
				ByFamily map[string]float64 `json:"accuracy_by_family"`
			} `json:"rows"`
		} `json:"table"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &got))
	require.Len(t, got.Table.Rows, 1)
	assert.Equal(t, 0.5, got.Table.Rows[0].Accuracy)
	assert.Equal(t, 0.125, got.Table.Rows[0].SFTLoss)
	assert.Equal(t, map[string]float64{"add": 0.25}, got.Table.Rows[0].ByFamily)
	for _, f := range []string{"report.md", "report.html", "accuracy.png", "rewards.png"} {
		assert.FileExists(t, filepath.Join(dir, f))
	}

	_, _, err = runCLI(t, "report", "--database-url", dsn, "--run", "nope", "--out", dir)
	require.ErrorContains(t, err, "run nope")
	_, _, err = runCLI(t, "report", "--run", "r1")
	require.ErrorContains(t, err, "--run and --out are required")
}
