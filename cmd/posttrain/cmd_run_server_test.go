package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/server/temporaltest"

	"github.com/posttrain/posttrain/activities"
	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/worker"
	"github.com/posttrain/posttrain/workflows"
)

// TestRunCLIAgainstServer drives `posttrain run`, `annotations submit` and `schedule`
// against an in-process Temporal server with a worker training a tiny model.
func TestRunCLIAgainstServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Temporal server and trains a tiny model")
	}
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		SearchAttributes: map[string]enumspb.IndexedValueType{
			workflows.SearchAttrRound: enumspb.INDEXED_VALUE_TYPE_INT, workflows.SearchAttrStage: enumspb.INDEXED_VALUE_TYPE_KEYWORD},
		Namespace: ts.GetDefaultNamespace(),
	})
	require.NoError(t, err)

	pool := pgtest.NewDB(t)
	store, err := artifacts.NewFS(t.TempDir())
	require.NoError(t, err)
	tokPath := "../../tokenizer/testdata/tiny_llama3.json"
	tok, err := tokenizer.LoadFile(tokPath)
	require.NoError(t, err)
	base := filepath.Join(t.TempDir(), "base")
	_, err = pretrain.Init(ctx, pretrain.InitOptions{Preset: "tiny", Tokenizer: tokPath, VocabSize: tok.VocabSize(), Seed: 3, OutDir: base})
	require.NoError(t, err)
	ws, err := worker.New(c, activities.Deps{Pool: pool, Store: store, DataDir: t.TempDir(), Threads: 2, Env: map[string]string{},
		DefaultBaseModel: func(context.Context) (string, error) { return base, nil }}, worker.Options{})
	require.NoError(t, err)
	require.NoError(t, ws.Start())
	defer ws.Stop()

	conn := []string{"--temporal-address", ts.GetFrontendHostPort(), "--namespace", ts.GetDefaultNamespace()}
	cli := func(args ...string) string {
		t.Helper()
		out, err := runDSCLI(t, append(args, conn...)...)
		require.NoError(t, err, "posttrain %s", strings.Join(args, " "))
		return out
	}
	status := func(id string) workflows.Status {
		var got struct {
			Status workflows.Status `json:"status"`
		}
		require.NoError(t, json.Unmarshal([]byte(cli("run", "status", id, "--json")), &got))
		return got.Status
	}
	sets := []string{"--preset", "demo", "--set", "task.train_prompts=16", "--set", "task.eval_prompts=4", "--set", "task.sft_seed_examples=8",
		"--set", "reward.steps=2", "--set", "sft.steps=2", "--set", "dpo.steps=2", "--set", "dpo.variants=1",
		"--set", "sampling.k=2", "--set", "sampling.max_new_tokens=6", "--set", "sampling.prompts_per_round=4", "--set", "eval.max_new_tokens=6"}

	// A human-annotated run waits for its initial annotations, which the CLI uploads.
	id := fmt.Sprintf("cli-run-%d", time.Now().UnixNano())
	var started map[string]string
	require.NoError(t, json.Unmarshal([]byte(cli(append([]string{"run", "start", "--json", "--id", id, "--rounds", "1", "--annotator", "human"}, sets...)...)), &started))
	require.Equal(t, id, started["workflow_id"])
	require.Contains(t, started["ui"], "/workflows/"+id)
	require.Eventually(t, func() bool { return status(id).State == workflows.StateWaitingAnnotations }, time.Minute, 100*time.Millisecond)

	file := filepath.Join(t.TempDir(), "prefs.jsonl")
	var lines []string
	for i := range 6 {
		lines = append(lines, fmt.Sprintf(`{"prompt": "What is %d + 1?", "chosen": "%d", "rejected": "%d"}`, i, i+1, i+2))
	}
	require.NoError(t, os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	out := cli("annotations", "submit", id, file, "--database-url", pool.Config().ConnString())
	require.Contains(t, out, "6 rows uploaded to "+id+"-human-r0")

	// Pause holds the run between stages; resume lets it finish.
	cli("run", "pause", id)
	require.Eventually(t, func() bool { return status(id).Paused }, time.Minute, 50*time.Millisecond)
	cli("run", "resume", id)
	require.Eventually(t, func() bool { return status(id).State == workflows.StateCompleted }, 3*time.Minute, 200*time.Millisecond)
	st := status(id)
	require.NotEmpty(t, st.FinalModel)
	r, err := datastore.New(pool).GetRun(ctx, id)
	require.NoError(t, err)
	require.Equal(t, st.FinalModel, r.ResultArtifactID)

	var listed []struct {
		ID     string `json:"workflow_id"`
		Status string `json:"status"`
		Round  int    `json:"round"`
		Stage  string `json:"stage"`
	}
	require.Eventually(t, func() bool {
		require.NoError(t, json.Unmarshal([]byte(cli("run", "list", "--json")), &listed))
		return len(listed) > 0
	}, 30*time.Second, 200*time.Millisecond)
	require.Equal(t, id, listed[0].ID)
	require.Equal(t, "Completed", listed[0].Status)
	require.Equal(t, 1, listed[0].Round, "the round search attribute")
	require.Equal(t, workflows.StageSummary, listed[0].Stage, "the stage search attribute")

	// A run that is cancelled.
	id2 := id + "-c"
	cli(append([]string{"run", "start", "--id", id2, "--rounds", "1", "--annotator", "human"}, sets...)...)
	require.Eventually(t, func() bool { return status(id2).State == workflows.StateWaitingAnnotations }, time.Minute, 100*time.Millisecond)
	_, err = runDSCLI(t, append([]string{"run", "approve", id2, "--round", "1"}, conn...)...)
	require.ErrorContains(t, err, "does not require approval")
	cli("run", "cancel", id2)
	require.Eventually(t, func() bool {
		r, err := datastore.New(pool).GetRun(ctx, id2)
		return err == nil && r.Status == datastore.StatusCancelled
	}, time.Minute, 100*time.Millisecond)

	// Schedules.
	cli(append([]string{"schedule", "create", "--every", "24h", "--id", "nightly-" + id, "--rounds", "1"}, sets...)...)
	var schedules []string
	require.Eventually(t, func() bool {
		require.NoError(t, json.Unmarshal([]byte(cli("schedule", "list", "--json")), &schedules))
		return len(schedules) == 1
	}, 30*time.Second, 200*time.Millisecond)
	require.Equal(t, []string{"nightly-" + id}, schedules)
	require.Contains(t, cli("schedule", "pause", "nightly-"+id), "pause done")
	require.Contains(t, cli("schedule", "delete", "nightly-"+id), "delete done")
}
