package faults

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/workflows"
)

// pipeline is one run's world: its own database, data directory and task queue.
type pipeline struct {
	pool    *pgxpool.Pool
	dataDir string
	spec    workerSpec
	runID   string
}

func newPipeline(t *testing.T, name string) *pipeline {
	t.Helper()
	dsn := pgtest.NewEmptyDatabase(t)
	pool := pgtest.Open(t, dsn)
	require.NoError(t, datastore.Migrate(context.Background(), pool))
	dataDir := t.TempDir()
	return &pipeline{
		pool:    pool,
		dataDir: dataDir,
		runID:   fmt.Sprintf("faults-%s-%d", name, time.Now().UnixNano()),
		spec: workerSpec{
			bin: env.bin.get(t, env.binDir), temporal: env.server.GetFrontendHostPort(),
			namespace: env.server.GetDefaultNamespace(), dsn: dsn,
			queue: fmt.Sprintf("faults-%s-%d", name, time.Now().UnixNano()), dataDir: dataDir,
		},
	}
}

func (p *pipeline) store(t *testing.T) artifacts.Store {
	t.Helper()
	s, err := artifacts.NewFS(filepath.Join(p.dataDir, "artifacts"))
	require.NoError(t, err)
	return s
}

// killPoint is a moment to SIGKILL the worker: when ready holds for the run.
type killPoint struct {
	name  string
	ready func(ctx context.Context, p *pipeline) (bool, error)
}

// midTraining holds once a training variant has saved a checkpoint but not finished.
func midTraining(kind string) func(ctx context.Context, p *pipeline) (bool, error) {
	return func(ctx context.Context, p *pipeline) (bool, error) {
		s, ok, err := getStage(ctx, p.pool, p.runID, 1, kind, "0")
		if err != nil || !ok {
			return false, err
		}
		if s.Status == datastore.StatusCompleted {
			return false, fmt.Errorf("%s finished before the worker could be killed: give it more steps", kind)
		}
		return s.Status == datastore.StatusRunning && s.CheckpointStep >= 2, nil
	}
}

// midSampling holds once shard 0 has stored some prompts' candidates but not finished.
func midSampling(ctx context.Context, p *pipeline) (bool, error) {
	s, ok, err := getStage(ctx, p.pool, p.runID, 1, datastore.StageSampling, "shard-0")
	if err != nil || !ok {
		return false, err
	}
	if s.Status == datastore.StatusCompleted {
		return false, fmt.Errorf("sampling shard 0 finished before the worker could be killed: give it more prompts")
	}
	var n int64
	if err := p.pool.QueryRow(ctx, `SELECT count(*) FROM sampling_candidates WHERE run_id = $1 AND shard = 0`, p.runID).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// diskCheckpointStep is the step of the trainer state a stage's work directory holds
// under the worker's data directory (0 when none).
func diskCheckpointStep(t *testing.T, dataDir, stage string) int {
	t.Helper()
	step := 0
	require.NoError(t, filepath.WalkDir(dataDir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != trainer.StateJSONFile || !strings.Contains(path, string(filepath.Separator)+stage+string(filepath.Separator)) {
			return err
		}
		st, err := trainer.LoadStateInfo(filepath.Dir(path))
		if err == nil && st.Step > step {
			step = st.Step
		}
		return nil
	}))
	return step
}

// candidateVersions maps each stored candidate of the run to its row version (xmin),
// which changes if the row is written again.
func candidateVersions(t *testing.T, ctx context.Context, p *pipeline) map[string]string {
	t.Helper()
	rows, err := p.pool.Query(ctx, `SELECT prompt_id || '/' || sample_index, xmin::text FROM sampling_candidates WHERE run_id = $1`, p.runID)
	require.NoError(t, err)
	out := map[string]string{}
	for rows.Next() {
		var k, v string
		require.NoError(t, rows.Scan(&k, &v))
		out[k] = v
	}
	require.NoError(t, rows.Err())
	return out
}

