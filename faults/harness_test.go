package faults

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/workflows"
)

// binaryOnce builds cmd/posttrain once per test binary run; tests share the result.
type binaryOnce struct {
	once sync.Once
	path string
	err  error
}

func (b *binaryOnce) get(t *testing.T, dir string) string {
	t.Helper()
	b.once.Do(func() {
		b.path = filepath.Join(dir, "posttrain")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", b.path, "github.com/posttrain/posttrain/cmd/posttrain").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	require.NoError(t, b.err)
	return b.path
}

// tinyOverrides keep a one-round run to about a minute while giving the stages that are
// interrupted enough steps (and checkpoints every 2 steps) to be caught mid-way.
var tinyOverrides = []string{
	"task.train_prompts=32", "task.eval_prompts=8", "task.sft_seed_examples=16",
	"trainer.warmup_steps=1", "trainer.checkpoint_every=2", "trainer.threads=1",
	"reward.steps=16", "reward.batch_size=4", "reward.variants=1",
	"sampling.k=4", "sampling.max_new_tokens=12", "sampling.shards=2", "sampling.prompts_per_round=16", "sampling.kv_budget_bytes=0",
	// An untrained model answers nothing right: the ground-truth filter would keep no sample.
	"sampling.verify=none",
	"sft.steps=4", "sft.batch_size=4", "sft.variants=1",
	"dpo.steps=16", "dpo.batch_size=2", "dpo.variants=1",
	"eval.prompts=8", "eval.max_new_tokens=8", "annotator.prompts_per_round=8",
}

// tinyBase writes a randomly initialised tiny model with the test tokenizer.
func tinyBase(t *testing.T) string {
	t.Helper()
	tokPath := filepath.Join("..", "tokenizer", "testdata", "tiny_llama3.json")
	tok, err := tokenizer.LoadFile(tokPath)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "base")
	_, err = pretrain.Init(context.Background(), pretrain.InitOptions{Preset: "tiny", Tokenizer: tokPath, VocabSize: tok.VocabSize(), Seed: 3, OutDir: dir})
	require.NoError(t, err)
	return dir
}

// registerSearchAttributes adds the workflow's search attributes to a namespace.
func registerSearchAttributes(ctx context.Context, c client.Client, ns string) error {
	_, err := c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		SearchAttributes: map[string]enumspb.IndexedValueType{
			workflows.SearchAttrRound: enumspb.INDEXED_VALUE_TYPE_INT,
			workflows.SearchAttrStage: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		},
		Namespace: ns,
	})
	return err
}

// lockedBuffer is a bytes.Buffer safe for the exec copier and the test to share.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// workerProc is a `posttrain worker` child process.
type workerProc struct {
	cmd    *exec.Cmd
	out    *lockedBuffer
	done   chan struct{}
	waited error
}

// workerSpec says how to start a worker child process.
type workerSpec struct {
	bin, temporal, namespace, dsn, queue, dataDir string
}

func (s workerSpec) start(t *testing.T) *workerProc {
	t.Helper()
	cmd := exec.Command(s.bin, "worker", "--temporal-address", s.temporal, "--namespace", s.namespace,
		"--database-url", s.dsn, "--set", "temporal.task_queue="+s.queue, "--set", "data_dir="+s.dataDir,
		"--set", "trainer.threads=1", "--max-activities", "2")
	cmd.Env = append(os.Environ(), "POSTTRAIN_DATABASE_URL=", "HOME="+s.dataDir)
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	w := &workerProc{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		w.waited = cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() { w.kill(t) })
	return w
}

// kill sends SIGKILL (no chance to save or clean up) and waits for the process to go.
func (w *workerProc) kill(t *testing.T) {
	t.Helper()
	select {
	case <-w.done:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-w.done:
	case <-time.After(30 * time.Second):
		t.Errorf("worker %d did not exit after SIGKILL", w.cmd.Process.Pid)
	}
}

// stageState is a stage row's progress as seen by the test.
type stageState struct {
	Status         string
	Attempt        int
	CheckpointStep int64
}

func getStage(ctx context.Context, pool *pgxpool.Pool, runID string, round int, kind, variant string) (stageState, bool, error) {
	var s stageState
	err := pool.QueryRow(ctx, `SELECT status, attempt, checkpoint_step FROM stages
		WHERE run_id = $1 AND round = $2 AND kind = $3 AND variant = $4`, runID, round, kind, variant).
		Scan(&s.Status, &s.Attempt, &s.CheckpointStep)
	if err != nil {
		if strings.Contains(err.Error(), "no rows") {
			return s, false, nil
		}
		return s, false, err
	}
	return s, true, nil
}

// waitFor polls cond every 50 ms until it holds, the run ends, or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		require.NoError(t, err, what)
		if ok {
			return
		}
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(50 * time.Millisecond)
	}
}

// startRun starts a one-round PostTraining run.
func startRun(t *testing.T, ctx context.Context, c client.Client, queue, id, base string, seed int64, extra ...string) client.WorkflowRun {
	t.Helper()
	over := append(append([]string{"model.base=" + base}, tinyOverrides...), extra...)
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, workflows.WorkflowType,
		workflows.RunInput{Preset: "demo", Rounds: 1, Overrides: over, Seed: seed, HeartbeatTimeout: "4s"})
	require.NoError(t, err)
	return run
}

