package faults

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/workflows"
)

// nonRetryable returns the non-retryable application error in err's chain, or nil.
func nonRetryable(err error) *temporal.ApplicationError {
	for e := err; e != nil; e = errors.Unwrap(e) {
		var app *temporal.ApplicationError
		if errors.As(e, &app) && app.NonRetryable() {
			return app
		}
	}
	return nil
}

// TestBadRunInputFailsNonRetryable starts runs whose data or config is bad and checks
// each fails at once with a non-retryable error naming the problem, writing nothing to
// PostgreSQL for a config error. The long form adds an annotations file that does not
// fit the run (wrong types), which fails the round's annotate stage the same way.
func TestBadRunInputFailsNonRetryable(t *testing.T) {
	type badRun struct {
		name      string
		overrides []string
		rounds    int
		want      []string
		noRows    bool
	}
	cases := []badRun{
		{name: "beta zero", overrides: []string{"dpo.beta=0"}, want: []string{"dpo.beta", "must be > 0"}, noRows: true},
		{name: "k zero", overrides: []string{"sampling.k=0"}, want: []string{"sampling.k", "must be >= 1"}, noRows: true},
		{name: "negative lr", overrides: []string{"reward.lr=-1"}, want: []string{"reward.lr", "must be > 0"}, noRows: true},
		{name: "unknown key", overrides: []string{"dpo.betta=0.1"}, want: []string{"dpo.betta", "unknown key"}, noRows: true},
		{name: "negative rounds", rounds: -1, want: []string{"input rounds", "must be >= 0"}, noRows: true},
	}
	if longForm() {
		corpus, err := filepath.Abs(filepath.Join("..", "testdata", "badinputs", "jsonl", "pref_wrong_type.jsonl"))
		require.NoError(t, err)
		cases = append(cases, badRun{name: "annotations file that does not fit",
			overrides: []string{"annotator.kind=file", "annotator.file=" + corpus},
			want:      []string{"annotator.file", "pref_wrong_type.jsonl:2", "field chosen"}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	base := tinyBase(t)
	p := newPipeline(t, "badrun")
	p.spec.start(t)
	c := env.server.GetDefaultClient()
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := tableCounts(t, p.pool)
			id := p.runID + "-" + string(rune('a'+i))
			over := append(append([]string{"model.base=" + base}, tinyOverrides...), tc.overrides...)
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: p.spec.queue}, workflows.WorkflowType,
				workflows.RunInput{Preset: "demo", Rounds: tc.rounds, Overrides: over, HeartbeatTimeout: "4s"})
			require.NoError(t, err)
			start := time.Now()
			err = run.Get(ctx, nil)
			require.Error(t, err, "a bad run must fail")
			app := nonRetryable(err)
			require.NotNil(t, app, "non-retryable application error expected, got %v", err)
			for _, w := range tc.want {
				assert.Contains(t, err.Error(), w)
			}
			t.Logf("%s: failed after %.1fs: %v", tc.name, time.Since(start).Seconds(), app)
			if tc.noRows {
				assert.Equal(t, before, tableCounts(t, p.pool), "a config error writes nothing")
				return
			}
			r, err := datastore.New(p.pool).GetRun(ctx, id)
			require.NoError(t, err)
			assert.Equal(t, datastore.StatusFailed, r.Status, "the run is marked failed")
		})
	}
}

// TestTwoPipelinesOneWorker runs two pipelines with different seeds at once on one
// worker process and one database: both complete, each stage ran once for each run,
// and neither run's rows or models leak into the other.
func TestTwoPipelinesOneWorker(t *testing.T) {
	if !longForm() {
		t.Skipf("long form only (%s=1, make faults)", longFormEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	base := tinyBase(t)
	p := newPipeline(t, "twoon1")
	p.spec.start(t)
	c := env.server.GetDefaultClient()
	ids := []string{p.runID + "-a", p.runID + "-b"}
	runA := startRun(t, ctx, c, p.spec.queue, ids[0], base, 21)
	runB := startRun(t, ctx, c, p.spec.queue, ids[1], base, 22)
	var resA, resB workflows.RunResult
	require.NoError(t, runA.Get(ctx, &resA))
	require.NoError(t, runB.Get(ctx, &resB))
	assert.NotEqual(t, resA.FinalModel, resB.FinalModel, "different seeds give different models")

	db := datastore.New(p.pool)
	for _, id := range ids {
		r, err := db.GetRun(ctx, id)
		require.NoError(t, err)
		assert.Equal(t, datastore.StatusCompleted, r.Status, id)
		stages, err := db.ListStages(ctx, id, 1)
		require.NoError(t, err)
		require.NotEmpty(t, stages)
		for _, s := range stages {
			assert.Equal(t, datastore.StatusCompleted, s.Status, "%s", s.StageKey)
			assert.Equal(t, 1, s.Attempt, "%s ran once", s.StageKey)
		}
		total, selected, err := db.CandidateCounts(ctx, id, 1)
		require.NoError(t, err)
		assert.Equal(t, int64(16*4), total, "%s: 16 prompts x K=4", id)
		assert.Positive(t, selected)
	}
	// Each run's final model descends from its own stages only.
	for i, res := range []workflows.RunResult{resA, resB} {
		a, err := db.GetArtifact(ctx, res.FinalModel)
		require.NoError(t, err)
		assert.Equal(t, ids[i], a.RunID, "final model of %s", ids[i])
	}
	var ma, mb int64
	require.NoError(t, p.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE run_id = $1), count(*) FILTER (WHERE run_id = $2) FROM metrics`, ids[0], ids[1]).Scan(&ma, &mb))
	assert.Equal(t, ma, mb, "same shape of run, same number of metric rows")
	assert.Positive(t, ma)
	assert.Positive(t, verifyArtifacts(t, p.pool, p.store(t)))
}
