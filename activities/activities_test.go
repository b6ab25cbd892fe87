package activities

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/workflows"
)

// fixture is a real PostgreSQL database, an fs artifact store, a tiny base model and
// the activities over them.
type fixture struct {
	pool *pgxpool.Pool
	db   *datastore.Store
	acts *Activities
	base string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	tokPath := "../tokenizer/testdata/tiny_llama3.json"
	tok, err := tokenizer.LoadFile(tokPath)
	require.NoError(t, err)
	base := filepath.Join(t.TempDir(), "base")
	_, err = pretrain.Init(context.Background(), pretrain.InitOptions{Preset: "tiny", Tokenizer: tokPath, VocabSize: tok.VocabSize(), Seed: 3, OutDir: base})
	require.NoError(t, err)
	pool := pgtest.NewDB(t)
	store, err := artifacts.NewFS(t.TempDir())
	require.NoError(t, err)
	acts, err := New(Deps{Pool: pool, Store: store, DataDir: t.TempDir(), Threads: 2, Env: map[string]string{},
		DefaultBaseModel: func(context.Context) (string, error) { return base, nil }})
	require.NoError(t, err)
	return &fixture{pool: pool, db: datastore.New(pool), acts: acts, base: base}
}

// env is an activity test environment with the activities registered.
func (f *fixture) env() *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	e := s.NewTestActivityEnvironment()
	e.RegisterActivity(f.acts)
	return e
}

var tinySets = []string{
	"task.train_prompts=16", "task.eval_prompts=4", "task.sft_seed_examples=16",
	"trainer.warmup_steps=1", "trainer.checkpoint_every=2",
	"reward.steps=2", "reward.batch_size=4", "sft.steps=2", "sft.batch_size=4",
	"dpo.steps=2", "dpo.batch_size=2", "annotator.prompts_per_round=8", "sampling.max_new_tokens=6",
}

// start runs StartRun for a run with the tiny settings.
func (f *fixture) start(t *testing.T, id string) workflows.Plan {
	t.Helper()
	v, err := f.env().ExecuteActivity(f.acts.StartRun, workflows.StartRunRequest{WorkflowID: id, Input: workflows.RunInput{Preset: "demo", Overrides: tinySets}})
	require.NoError(t, err)
	var p workflows.Plan
	require.NoError(t, v.Get(&p))
	return p
}

// count returns the rows of a table for a run.
func (f *fixture) count(t *testing.T, q string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), q, args...).Scan(&n))
	return n
}

func TestStartRunSnapshotsConfigAndRegistersData(t *testing.T) {
	f := newFixture(t)
	p := f.start(t, "run-a")
	require.Equal(t, "run-a", p.RunID)
	require.Equal(t, 6, p.Rounds)
	require.True(t, p.NeedInitialAnnotations)
	require.Equal(t, p.BaseModel, p.InitialPolicy)
	require.NoError(t, p.Validate())
	run, err := f.db.GetRun(context.Background(), "run-a")
	require.NoError(t, err)
	require.Equal(t, "demo", run.Preset)
	require.Contains(t, string(run.Config), `"steps": 2`)
	base, err := f.db.GetArtifact(context.Background(), p.BaseModel)
	require.NoError(t, err)
	require.Equal(t, "model", base.Kind)
	require.Equal(t, 16, f.count(t, `SELECT count(*) FROM prompts WHERE dataset = $1`, p.Prompts))

	// A retry returns the same plan and writes nothing new.
	before := f.count(t, `SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM artifacts) + (SELECT count(*) FROM prompts) + (SELECT count(*) FROM sft_examples)`)
	require.Equal(t, p, f.start(t, "run-a"))
	require.Equal(t, before, f.count(t, `SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM artifacts) + (SELECT count(*) FROM prompts) + (SELECT count(*) FROM sft_examples)`))
}