// tableCounts is the row count of every table of the public schema.
func tableCounts(t *testing.T, pool *pgxpool.Pool) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`)
	require.NoError(t, err)
	var names []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	require.NoError(t, rows.Err())
	counts := map[string]int64{}
	for _, n := range names {
		var c int64
		// Names come from the catalog and are quoted as identifiers.
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM "`+strings.ReplaceAll(n, `"`, `""`)+`"`).Scan(&c))
		counts[n] = c
	}
	return counts
}

// verifyArtifacts re-hashes every artifact recorded in the database: blobs with Verify,
// model directories (manifests) with VerifyDir, which checks each file too. Dataset
// artifacts live in tables (URI postgres:dataset/<name>) and snapshot a dataset that
// may grow later, so the newest artifact of each dataset must equal its current digest.
func verifyArtifacts(t *testing.T, pool *pgxpool.Pool, store artifacts.Store) int {
	t.Helper()
	ctx := context.Background()
	db := datastore.New(pool)
	arts, err := db.ListArtifacts(ctx, datastore.ArtifactFilter{})
	require.NoError(t, err)
	newest := map[string]datastore.Artifact{}
	n := 0
	for _, a := range arts {
		if name, ok := strings.CutPrefix(a.URI, "postgres:dataset/"); ok {
			if cur, seen := newest[name]; !seen || a.CreatedAt.After(cur.CreatedAt) {
				newest[name] = a
			}
			continue
		}
		_, sha, err := artifacts.ParseURI(a.URI)
		require.NoError(t, err, "artifact %s uri %q", a.ID, a.URI)
		require.Equal(t, a.SHA256, sha, "artifact %s: URI and sha256 column agree", a.ID)
		require.NoError(t, store.Verify(ctx, sha), "artifact %s (%s)", a.ID, a.Kind)
		isDir, err := artifacts.IsManifest(ctx, store, sha)
		require.NoError(t, err)
		if isDir {
			_, err := artifacts.VerifyDir(ctx, store, sha)
			require.NoError(t, err, "model directory %s (%s)", a.ID, a.Kind)
		}
		n++
	}
	for name, a := range newest {
		digest, _, err := db.DatasetDigest(ctx, name)
		require.NoError(t, err)
		assert.Equal(t, a.SHA256, digest, "dataset %s: newest artifact %s matches the rows", name, a.ID)
		n++
	}
	return n
}

// runMetrics returns the run's metrics that do not depend on timing, keyed by
// round/stage/variant/step/name.
func runMetrics(t *testing.T, pool *pgxpool.Pool, runID string) map[string]float64 {
	t.Helper()
	ms, err := datastore.New(pool).ListMetrics(context.Background(), datastore.MetricFilter{RunID: runID})
	require.NoError(t, err)
	out := map[string]float64{}
	for _, m := range ms {
		if timingMetric(m.Name) || slices.Contains(perAttemptMetrics, m.Name) {
			continue
		}
		out[fmt.Sprintf("%d/%s/%s/%d/%s", m.Round, m.Stage, m.Variant, m.Step, m.Name)] = m.Value
	}
	return out
}

// perAttemptMetrics are statistics over the updates of the stage's last attempt only
// (reward.TrainResult.TrainAccuracy is "the pair accuracy over the pairs this process
// trained on"), so after a resume they cover fewer steps than in an uninterrupted run.
var perAttemptMetrics = []string{"train_accuracy"}

// modelHashes maps every non-dataset artifact's kind and stage to its sha256 (dataset
// digests include the run's own dataset names, so they differ between runs).
func modelHashes(t *testing.T, pool *pgxpool.Pool) []string {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT a.kind || ' ' || coalesce(s.kind || '/' || s.variant, '') || ' ' || a.sha256
		FROM artifacts a LEFT JOIN stages s ON s.id = a.stage_id
		WHERE a.kind <> 'dataset' ORDER BY 1`)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var v string
		require.NoError(t, rows.Scan(&v))
		out = append(out, v)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, out)
	return out
}

// timingMetric names metrics measured in wall time (they differ between any two runs)
// and start_step (which records the resume point, so it differs by design).
func timingMetric(name string) bool {
	for _, s := range []string{"per_s", "per_sec", "seconds", "elapsed", "tokens_s", "samples_s", "eta", "duration", "start_step"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// assertSameMetrics compares two runs' metrics, key by key.
func assertSameMetrics(t *testing.T, want, got map[string]float64) {
	t.Helper()
	var missing, extra, differ []string
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing = append(missing, k)
		case !(g == v || (math.IsNaN(g) && math.IsNaN(v))):
			differ = append(differ, fmt.Sprintf("%s: %v != %v", k, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	sort.Strings(differ)
	assert.Empty(t, missing, "metrics of the uninterrupted run missing from the faulted one")
	assert.Empty(t, extra, "metrics only the faulted run has")
	assert.Empty(t, differ, "metrics that differ from the uninterrupted run")
	assert.NotEmpty(t, want)
}
