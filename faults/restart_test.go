package faults

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/devserver"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/pgserver"
	"github.com/posttrain/posttrain/workflows"
)

// devServerEnv makes the test binary serve a dev Temporal server: "DATADIR PORT".
const devServerEnv = "POSTTRAIN_FAULTS_DEVSERVER"

// serveDevServer runs the dev server with its default bind address until SIGTERM.
func serveDevServer(spec string) int {
	dataDir, portStr, _ := strings.Cut(spec, " ")
	port, err := strconv.Atoi(portStr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad", devServerEnv, spec)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv, err := devserver.Start(ctx, devserver.Options{DataDir: dataDir, GRPCPort: port, UIPort: devserver.UIPortFor(port), Log: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "dev server:", err)
		return 1
	}
	fmt.Fprintln(os.Stderr, "dev server ready on", srv.FrontendAddress())
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Close(cctx); err != nil {
		fmt.Fprintln(os.Stderr, "dev server:", err)
		return 1
	}
	return 0
}

// freeLoopbackPort returns a port that was free on 127.0.0.1 a moment ago, whose UI
// companion port is free too.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if port+devserver.UIPortOffset > 65535 {
			continue
		}
		if ul, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(devserver.UIPortFor(port))); err == nil {
			ul.Close()
			return port
		}
	}
	t.Fatal("no free port pair")
	return 0
}

// startDevServer runs the dev server in a child process (the test binary re-executed)
// and waits until its frontend answers.
func startDevServer(t *testing.T, dataDir string, port int) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), devServerEnv+"="+dataDir+" "+strconv.Itoa(port))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_, _ = cmd.Process.Wait()
	})
	waitFor(t, "dev server frontend", 2*time.Minute, func() (bool, error) {
		c, err := client.Dial(client.Options{HostPort: "127.0.0.1:" + strconv.Itoa(port), Namespace: devserver.DefaultNamespace})
		if err != nil {
			time.Sleep(500 * time.Millisecond)
			return false, nil
		}
		c.Close()
		return true, nil
	})
	return cmd
}

// nonLoopbackIPv4 returns one of the machine's non-loopback IPv4 addresses, or nil.
func nonLoopbackIPv4() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP
		}
	}
	return nil
}