func TestStartRunRejectsBadConfigWithoutWriting(t *testing.T) {
	tests := []struct {
		name string
		in   workflows.RunInput
		want string
	}{
		{"unknown key", workflows.RunInput{Overrides: []string{"dpo.betta=0.2"}}, "dpo.betta"},
		{"bad beta", workflows.RunInput{Overrides: []string{"dpo.beta=-1"}}, "dpo.beta"},
		{"unknown preset", workflows.RunInput{Preset: "nope"}, `unknown preset "nope"`},
		{"missing dataset", workflows.RunInput{Datasets: workflows.DatasetRefs{Prompts: "absent"}}, "dataset absent"},
		{"base model", workflows.RunInput{BaseModel: "/no/such/model"}, `base model "/no/such/model"`},
	}
	f := newFixture(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.env().ExecuteActivity(f.acts.StartRun, workflows.StartRunRequest{WorkflowID: "bad-" + tc.name, Input: tc.in})
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			var app *temporal.ApplicationError
			require.True(t, errors.As(err, &app), "%T", err)
			require.True(t, app.NonRetryable())
			require.Equal(t, workflows.ErrInvalidInput, app.Type())
			require.Equal(t, 0, f.count(t, `SELECT count(*) FROM runs WHERE id = $1`, "bad-"+tc.name))
		})
	}
}

func TestStartRunAcceptsGreedySoups(t *testing.T) {
	f := newFixture(t)
	p := f.startWith(t, "run-greedy-ok", "reward.averaging=greedy", "sft.averaging=greedy", "dpo.averaging=greedy")
	require.NoError(t, p.Validate())
	cfg, err := f.acts.config(context.Background(), p.RunID)
	require.NoError(t, err)
	for stage, method := range map[string]string{"reward": cfg.Reward.Averaging, "sft": cfg.SFT.Averaging, "dpo": cfg.DPO.Averaging} {
		require.Equal(t, "greedy", method, stage)
	}
}

func TestTrainSFTResumesFromTheHeartbeatCheckpoint(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	p := f.start(t, "run-r")
	req := workflows.TrainRequest{RunID: p.RunID, Round: 1, Variant: 0, Init: p.BaseModel, Seed: 1}

	// First attempt: two steps, checkpointed at step 2 in the stage's work directory.
	v, err := f.env().ExecuteActivity(f.acts.TrainSFT, req)
	require.NoError(t, err)
	var first workflows.ModelResult
	require.NoError(t, v.Get(&first))
	require.Equal(t, 2, first.Steps)
	require.Equal(t, 0, first.StartStep)

	// The worker "died" after that checkpoint, before recording the stage's end, and the
	// run was meant to train four steps.
	_, err = f.pool.Exec(ctx, `UPDATE stages SET status = 'running', output_artifact_id = '' WHERE run_id = $1 AND kind = 'sft'`, p.RunID)
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, `UPDATE runs SET config = jsonb_set(config, '{sft,steps}', '4') WHERE id = $1`, p.RunID)
	require.NoError(t, err)

	key := datastore.StageKey{RunID: p.RunID, Round: 1, Kind: datastore.StageSFT, Variant: "0"}
	e := f.env()
	e.SetHeartbeatDetails(workflows.Progress{Stage: "sft", Step: 2, Total: 2, CheckpointStep: 2, CheckpointDir: filepath.Join(f.acts.workDir(key), "run")})
	v, err = e.ExecuteActivity(f.acts.TrainSFT, req)
	require.NoError(t, err)
	var second workflows.ModelResult
	require.NoError(t, v.Get(&second))
	require.Equal(t, 2, second.StartStep, "the retry resumes at the saved step, not 0")
	require.Equal(t, 4, second.Steps)
	require.NotEqual(t, first.ArtifactID, second.ArtifactID)

	// Stage row: completed with the new model, checkpoint at step 4; one loss per step.
	st, err := f.db.GetStage(ctx, key)
	require.NoError(t, err)
	require.Equal(t, datastore.StatusCompleted, st.Status)
	require.Equal(t, second.ArtifactID, st.OutputArtifactID)
	require.Equal(t, int64(4), st.CheckpointStep)
	losses, err := f.db.ListMetrics(ctx, datastore.MetricFilter{RunID: p.RunID, Round: 1, Stage: "sft", Variant: "0", Name: "loss"})
	require.NoError(t, err)
	require.Len(t, losses, 4)
	for i, m := range losses {
		require.Equal(t, int64(i+1), m.Step)
	}
	start, err := f.db.ListMetrics(ctx, datastore.MetricFilter{RunID: p.RunID, Round: 1, Stage: "sft", Variant: "0", Name: "start_step"})
	require.NoError(t, err)
	require.Len(t, start, 1)
	require.Equal(t, 2.0, start[0].Value)
	// Lineage: the model was made from the base model and the curated data.
	edges, err := f.db.Lineage(ctx, second.ArtifactID)
	require.NoError(t, err)
	roles := map[string]string{}
	for _, e := range edges {
		if e.Depth == 1 {
			roles[e.Role] = e.Parent
		}
	}
	require.Equal(t, p.BaseModel, roles["init"])
	require.Contains(t, roles["train_data"], "dataset-")
}

