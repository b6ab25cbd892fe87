package datastore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Statuses of runs, rounds and stages.
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusPaused    = "paused"  // runs and rounds
	StatusWaiting   = "waiting" // runs and rounds: for approval or annotations
	StatusCompleted = "completed"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	StatusSkipped   = "skipped" // stages
)

// Run is one PostTraining workflow execution.
type Run struct {
	ID            string `json:"id"`
	WorkflowID    string `json:"workflow_id"`
	TemporalRunID string `json:"temporal_run_id"`
	// Series groups scheduled runs that continue from each other.
	Series string `json:"series,omitempty"`
	Preset string `json:"preset,omitempty"`
	// Config is the resolved, redacted config snapshot (JSON).
	Config           json.RawMessage `json:"config,omitempty"`
	Status           string          `json:"status"`
	Error            string          `json:"error,omitempty"`
	ResultArtifactID string          `json:"result_artifact_id,omitempty"`
	CreatedAt        time.Time       `json:"created_at"`
	UpdatedAt        time.Time       `json:"updated_at"`
}

// RunFilter selects runs for ListRuns; zero fields match everything.
type RunFilter struct {
	Series string
	Status string
	Limit  int
}

const runColumns = `id, workflow_id, temporal_run_id, series, preset, config, status, error, result_artifact_id, created_at, updated_at`

func scanRun(row pgx.Row) (Run, error) {
	var r Run
	var cfg []byte
	err := row.Scan(&r.ID, &r.WorkflowID, &r.TemporalRunID, &r.Series, &r.Preset, &cfg, &r.Status, &r.Error, &r.ResultArtifactID, &r.CreatedAt, &r.UpdatedAt)
	r.Config = cfg
	return r, err
}

// CreateRun inserts r, or returns the existing run with r.ID: a retried activity never
// makes a second run, and its config snapshot stays the first one written. Empty
// workflow and Temporal run IDs of the existing row are filled from r.
func (s *Store) CreateRun(ctx context.Context, r Run) (Run, error) {
	if r.ID == "" {
		return Run{}, errors.New("create run: empty id")
	}
	if r.Status == "" {
		r.Status = StatusPending
	}
	cfg := []byte(r.Config)
	if len(cfg) == 0 {
		cfg = []byte("{}")
	}
	got, err := scanRun(s.db.QueryRow(ctx, `
		INSERT INTO runs (id, workflow_id, temporal_run_id, series, preset, config, status)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (id) DO UPDATE SET
			workflow_id = CASE WHEN runs.workflow_id = '' THEN EXCLUDED.workflow_id ELSE runs.workflow_id END,
			temporal_run_id = CASE WHEN runs.temporal_run_id = '' THEN EXCLUDED.temporal_run_id ELSE runs.temporal_run_id END
		RETURNING `+runColumns,
		r.ID, r.WorkflowID, r.TemporalRunID, r.Series, r.Preset, cfg, r.Status))
	if err != nil {
		return Run{}, fmt.Errorf("create run %s: %w", r.ID, err)
	}
	return got, nil
}

