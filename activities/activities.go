package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
	"github.com/posttrain/posttrain/workflows"
)

// Deps are what the activities work with.
type Deps struct {
	// Pool is the datastore connection pool (required).
	Pool *pgxpool.Pool
	// Store is the artifact store models are kept in (required).
	Store artifacts.Store
	// DataDir holds the local working directories (checkpoints, keyed by run, round,
	// stage and variant, so a restarted worker on the same machine resumes from them)
	// and the model cache (keyed by artifact ID).
	DataDir string
	// Threads caps each activity's kernel pool; 0 uses every CPU.
	Threads int
	// Env is the environment the run config is loaded with (nil: the process's; an
	// empty map ignores it, as tests do).
	Env map[string]string
	// DefaultBaseModel, when set, returns the directory of the base model to use when
	// neither the input nor the config names one (the model shipped with posttrain).
	DefaultBaseModel func(ctx context.Context) (string, error)
}

// Activities are the pipeline's Temporal activities. Register them with
// worker.RegisterActivity(a): the method names are the activity names in
// package workflows (ActStartRun, ...).
type Activities struct {
	d  Deps
	db *datastore.Store
	// fetchMu serialises model downloads into the shared cache.
	fetchMu sync.Mutex
}

// New checks deps and returns the activities.
func New(d Deps) (*Activities, error) {
	switch {
	case d.Pool == nil:
		return nil, errors.New("activities: no datastore pool")
	case d.Store == nil:
		return nil, errors.New("activities: no artifact store")
	case d.DataDir == "":
		return nil, errors.New("activities: no data directory")
	}
	if err := os.MkdirAll(d.DataDir, 0o755); err != nil {
		return nil, fmt.Errorf("activities: data directory: %w", err)
	}
	return &Activities{d: d, db: datastore.New(d.Pool)}, nil
}

// invalid marks err as a permanent failure (bad config, input or data).
func invalid(format string, args ...any) error {
	err := fmt.Errorf(format, args...)
	return temporal.NewNonRetryableApplicationError(err.Error(), workflows.ErrInvalidInput, err)
}

