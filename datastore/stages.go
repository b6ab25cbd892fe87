package datastore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Stage kinds.
const (
	StageReward   = "reward"
	StageSampling = "sampling"
	StageSFT      = "sft"
	StageDPO      = "dpo"
	StageAverage  = "average"
	StageEval     = "eval"
	StageAnnotate = "annotate"
	StageSummary  = "summary"
)

// StageKey is a stage's natural key. Variant is free text by convention: "0", "1", ...
// for training variants, "shard-3" for sampling shards, and the averaged or evaluated
// stage ("reward", "sft", "dpo") for average and eval.
type StageKey struct {
	RunID   string `json:"run_id"`
	Round   int    `json:"round"`
	Kind    string `json:"kind"`
	Variant string `json:"variant"`
}

func (k StageKey) String() string {
	return fmt.Sprintf("%s/round-%d/%s/%s", k.RunID, k.Round, k.Kind, k.Variant)
}

// Stage is one unit of work of a round and where it got to.
type Stage struct {
	ID int64 `json:"id"`
	StageKey
	Status               string     `json:"status"`
	Attempt              int        `json:"attempt"`
	Error                string     `json:"error,omitempty"`
	CheckpointArtifactID string     `json:"checkpoint_artifact_id,omitempty"`
	CheckpointStep       int64      `json:"checkpoint_step"`
	OutputArtifactID     string     `json:"output_artifact_id,omitempty"`
	StartedAt            *time.Time `json:"started_at,omitempty"`
	FinishedAt           *time.Time `json:"finished_at,omitempty"`
	CreatedAt            time.Time  `json:"created_at"`
	UpdatedAt            time.Time  `json:"updated_at"`
}

// Duration is the stage's wall time, or 0 when it has not finished.
func (s Stage) Duration() time.Duration {
	if s.StartedAt == nil || s.FinishedAt == nil {
		return 0
	}
	return s.FinishedAt.Sub(*s.StartedAt)
}

const stageColumns = `id, run_id, round, kind, variant, status, attempt, error, checkpoint_artifact_id, checkpoint_step, output_artifact_id, started_at, finished_at, created_at, updated_at`

func scanStage(row pgx.Row) (Stage, error) {
	var s Stage
	err := row.Scan(&s.ID, &s.RunID, &s.Round, &s.Kind, &s.Variant, &s.Status, &s.Attempt, &s.Error,
		&s.CheckpointArtifactID, &s.CheckpointStep, &s.OutputArtifactID, &s.StartedAt, &s.FinishedAt, &s.CreatedAt, &s.UpdatedAt)
	return s, err
}

// StartStage marks the stage running for the given attempt (Temporal's attempt number),
// creating its row if needed, and returns it. On a retry the row keeps its checkpoint
// (resume from CheckpointStep) and first start time; a completed stage stays completed,
// so the caller can return its output without redoing the work.
func (s *Store) StartStage(ctx context.Context, key StageKey, attempt int) (Stage, error) {
	st, err := scanStage(s.db.QueryRow(ctx, `
		INSERT INTO stages (run_id, round, kind, variant, status, attempt, started_at)
		VALUES ($1, $2, $3, $4, 'running', $5, now())
		ON CONFLICT (run_id, round, kind, variant) DO UPDATE SET
			status = CASE WHEN stages.status = 'completed' THEN stages.status ELSE 'running' END,
			attempt = GREATEST(stages.attempt, EXCLUDED.attempt),
			error = CASE WHEN stages.status = 'completed' THEN stages.error ELSE '' END,
			finished_at = CASE WHEN stages.status = 'completed' THEN stages.finished_at ELSE NULL END,
			started_at = COALESCE(stages.started_at, now()),
			updated_at = now()
		RETURNING `+stageColumns, key.RunID, key.Round, key.Kind, key.Variant, attempt))
	if isFKViolation(err) {
		return Stage{}, fmt.Errorf("start stage %s: run %w", key, ErrNotFound)
	}
	if err != nil {
		return Stage{}, fmt.Errorf("start stage %s: %w", key, err)
	}
	return st, nil
}

// SaveCheckpoint records the stage's latest durable checkpoint. It never moves the
// checkpoint backwards: a stale write from an older attempt is ignored.
func (s *Store) SaveCheckpoint(ctx context.Context, stageID int64, artifactID string, step int64) error {
	_, err := s.db.Exec(ctx, `UPDATE stages SET checkpoint_artifact_id = $2, checkpoint_step = $3, updated_at = now()
		WHERE id = $1 AND checkpoint_step <= $3`, stageID, artifactID, step)
	if err != nil {
		return fmt.Errorf("save checkpoint of stage %d: %w", stageID, err)
	}
	return nil
}

// FinishStage records a stage's end: its status (completed, failed, cancelled,
// skipped), output artifact and error text.
func (s *Store) FinishStage(ctx context.Context, stageID int64, status, outputArtifactID, errText string) error {
	return s.execOne(ctx, fmt.Sprintf("finish stage %d", stageID), `
		UPDATE stages SET status = $2, output_artifact_id = $3, error = $4,
			finished_at = now(), updated_at = now()
		WHERE id = $1`, stageID, status, outputArtifactID, errText)
}

// CancelStages marks a run's unfinished stages cancelled and returns how many.
func (s *Store) CancelStages(ctx context.Context, runID string) (int64, error) {
	tag, err := s.db.Exec(ctx, `UPDATE stages SET status = 'cancelled', finished_at = now(), updated_at = now()
		WHERE run_id = $1 AND status IN ('pending', 'running')`, runID)
	if err != nil {
		return 0, fmt.Errorf("cancel stages of run %s: %w", runID, err)
	}
	return tag.RowsAffected(), nil
}

// GetStage returns the stage with the given key (ErrNotFound when there is none).
func (s *Store) GetStage(ctx context.Context, key StageKey) (Stage, error) {
	st, err := scanStage(s.db.QueryRow(ctx, `SELECT `+stageColumns+` FROM stages
		WHERE run_id = $1 AND round = $2 AND kind = $3 AND variant = $4`, key.RunID, key.Round, key.Kind, key.Variant))
	if errors.Is(err, pgx.ErrNoRows) {
		return Stage{}, fmt.Errorf("stage %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return Stage{}, fmt.Errorf("get stage %s: %w", key, err)
	}
	return st, nil
}

// GetStageByID returns the stage with the given ID (ErrNotFound when there is none).
func (s *Store) GetStageByID(ctx context.Context, id int64) (Stage, error) {
	st, err := scanStage(s.db.QueryRow(ctx, `SELECT `+stageColumns+` FROM stages WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Stage{}, fmt.Errorf("stage %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Stage{}, fmt.Errorf("get stage %d: %w", id, err)
	}
	return st, nil
}

// ListStages returns a run's stages (of one round, or all when round is 0) in the order
// they were created.
func (s *Store) ListStages(ctx context.Context, runID string, round int) ([]Stage, error) {
	return collect(ctx, s.db, "list stages of run "+runID, scanStage, `SELECT `+stageColumns+` FROM stages
		WHERE run_id = $1 AND ($2 = 0 OR round = $2) ORDER BY round, id`, runID, round)
}