// TestDevServerRestart stops the dev Temporal server (SQLite file) while reward-model
// training runs, starts it again on the same file, and checks that the run carries on
// and completes like an uninterrupted one. It also checks that the dev server and its
// UI listen on loopback only by default.
func TestDevServerRestart(t *testing.T) {
	if !longForm() {
		t.Skipf("long form only (%s=1, make faults): restarts the dev Temporal server during a run", longFormEnv)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	base := tinyBase(t)
	tdir := t.TempDir()
	port := freeLoopbackPort(t)
	dev := startDevServer(t, tdir, port)

	// Loopback only: the ports do not answer on another interface.
	if ip := nonLoopbackIPv4(); ip != nil {
		for _, p := range []int{port, devserver.UIPortFor(port)} {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(ip.String(), strconv.Itoa(p)), time.Second)
			if err == nil {
				c.Close()
			}
			assert.Error(t, err, "port %d must not answer on %s", p, ip)
		}
	} else {
		t.Log("no non-loopback interface: bind address not checked")
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	c, err := client.Dial(client.Options{HostPort: addr, Namespace: devserver.DefaultNamespace})
	require.NoError(t, err)
	defer c.Close()

	clean := newPipeline(t, "devclean")
	faulted := newPipeline(t, "devrestart")
	for _, p := range []*pipeline{clean, faulted} {
		p.spec.temporal, p.spec.namespace = addr, devserver.DefaultNamespace
		p.spec.start(t)
	}
	const seed = 13
	cleanRun := startRun(t, ctx, c, clean.spec.queue, clean.runID, base, seed)
	startRun(t, ctx, c, faulted.spec.queue, faulted.runID, base, seed)
	waitFor(t, "reward training mid-way", 10*time.Minute, func() (bool, error) {
		return midTraining(datastore.StageReward)(ctx, faulted)
	})
	require.NoError(t, dev.Process.Signal(syscall.SIGTERM))
	_, err = dev.Process.Wait()
	require.NoError(t, err)
	t.Log("dev server stopped during reward training")
	time.Sleep(3 * time.Second)
	startDevServer(t, tdir, port)
	t.Log("dev server restarted on the same SQLite file")

	var res, cleanRes workflows.RunResult
	require.NoError(t, getWithRetry(ctx, c, faulted.runID, &res))
	require.NoError(t, getWithRetry(ctx, c, cleanRun.GetID(), &cleanRes))
	r, err := datastore.New(faulted.pool).GetRun(ctx, faulted.runID)
	require.NoError(t, err)
	assert.Equal(t, datastore.StatusCompleted, r.Status)
	assert.Equal(t, tableCounts(t, clean.pool), tableCounts(t, faulted.pool), "no row duplicated or lost")
	assert.Positive(t, verifyArtifacts(t, faulted.pool, faulted.store(t)))
	assert.Equal(t, modelHashes(t, clean.pool), modelHashes(t, faulted.pool))
	assertSameMetrics(t, runMetrics(t, clean.pool, clean.runID), runMetrics(t, faulted.pool, faulted.runID))
}

// getWithRetry waits for a workflow's result, riding out a server that is restarting.
func getWithRetry(ctx context.Context, c client.Client, id string, out any) error {
	var err error
	for ctx.Err() == nil {
		if err = c.GetWorkflow(ctx, id, "").Get(ctx, out); err == nil {
			return nil
		}
		if strings.Contains(err.Error(), "workflow execution error") || strings.Contains(err.Error(), "Workflow") && strings.Contains(err.Error(), "failed") {
			return err
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("%s: %w (last error %v)", id, ctx.Err(), err)
}

// pendingProgress reads the heartbeat details of a workflow's running activity of stage.
func pendingProgress(ctx context.Context, c client.Client, workflowID, stage string) (workflows.Progress, bool) {
	var p workflows.Progress
	d, err := c.DescribeWorkflowExecution(ctx, workflowID, "")
	if err != nil {
		return p, false
	}
	for _, a := range d.GetPendingActivities() {
		hb := a.GetHeartbeatDetails()
		if hb == nil || len(hb.GetPayloads()) == 0 {
			continue
		}
		if err := converter.GetDefaultDataConverter().FromPayload(hb.GetPayloads()[0], &p); err == nil && p.Stage == stage {
			return p, true
		}
	}
	return p, false
}

// TestPostgresRestart stops the private PostgreSQL cluster the worker uses during
// reward-model training, keeps it down until training has finished, and starts it again
// on the same port: the pool reconnects, the metrics held back during the outage are
// written, and the run completes with the same rows, hashes and metrics as an
// uninterrupted run.
func TestPostgresRestart(t *testing.T) {
	if !longForm() {
		t.Skipf("long form only (%s=1, make faults): restarts a private PostgreSQL cluster during a run", longFormEnv)
	}
	if _, err := pgserver.FindBinaries(); err != nil {
		t.Skipf("no PostgreSQL binaries for a private cluster: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	base := tinyBase(t)
	// The cluster runs as the postgres user, which cannot enter t.TempDir's 0700 parent.
	pgDir, err := os.MkdirTemp("", "posttrain-faults-pg-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(pgDir, 0o755))
	t.Cleanup(func() { _ = os.RemoveAll(pgDir) })
	srv, err := pgserver.Start(ctx, pgserver.Options{DataDir: pgDir})
	require.NoError(t, err)
	port := srv.Port()
	t.Logf("private PostgreSQL on port %d", port)
	t.Cleanup(func() {
		if s, err := pgserver.Start(context.Background(), pgserver.Options{DataDir: pgDir, Port: port}); err == nil {
			_ = s.Close(context.Background())
		}
	})

	clean := newPipeline(t, "pgclean")
	faulted := newPipeline(t, "pgrestart")
	// The faulted run's worker uses the private cluster.
	faulted.pool = pgtest.Open(t, srv.DSN())
	require.NoError(t, datastore.Migrate(ctx, faulted.pool))
	faulted.spec.dsn = srv.DSN()
	clean.spec.start(t)
	faulted.spec.start(t)

	c := env.server.GetDefaultClient()
	const seed = 17
	extra := []string{"reward.steps=40"}
	cleanRun := startRun(t, ctx, c, clean.spec.queue, clean.runID, base, seed, extra...)
	faultRun := startRun(t, ctx, c, faulted.spec.queue, faulted.runID, base, seed, extra...)
	waitFor(t, "reward training mid-way", 10*time.Minute, func() (bool, error) {
		return midTraining(datastore.StageReward)(ctx, faulted)
	})
	require.NoError(t, srv.Close(ctx))
	t.Log("PostgreSQL stopped during reward training")
	// Keep it down until training has finished (seen in the activity's heartbeat, since
	// the database is away): the metrics of every step since the outage began, and the
	// model, must still reach PostgreSQL once it is back.
	waitFor(t, "reward training to finish while PostgreSQL is down", 5*time.Minute, func() (bool, error) {
		p, ok := pendingProgress(ctx, c, workflows.RoundWorkflowID(faulted.runID, 1), datastore.StageReward)
		return ok && p.Total > 0 && p.Step >= p.Total, nil
	})
	t.Log("reward training finished during the outage")
	time.Sleep(2 * time.Second)
	srv, err = pgserver.Start(ctx, pgserver.Options{DataDir: pgDir, Port: port})
	require.NoError(t, err)
	t.Log("PostgreSQL restarted")

	var res, cleanRes workflows.RunResult
	require.NoError(t, faultRun.Get(ctx, &res))
	require.NoError(t, cleanRun.Get(ctx, &cleanRes))
	r, err := datastore.New(faulted.pool).GetRun(ctx, faulted.runID)
	require.NoError(t, err)
	assert.Equal(t, datastore.StatusCompleted, r.Status)
	assert.Equal(t, tableCounts(t, clean.pool), tableCounts(t, faulted.pool), "no row duplicated or lost")
	assert.Positive(t, verifyArtifacts(t, faulted.pool, faulted.store(t)))
	assert.Equal(t, modelHashes(t, clean.pool), modelHashes(t, faulted.pool))
	assertSameMetrics(t, runMetrics(t, clean.pool, clean.runID), runMetrics(t, faulted.pool, faulted.runID))
}
