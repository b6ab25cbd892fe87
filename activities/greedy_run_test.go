package activities_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
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

// TestGreedySoupsInARun runs one round of the pipeline with every stage averaging its
// two variants greedily (a real Temporal server, PostgreSQL and tiny models) and checks
// each soup recorded its steps and scores on that stage's held-out data.
func TestGreedySoupsInARun(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: trains real tiny models for a round")
	}
	srv := temporaltest.NewServer(temporaltest.WithT(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, err := srv.GetDefaultClient().OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		SearchAttributes: map[string]enumspb.IndexedValueType{
			workflows.SearchAttrRound: enumspb.INDEXED_VALUE_TYPE_INT,
			workflows.SearchAttrStage: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		},
		Namespace: srv.GetDefaultNamespace(),
	})
	require.NoError(t, err)

	tokPath := "../tokenizer/testdata/tiny_llama3.json"
	tok, err := tokenizer.LoadFile(tokPath)
	require.NoError(t, err)
	base := filepath.Join(t.TempDir(), "base")
	_, err = pretrain.Init(ctx, pretrain.InitOptions{Preset: "tiny", Tokenizer: tokPath, VocabSize: tok.VocabSize(), Seed: 3, OutDir: base})
	require.NoError(t, err)
	pool := pgtest.NewDB(t)
	store, err := artifacts.NewFS(t.TempDir())
	require.NoError(t, err)
	deps := activities.Deps{Pool: pool, Store: store, DataDir: t.TempDir(), Threads: 2, Env: map[string]string{},
		DefaultBaseModel: func(context.Context) (string, error) { return base, nil }}
	c := srv.GetDefaultClient()
	ws, err := worker.New(c, deps, worker.Options{TaskQueue: "greedy"})
	require.NoError(t, err)
	require.NoError(t, ws.Start())
	t.Cleanup(ws.Stop)

	sets := []string{
		"task.train_prompts=32", "task.eval_prompts=8", "task.sft_seed_examples=16",
		"trainer.warmup_steps=1", "trainer.checkpoint_every=2",
		"reward.steps=4", "reward.batch_size=4", "reward.variants=2", "reward.averaging=greedy",
		"sampling.k=3", "sampling.max_new_tokens=8", "sampling.shards=1", "sampling.prompts_per_round=8", "sampling.kv_budget_bytes=0",
		"sft.steps=4", "sft.batch_size=4", "sft.variants=2", "sft.averaging=greedy",
		"dpo.steps=4", "dpo.batch_size=2", "dpo.variants=2", "dpo.averaging=greedy",
		"eval.prompts=8", "eval.max_new_tokens=8", "annotator.prompts_per_round=32",
	}
	id := fmt.Sprintf("greedy-run-%d", time.Now().UnixNano())
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "greedy"}, workflows.WorkflowType,
		workflows.RunInput{Preset: "demo", Rounds: 1, Overrides: sets, Seed: 5})
	require.NoError(t, err)
	var res workflows.RunResult
	require.NoError(t, run.Get(ctx, &res))
	require.Len(t, res.Rounds, 1)

	db := datastore.New(pool)
	r := res.Rounds[0]
	for stage, model := range map[string]string{workflows.StageReward: r.RewardModel, workflows.StageSFT: r.SFTModel, workflows.StageDPO: r.FinalModel} {
		art, err := db.GetArtifact(ctx, model)
		require.NoError(t, err, stage)
		t.Logf("%s soup: method %v kept %v steps %v fallback %v", stage, art.Metadata["method"], art.Metadata["kept"], art.Metadata["greedy_steps"], art.Metadata["greedy_fallback"])
		if fb, ok := art.Metadata["greedy_fallback"]; ok {
			// Only possible when the stage had no held-out rows yet.
			require.Equal(t, "uniform", art.Metadata["method"], "%s: %v", stage, fb)
			continue
		}
		require.Equal(t, "greedy", art.Metadata["method"], stage)
		require.Len(t, art.Metadata["greedy_steps"], 2, stage)
		ms, err := db.ListMetrics(ctx, datastore.MetricFilter{RunID: id, Round: 1, Stage: datastore.StageAverage, Variant: stage, Name: "greedy_kept"})
		require.NoError(t, err)
		require.Len(t, ms, 2, stage)
		require.Equal(t, 1.0, ms[0].Value, "%s: the best variant is always kept", stage)
	}
	// SFT always has held-out rows (the curated data's eval split).
	sftArt, err := db.GetArtifact(ctx, r.SFTModel)
	require.NoError(t, err)
	require.Equal(t, "greedy", sftArt.Metadata["method"])
	require.Equal(t, "val_loss", sftArt.Metadata["score_metric"])
	dpoArt, err := db.GetArtifact(ctx, r.FinalModel)
	require.NoError(t, err)
	if dpoArt.Metadata["method"] == "greedy" {
		require.Equal(t, r.SFTModel, dpoArt.Metadata["reference"], "the DPO soup scores against the round's SFT model")
	}
}