// TestKillWorkerDuringStages SIGKILLs the worker process during reward-model training,
// rejection sampling and DPO (short form: reward only), starting a new worker each time,
// and compares the run with an uninterrupted one of the same seed running alongside.
func TestKillWorkerDuringStages(t *testing.T) {
	points := []killPoint{{"reward", midTraining(datastore.StageReward)}}
	if longForm() {
		points = append(points, killPoint{"sampling", midSampling}, killPoint{"dpo", midTraining(datastore.StageDPO)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	c := env.server.GetDefaultClient()
	base := tinyBase(t)

	clean := newPipeline(t, "clean")
	faulted := newPipeline(t, "killed")
	clean.spec.start(t)
	w := faulted.spec.start(t)

	const seed = 11
	cleanRun := startRun(t, ctx, c, clean.spec.queue, clean.runID, base, seed)
	faultRun := startRun(t, ctx, c, faulted.spec.queue, faulted.runID, base, seed)

	killedAt := map[string]stageState{}
	var sampledAtKill map[string]string
	for _, kp := range points {
		waitFor(t, "kill point "+kp.name, 10*time.Minute, func() (bool, error) { return kp.ready(ctx, faulted) })
		w.kill(t)
		variant := "0"
		if kp.name == "sampling" {
			variant = "shard-0"
		}
		s, _, err := getStage(ctx, faulted.pool, faulted.runID, 1, kp.name, variant)
		require.NoError(t, err)
		require.NotEqual(t, datastore.StatusCompleted, s.Status, "%s was still running when killed", kp.name)
		killedAt[kp.name] = s
		if kp.name == "sampling" {
			sampledAtKill = candidateVersions(t, ctx, faulted)
		}
		if kp.name != "sampling" {
			// A checkpoint visible in the stages table must have its steps' metrics
			// durable already: the resumed attempt only rewrites the steps after it.
			var n int64
			require.NoError(t, faulted.pool.QueryRow(ctx, `SELECT count(*) FROM metrics WHERE run_id = $1 AND round = 1
				AND stage = $2 AND variant = '0' AND name = 'loss' AND step BETWEEN 1 AND $3`, faulted.runID, kp.name, s.CheckpointStep).Scan(&n))
			assert.Equal(t, s.CheckpointStep, n, "%s: loss rows of the steps up to the recorded checkpoint %d when the worker died", kp.name, s.CheckpointStep)
			// The same for the checkpoint on disk, which is what the retry resumes from
			// and may be newer than the recorded one.
			disk := diskCheckpointStep(t, faulted.dataDir, kp.name)
			require.NoError(t, faulted.pool.QueryRow(ctx, `SELECT count(*) FROM metrics WHERE run_id = $1 AND round = 1
				AND stage = $2 AND variant = '0' AND name = 'loss' AND step BETWEEN 1 AND $3`, faulted.runID, kp.name, disk).Scan(&n))
			assert.Equal(t, int64(disk), n, "%s: loss rows of the steps up to the checkpoint on disk (step %d) when the worker died", kp.name, disk)
		}
		t.Logf("killed the worker during %s: attempt %d, checkpoint step %d", kp.name, s.Attempt, s.CheckpointStep)
		w = faulted.spec.start(t)
	}

	var cleanRes, faultRes workflows.RunResult
	require.NoError(t, faultRun.Get(ctx, &faultRes), "faulted run; last worker output:\n%s", w.out.String())
	require.NoError(t, cleanRun.Get(ctx, &cleanRes))

	db := datastore.New(faulted.pool)
	r, err := db.GetRun(ctx, faulted.runID)
	require.NoError(t, err)
	assert.Equal(t, datastore.StatusCompleted, r.Status)

	// Each interrupted stage ran again and resumed from its checkpoint, not step 0.
	for name, at := range killedAt {
		if name == "sampling" {
			s, _, err := getStage(ctx, faulted.pool, faulted.runID, 1, name, "shard-0")
			require.NoError(t, err)
			assert.Equal(t, datastore.StatusCompleted, s.Status)
			assert.Greater(t, s.Attempt, at.Attempt, "sampling shard 0 was retried")
			// Resumed per prompt: the candidates stored before the kill were not
			// sampled or written again (same row version).
			require.NotEmpty(t, sampledAtKill)
			after := candidateVersions(t, ctx, faulted)
			for k, v := range sampledAtKill {
				assert.Equal(t, v, after[k], "candidate %s was rewritten by the retry", k)
			}
			continue
		}
		s, _, err := getStage(ctx, faulted.pool, faulted.runID, 1, name, "0")
		require.NoError(t, err)
		assert.Equal(t, datastore.StatusCompleted, s.Status, name)
		assert.Greater(t, s.Attempt, at.Attempt, "%s was retried after the kill", name)
		ms, err := db.ListMetrics(ctx, datastore.MetricFilter{RunID: faulted.runID, Round: 1, Stage: name, Variant: "0", Name: "start_step"})
		require.NoError(t, err)
		require.Len(t, ms, 1, "%s start_step metric", name)
		assert.GreaterOrEqual(t, ms[0].Value, float64(at.CheckpointStep), "%s resumed from its checkpoint at step >= %d, not step 0", name, at.CheckpointStep)
		assert.Positive(t, ms[0].Value, "%s did not start over", name)
	}

	// No row duplicated or lost: both databases hold exactly the same number of rows
	// in every table (same stages, artifacts, lineage, metrics, candidates, data).
	assert.Equal(t, tableCounts(t, clean.pool), tableCounts(t, faulted.pool))

	// Every artifact verifies against its hash.
	n := verifyArtifacts(t, faulted.pool, faulted.store(t))
	assert.Positive(t, n)

	// Same seed, same results: every model is bit-identical to the uninterrupted run's,
	// and so is every metric but timings, the resume point, and the statistics a stage
	// documents as covering only the steps of its last attempt.
	assert.Equal(t, modelHashes(t, clean.pool), modelHashes(t, faulted.pool), "artifacts (kind -> sha256) of both runs")
	assertSameMetrics(t, runMetrics(t, clean.pool, clean.runID), runMetrics(t, faulted.pool, faulted.runID))
	for _, name := range perAttemptMetrics {
		ms, err := db.ListMetrics(ctx, datastore.MetricFilter{RunID: faulted.runID, Name: name})
		require.NoError(t, err)
		assert.NotEmpty(t, ms, "per-attempt metric %s is still recorded", name)
	}
	assert.Equal(t, len(cleanRes.Rounds), len(faultRes.Rounds))
}