// classify turns a stage error into the right Temporal failure: a non-finite loss or
// gradient is a non-retryable divergence, cancellation stays cancellation, the rest
// is retried.
func classify(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	var app *temporal.ApplicationError
	if errors.As(err, &app) {
		return err
	}
	msg := err.Error()
	if strings.Contains(msg, "loss is NaN") || strings.Contains(msg, "loss is +Inf") || strings.Contains(msg, "loss is -Inf") ||
		strings.Contains(msg, "gradient norm is NaN") || strings.Contains(msg, "gradient norm is +Inf") {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s diverged: %s", what, msg), workflows.ErrDiverged, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// config reads a run's config snapshot.
func (a *Activities) config(ctx context.Context, runID string) (*configs.Config, error) {
	run, err := a.db.GetRun(ctx, runID)
	if err != nil {
		return nil, fmt.Errorf("config of run %s: %w", runID, err)
	}
	cfg, err := configs.FromJSON(run.Config)
	if err != nil {
		return nil, invalid("run %s: %v", runID, err)
	}
	return cfg, nil
}

// pool returns a kernel pool sized by Deps.Threads or the config.
func (a *Activities) pool(cfg *configs.Config) *kernels.Pool {
	n := a.d.Threads
	if n <= 0 && cfg != nil {
		n = cfg.Trainer.Threads
	}
	if n <= 0 {
		n = runtime.NumCPU()
	}
	return kernels.NewPool(n)
}

// workDir is the local checkpoint directory of one stage variant.
func (a *Activities) workDir(key datastore.StageKey) string {
	return filepath.Join(a.d.DataDir, "work", safe(key.RunID), fmt.Sprintf("round-%d", key.Round), key.Kind, safe(key.Variant))
}

// safe keeps a path element from escaping its parent.
func safe(s string) string {
	s = strings.NewReplacer("/", "_", "\\", "_", "..", "_").Replace(s)
	if s == "" {
		return "_"
	}
	return s
}

// modelDir materialises an artifact's model directory in the local cache (keyed by
// artifact ID, verified on download) and returns it.
func (a *Activities) modelDir(ctx context.Context, id string) (string, error) {
	if id == "" {
		return "", invalid("no model artifact given")
	}
	art, err := a.db.GetArtifact(ctx, id)
	if errors.Is(err, datastore.ErrNotFound) {
		return "", invalid("model artifact %s does not exist", id)
	}
	if err != nil {
		return "", err
	}
	dir := filepath.Join(a.d.DataDir, "cache", "models", safe(id))
	a.fetchMu.Lock()
	defer a.fetchMu.Unlock()
	if _, err := os.Stat(filepath.Join(dir, checkpoint.ConfigFile)); err == nil {
		return dir, nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("model cache: %w", err)
	}
	if _, err := a.d.Store.GetDir(ctx, art.SHA256, dir); err != nil {
		return "", fmt.Errorf("fetch model %s: %w", id, err)
	}
	return dir, nil
}

// putModel stores a model directory and records it as an artifact of kind made by
// stage (0: none), with lineage edges from parents (role -> artifact ID).
func (a *Activities) putModel(ctx context.Context, dir, kind string, key datastore.StageKey, stageID int64, meta map[string]any, parents [][2]string) (datastore.Artifact, error) {
	m, err := a.d.Store.PutDir(ctx, dir)
	if err != nil {
		return datastore.Artifact{}, fmt.Errorf("store %s: %w", dir, err)
	}
	if meta == nil {
		meta = map[string]any{}
	}
	meta["files"] = len(m.Files)
	art, err := a.db.RecordArtifact(ctx, datastore.Artifact{
		Kind: kind, URI: artifacts.URI(a.d.Store.Backend(), m.ID), SHA256: m.ID, Size: m.Size(),
		Metadata: meta, ProducedBy: stageID, RunID: key.RunID, Round: key.Round,
	})
	if err != nil {
		return datastore.Artifact{}, err
	}
	for _, p := range parents {
		if p[1] == "" || p[1] == art.ID {
			continue
		}
		if err := a.db.AddLineage(ctx, p[1], art.ID, p[0]); err != nil {
			return datastore.Artifact{}, err
		}
	}
	return art, nil
}

// loadCausal loads a causal LM and its tokenizer from a model directory.
func loadCausal(ctx context.Context, dir string, pool *kernels.Pool) (*transformer.Model, *tokenizer.Tokenizer, []byte, error) {
	m, err := checkpoint.Load(ctx, dir, pool)
	if err != nil {
		return nil, nil, nil, invalid("%v", err)
	}
	if m.Config.IsSequenceClassifier() {
		return nil, nil, nil, invalid("model %s is a reward model; this stage needs a causal LM", dir)
	}
	tok, raw, err := loadTokenizer(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	return m, tok, raw, nil
}

// loadTokenizer reads a model directory's tokenizer.json (required: the pipeline works
// on text).
func loadTokenizer(dir string) (*tokenizer.Tokenizer, []byte, error) {
	path, ok := checkpoint.TokenizerPath(dir)
	if !ok {
		return nil, nil, invalid("model %s has no tokenizer.json; the pipeline needs one", dir)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	tok, err := tokenizer.Parse(raw)
	if err != nil {
		return nil, nil, invalid("%s: %v", path, err)
	}
	return tok, raw, nil
}

// heartbeat records progress; the SDK throttles the calls to the server.
func heartbeat(ctx context.Context, p workflows.Progress) {
	if activity.IsActivity(ctx) {
		activity.RecordHeartbeat(ctx, p)
	}
}

// attempt is the activity's attempt number (1 outside an activity).
func attempt(ctx context.Context) int {
	if activity.IsActivity(ctx) {
		return int(activity.GetInfo(ctx).Attempt)
	}
	return 1
}

// lastHeartbeat returns the previous attempt's heartbeat details, if any.
func lastHeartbeat(ctx context.Context) (workflows.Progress, bool) {
	var p workflows.Progress
	if !activity.IsActivity(ctx) || !activity.HasHeartbeatDetails(ctx) {
		return p, false
	}
	if err := activity.GetHeartbeatDetails(ctx, &p); err != nil {
		return p, false
	}
	return p, true
}

// finishFailed records a stage's failure (or cancellation) and returns err.
func (a *Activities) finishFailed(ctx context.Context, stageID int64, err error) error {
	status := datastore.StatusFailed
	if errors.Is(err, context.Canceled) {
		status = datastore.StatusCancelled
	}
	// The activity's context may be cancelled: record on a fresh one.
	if ferr := a.db.FinishStage(context.WithoutCancel(ctx), stageID, status, "", err.Error()); ferr != nil {
		return errors.Join(err, ferr)
	}
	return err
}

// pulse heartbeats the latest progress every few seconds from its own goroutine, so a
// phase without progress callbacks (loading models, reference log-probs, saving) still
// proves the worker alive and still receives a cancellation promptly.
type pulse struct {
	mu   sync.Mutex
	last workflows.Progress
	stop chan struct{}
	done chan struct{}
}

// pulseEvery is how often a pulse heartbeats; the SDK batches heartbeats to at most one
// per 80% of the heartbeat timeout, so this only needs to be well below that.
const pulseEvery = 2 * time.Second

// startPulse starts heartbeating p every interval until Stop.
func startPulse(ctx context.Context, p workflows.Progress, interval time.Duration) *pulse {
	pl := &pulse{last: p, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(pl.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-pl.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				pl.mu.Lock()
				p := pl.last
				pl.mu.Unlock()
				heartbeat(ctx, p)
			}
		}
	}()
	return pl
}

// Set records and sends new progress.
func (pl *pulse) Set(ctx context.Context, p workflows.Progress) {
	pl.mu.Lock()
	pl.last = p
	pl.mu.Unlock()
	heartbeat(ctx, p)
}

// Stop ends the heartbeats and waits for the goroutine.
func (pl *pulse) Stop() {
	close(pl.stop)
	<-pl.done
}