// GetRun returns the run with the given ID (ErrNotFound when there is none).
func (s *Store) GetRun(ctx context.Context, id string) (Run, error) {
	r, err := scanRun(s.db.QueryRow(ctx, `SELECT `+runColumns+` FROM runs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("get run %s: %w", id, err)
	}
	return r, nil
}

// ListRuns returns the runs matching f, newest first.
func (s *Store) ListRuns(ctx context.Context, f RunFilter) ([]Run, error) {
	q := `SELECT ` + runColumns + ` FROM runs WHERE ($1 = '' OR series = $1) AND ($2 = '' OR status = $2)
		ORDER BY created_at DESC, id`
	args := []any{f.Series, f.Status}
	if f.Limit > 0 {
		q += ` LIMIT $3`
		args = append(args, f.Limit)
	}
	return collect(ctx, s.db, "list runs", scanRun, q, args...)
}

// SetRunStatus sets a run's status and error text.
func (s *Store) SetRunStatus(ctx context.Context, id, status, errText string) error {
	return s.execOne(ctx, fmt.Sprintf("set run %s status", id),
		`UPDATE runs SET status = $2, error = $3, updated_at = now() WHERE id = $1`, id, status, errText)
}

// SetRunResult records a run's final model.
func (s *Store) SetRunResult(ctx context.Context, id, artifactID string) error {
	return s.execOne(ctx, fmt.Sprintf("set run %s result", id),
		`UPDATE runs SET result_artifact_id = $2, updated_at = now() WHERE id = $1`, id, artifactID)
}

// LatestSeriesResult returns the newest completed run of series that has a result: the
// model a scheduled run continues from (ErrNotFound for a new series).
func (s *Store) LatestSeriesResult(ctx context.Context, series string) (Run, error) {
	r, err := scanRun(s.db.QueryRow(ctx, `SELECT `+runColumns+` FROM runs
		WHERE series = $1 AND status = 'completed' AND result_artifact_id <> ''
		ORDER BY created_at DESC, id DESC LIMIT 1`, series))
	if errors.Is(err, pgx.ErrNoRows) {
		return Run{}, fmt.Errorf("series %q has no completed run: %w", series, ErrNotFound)
	}
	if err != nil {
		return Run{}, fmt.Errorf("latest run of series %q: %w", series, err)
	}
	return r, nil
}

// Round is one round of a run.
type Round struct {
	RunID            string         `json:"run_id"`
	N                int            `json:"n"`
	Status           string         `json:"status"`
	PolicyArtifactID string         `json:"policy_artifact_id,omitempty"`
	FinalArtifactID  string         `json:"final_artifact_id,omitempty"`
	Summary          map[string]any `json:"summary,omitempty"`
	Error            string         `json:"error,omitempty"`
	ApprovedAt       *time.Time     `json:"approved_at,omitempty"`
	StartedAt        *time.Time     `json:"started_at,omitempty"`
	FinishedAt       *time.Time     `json:"finished_at,omitempty"`
	CreatedAt        time.Time      `json:"created_at"`
	UpdatedAt        time.Time      `json:"updated_at"`
}

const roundColumns = `run_id, n, status, policy_artifact_id, final_artifact_id, summary, error, approved_at, started_at, finished_at, created_at, updated_at`

func scanRound(row pgx.Row) (Round, error) {
	var r Round
	err := row.Scan(&r.RunID, &r.N, &r.Status, &r.PolicyArtifactID, &r.FinalArtifactID, &r.Summary, &r.Error, &r.ApprovedAt, &r.StartedAt, &r.FinishedAt, &r.CreatedAt, &r.UpdatedAt)
	return r, err
}

// StartRound marks round n of run as running with the model it samples from, creating
// the row if needed. A retry keeps the first start time and never reopens a finished
// round.
func (s *Store) StartRound(ctx context.Context, runID string, n int, policyArtifactID string) (Round, error) {
	r, err := scanRound(s.db.QueryRow(ctx, `
		INSERT INTO rounds (run_id, n, status, policy_artifact_id, started_at)
		VALUES ($1, $2, 'running', $3, now())
		ON CONFLICT (run_id, n) DO UPDATE SET
			status = CASE WHEN rounds.status IN ('completed', 'failed', 'cancelled') THEN rounds.status ELSE 'running' END,
			policy_artifact_id = CASE WHEN EXCLUDED.policy_artifact_id <> '' THEN EXCLUDED.policy_artifact_id ELSE rounds.policy_artifact_id END,
			started_at = COALESCE(rounds.started_at, now()),
			updated_at = now()
		RETURNING `+roundColumns, runID, n, policyArtifactID))
	if isFKViolation(err) {
		return Round{}, fmt.Errorf("start round %d of run %s: %w", n, runID, ErrNotFound)
	}
	if err != nil {
		return Round{}, fmt.Errorf("start round %d of run %s: %w", n, runID, err)
	}
	return r, nil
}

// SetRoundStatus sets a round's status (e.g. paused, waiting) without finishing it.
func (s *Store) SetRoundStatus(ctx context.Context, runID string, n int, status string) error {
	return s.execOne(ctx, fmt.Sprintf("set round %d of run %s status", n, runID),
		`UPDATE rounds SET status = $3, updated_at = now() WHERE run_id = $1 AND n = $2`, runID, n, status)
}

// ApproveRound records the approval of round n (idempotent: the first time is kept).
func (s *Store) ApproveRound(ctx context.Context, runID string, n int) error {
	return s.execOne(ctx, fmt.Sprintf("approve round %d of run %s", n, runID),
		`UPDATE rounds SET approved_at = COALESCE(approved_at, now()), updated_at = now() WHERE run_id = $1 AND n = $2`, runID, n)
}

// FinishRound records the end of round n: its status, final model, summary and error.
// The summary is merged into any summary already written.
func (s *Store) FinishRound(ctx context.Context, runID string, n int, status, finalArtifactID string, summary map[string]any, errText string) error {
	if summary == nil {
		summary = map[string]any{}
	}
	return s.execOne(ctx, fmt.Sprintf("finish round %d of run %s", n, runID), `
		UPDATE rounds SET status = $3, final_artifact_id = $4, summary = summary || $5, error = $6,
			finished_at = COALESCE(finished_at, now()), updated_at = now()
		WHERE run_id = $1 AND n = $2`, runID, n, status, finalArtifactID, summary, errText)
}

// GetRound returns round n of run (ErrNotFound when there is none).
func (s *Store) GetRound(ctx context.Context, runID string, n int) (Round, error) {
	r, err := scanRound(s.db.QueryRow(ctx, `SELECT `+roundColumns+` FROM rounds WHERE run_id = $1 AND n = $2`, runID, n))
	if errors.Is(err, pgx.ErrNoRows) {
		return Round{}, fmt.Errorf("round %d of run %s: %w", n, runID, ErrNotFound)
	}
	if err != nil {
		return Round{}, fmt.Errorf("get round %d of run %s: %w", n, runID, err)
	}
	return r, nil
}

// ListRounds returns a run's rounds in order.
func (s *Store) ListRounds(ctx context.Context, runID string) ([]Round, error) {
	return collect(ctx, s.db, "list rounds of run "+runID, scanRound,
		`SELECT `+roundColumns+` FROM rounds WHERE run_id = $1 ORDER BY n`, runID)
}

// collect runs q and scans every row with scan.
func collect[T any](ctx context.Context, db DBTX, what string, scan func(pgx.Row) (T, error), q string, args ...any) ([]T, error) {
	rows, err := db.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// execOne runs an UPDATE that must touch a row; no row is ErrNotFound.
func (s *Store) execOne(ctx context.Context, what, q string, args ...any) error {
	tag, err := s.db.Exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}