func TestActivitiesRerunWithoutDuplicates(t *testing.T) {
	f := newFixture(t)
	p := f.start(t, "run-i")
	tables := `SELECT (SELECT count(*) FROM artifacts) || '/' || (SELECT count(*) FROM artifact_lineage) || '/' ||
		(SELECT count(*) FROM stages) || '/' || (SELECT count(*) FROM metrics) || '/' || (SELECT count(*) FROM preference_pairs)`
	snapshot := func() string {
		var s string
		require.NoError(t, f.pool.QueryRow(context.Background(), tables).Scan(&s))
		return s
	}
	steps := []struct {
		name string
		fn   any
		arg  any
	}{
		{"annotate", f.acts.Annotate, workflows.AnnotateRequest{RunID: p.RunID, Round: 0, Kind: workflows.AnnotatorSimulated, Policy: p.BaseModel, Seed: 1}},
		{"reward", f.acts.TrainReward, workflows.TrainRequest{RunID: p.RunID, Round: 1, Init: p.BaseModel, Seed: 1}},
		{"sft", f.acts.TrainSFT, workflows.TrainRequest{RunID: p.RunID, Round: 1, Init: p.BaseModel, Seed: 1}},
		{"eval", f.acts.Evaluate, workflows.EvalRequest{RunID: p.RunID, Round: 1, Stage: workflows.StageSFT, Model: p.BaseModel}},
	}
	for _, s := range steps {
		v, err := f.env().ExecuteActivity(s.fn, s.arg)
		require.NoError(t, err, s.name)
		after := snapshot()
		v2, err := f.env().ExecuteActivity(s.fn, s.arg)
		require.NoError(t, err, s.name)
		require.Equal(t, after, snapshot(), "%s: a re-run writes no new rows", s.name)
		var r1, r2 map[string]any
		require.NoError(t, v.Get(&r1))
		require.NoError(t, v2.Get(&r2))
		require.Equal(t, r1, r2, "%s: a re-run returns the same result", s.name)
	}
}

func TestClassifyMarksDivergenceNonRetryable(t *testing.T) {
	tests := []struct {
		err       error
		wantType  string
		retryable bool
	}{
		{errors.New("step 7: loss is NaN (micro-batch 0)"), workflows.ErrDiverged, false},
		{errors.New("step 3: gradient norm is +Inf (first non-finite gradient in w1)"), workflows.ErrDiverged, false},
		{errors.New("connection reset by peer"), "", true},
	}
	for _, tc := range tests {
		err := classify("sft variant 0", tc.err)
		var app *temporal.ApplicationError
		if tc.wantType == "" {
			require.False(t, errors.As(err, &app))
			require.ErrorIs(t, err, tc.err)
			continue
		}
		require.True(t, errors.As(err, &app))
		require.Equal(t, tc.wantType, app.Type())
		require.Equal(t, !tc.retryable, app.NonRetryable())
		require.Contains(t, app.Error(), "sft variant 0 diverged: "+tc.err.Error())
	}
	require.ErrorIs(t, classify("x", context.Canceled), context.Canceled)
}
