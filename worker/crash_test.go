package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/posttrain/posttrain/activities"
	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/workflows"
)

// crashEnv carries a worker process's settings from the crash test to the re-executed
// test binary.
const crashEnv = "POSTTRAIN_CRASH_WORKER"

type crashWorker struct {
	DSN, ArtifactRoot, DataDir, Base, HostPort, Namespace, Queue string
}

// runCrashWorker is the worker process the crash test starts and kills: TestMain runs
// it instead of the tests when crashEnv is set.
func runCrashWorker(raw string) error {
	var cw crashWorker
	if err := json.Unmarshal([]byte(raw), &cw); err != nil {
		return fmt.Errorf("%s: %w", crashEnv, err)
	}
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, cw.DSN)
	if err != nil {
		return err
	}
	store, err := artifacts.NewFS(cw.ArtifactRoot)
	if err != nil {
		return err
	}
	c, err := client.Dial(client.Options{HostPort: cw.HostPort, Namespace: cw.Namespace})
	if err != nil {
		return err
	}
	deps := activities.Deps{Pool: pool, Store: store, DataDir: cw.DataDir, Threads: 1, Env: map[string]string{},
		DefaultBaseModel: func(context.Context) (string, error) { return cw.Base, nil }}
	ws, err := New(c, deps, Options{TaskQueue: cw.Queue})
	if err != nil {
		return err
	}
	stop := make(chan any)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	go func() { <-sig; close(stop) }()
	return ws.Run(stop)
}

// startCrashWorker re-executes the test binary as a worker process.
func startCrashWorker(t *testing.T, cw crashWorker) *exec.Cmd {
	t.Helper()
	b, err := json.Marshal(cw)
	require.NoError(t, err)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), crashEnv+"="+string(b))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
	})
	return cmd
}

func TestWorkerKilledDuringSFTResumesFromCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test: runs two worker processes and real training")
	}
	pool := pgtest.NewDB(t)
	db := datastore.New(pool)
	cw := crashWorker{
		DSN: pool.Config().ConnString(), ArtifactRoot: t.TempDir(), DataDir: t.TempDir(), Base: tinyBase(t),
		HostPort: server.GetFrontendHostPort(), Namespace: server.GetDefaultNamespace(), Queue: "crash-" + fmt.Sprint(time.Now().UnixNano()),
	}
	first := startCrashWorker(t, cw)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	id := "crash-run-" + fmt.Sprint(time.Now().UnixNano())
	sets := append(append([]string(nil), tinyOverrides...), "sft.steps=80", "trainer.checkpoint_every=5", "reward.variants=1", "dpo.variants=1")
	run, err := server.GetDefaultClient().ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: cw.Queue}, workflows.WorkflowType,
		workflows.RunInput{Preset: "demo", Rounds: 1, Overrides: sets, Seed: 5, HeartbeatTimeout: "3s"})
	require.NoError(t, err)

	// Kill -9 the worker once SFT has saved a checkpoint past step 10.
	key := datastore.StageKey{RunID: id, Round: 1, Kind: datastore.StageSFT, Variant: "0"}
	var killedAt int64
	require.Eventually(t, func() bool {
		st, err := db.GetStage(ctx, key)
		if err != nil || st.Status != datastore.StatusRunning || st.CheckpointStep < 10 {
			return false
		}
		require.NoError(t, first.Process.Signal(syscall.SIGKILL))
		_, _ = first.Process.Wait()
		killedAt = st.CheckpointStep
		return true
	}, 5*time.Minute, 20*time.Millisecond)
	startCrashWorker(t, cw)

	var res workflows.RunResult
	require.NoError(t, run.Get(ctx, &res))
	require.NotEmpty(t, res.FinalModel)

	st, err := db.GetStage(ctx, key)
	require.NoError(t, err)
	require.Equal(t, datastore.StatusCompleted, st.Status)
	require.GreaterOrEqual(t, st.Attempt, 2, "SFT ran again after the crash")
	require.Equal(t, int64(80), st.CheckpointStep)
	start, err := db.ListMetrics(ctx, datastore.MetricFilter{RunID: id, Round: 1, Stage: datastore.StageSFT, Variant: "0", Name: "start_step"})
	require.NoError(t, err)
	require.Len(t, start, 1)
	require.GreaterOrEqual(t, start[0].Value, float64(killedAt), "resumed from the last checkpoint, not step 0")
	require.Zero(t, int(start[0].Value)%5, "resumed at a checkpoint boundary")
	t.Logf("killed with a checkpoint at step %d; the new worker resumed at step %.0f", killedAt, start[0].Value)

	// Nothing duplicated: one loss per step, one row per candidate, every stage once.
	losses, err := db.ListMetrics(ctx, datastore.MetricFilter{RunID: id, Round: 1, Stage: datastore.StageSFT, Variant: "0", Name: "loss"})
	require.NoError(t, err)
	require.Len(t, losses, 80)
	total, _, err := db.CandidateCounts(ctx, id, 1)
	require.NoError(t, err)
	require.Equal(t, int64(24), total)
	stages, err := db.ListStages(ctx, id, 1)
	require.NoError(t, err)
	seen := map[string]bool{}
	for _, s := range stages {
		require.False(t, seen[s.StageKey.String()], "stage %s twice", s.StageKey)
		seen[s.StageKey.String()] = true
		require.Equal(t, datastore.StatusCompleted, s.Status, "%s", s.StageKey)
	}
	arts, err := db.ListArtifacts(ctx, datastore.ArtifactFilter{RunID: id, Round: 1, Kind: "model"})
	require.NoError(t, err)
	// One SFT variant, one DPO variant: two models, whatever the crash.
	require.Len(t, arts, 2)
	r, err := db.GetRun(ctx, id)
	require.NoError(t, err)
	require.Equal(t, datastore.StatusCompleted, r.Status)
}
