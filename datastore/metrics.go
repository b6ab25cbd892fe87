package datastore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// batchThreshold is the row count above which writes go through COPY instead of a
// pgx.Batch of upserts.
const batchThreshold = 256

// Metric is one value of one step of one stage.
type Metric struct {
	RunID      string    `json:"run_id"`
	Round      int       `json:"round"`
	Stage      string    `json:"stage"`
	Variant    string    `json:"variant"`
	Step       int64     `json:"step"`
	Name       string    `json:"name"`
	Value      float64   `json:"value"`
	RecordedAt time.Time `json:"recorded_at"`
}

type metricKey struct {
	run, stage, variant, name string
	round                     int
	step                      int64
}

// MetricFilter selects metrics; zero fields match everything except RunID, which is
// required.
type MetricFilter struct {
	RunID   string
	Round   int
	Stage   string
	Variant string
	Name    string
}

// RecordMetrics upserts ms: a retried step overwrites its own values instead of adding
// rows. Within ms, the last value for a key wins. Large slices go through COPY.
func (s *Store) RecordMetrics(ctx context.Context, ms []Metric) error {
	if len(ms) == 0 {
		return nil
	}
	// Keep the last value per key: one statement may not update a row twice.
	idx := make(map[metricKey]int, len(ms))
	uniq := make([]Metric, 0, len(ms))
	for _, m := range ms {
		if m.Name == "" {
			return fmt.Errorf("record metrics for run %s: empty metric name (stage %s step %d)", m.RunID, m.Stage, m.Step)
		}
		k := metricKey{m.RunID, m.Stage, m.Variant, m.Name, m.Round, m.Step}
		if i, ok := idx[k]; ok {
			uniq[i] = m
			continue
		}
		idx[k] = len(uniq)
		uniq = append(uniq, m)
	}
	const upsert = `ON CONFLICT (run_id, round, stage, variant, step, name)
		DO UPDATE SET value = EXCLUDED.value, recorded_at = now()`
	if len(uniq) <= batchThreshold {
		b := &pgx.Batch{}
		for _, m := range uniq {
			b.Queue(`INSERT INTO metrics (run_id, round, stage, variant, step, name, value)
				VALUES ($1, $2, $3, $4, $5, $6, $7) `+upsert, m.RunID, m.Round, m.Stage, m.Variant, m.Step, m.Name, m.Value)
		}
		if err := s.db.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("record %d metrics: %w", len(uniq), err)
		}
		return nil
	}
	return s.InTx(ctx, func(tx *Store) error {
		if _, err := tx.db.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS metrics_in
			(LIKE metrics INCLUDING DEFAULTS) ON COMMIT DROP;
			TRUNCATE metrics_in`); err != nil {
			return fmt.Errorf("record metrics: %w", err)
		}
		cols := []string{"run_id", "round", "stage", "variant", "step", "name", "value"}
		_, err := tx.db.CopyFrom(ctx, pgx.Identifier{"metrics_in"}, cols, pgx.CopyFromSlice(len(uniq), func(i int) ([]any, error) {
			m := uniq[i]
			return []any{m.RunID, m.Round, m.Stage, m.Variant, m.Step, m.Name, m.Value}, nil
		}))
		if err != nil {
			return fmt.Errorf("record %d metrics: copy: %w", len(uniq), err)
		}
		if _, err := tx.db.Exec(ctx, `INSERT INTO metrics (run_id, round, stage, variant, step, name, value)
			SELECT run_id, round, stage, variant, step, name, value FROM metrics_in `+upsert); err != nil {
			return fmt.Errorf("record %d metrics: %w", len(uniq), err)
		}
		return nil
	})
}

// ListMetrics returns the metrics matching f ordered by round, stage, variant, name and
// step.
func (s *Store) ListMetrics(ctx context.Context, f MetricFilter) ([]Metric, error) {
	return collect(ctx, s.db, "list metrics of run "+f.RunID, scanMetric, `
		SELECT run_id, round, stage, variant, step, name, value, recorded_at FROM metrics
		WHERE run_id = $1 AND ($2 = 0 OR round = $2) AND ($3 = '' OR stage = $3)
		  AND ($4 = '' OR variant = $4) AND ($5 = '' OR name = $5)
		ORDER BY round, stage, variant, name, step`, f.RunID, f.Round, f.Stage, f.Variant, f.Name)
}

// FinalMetrics returns, for each (round, stage, variant, name) of the run, the value at
// the highest step: the numbers a round summary shows.
func (s *Store) FinalMetrics(ctx context.Context, runID string) ([]Metric, error) {
	return collect(ctx, s.db, "final metrics of run "+runID, scanMetric, `
		SELECT DISTINCT ON (round, stage, variant, name)
			run_id, round, stage, variant, step, name, value, recorded_at
		FROM metrics WHERE run_id = $1
		ORDER BY round, stage, variant, name, step DESC`, runID)
}

func scanMetric(row pgx.Row) (Metric, error) {
	var m Metric
	err := row.Scan(&m.RunID, &m.Round, &m.Stage, &m.Variant, &m.Step, &m.Name, &m.Value, &m.RecordedAt)
	return m, err
}
