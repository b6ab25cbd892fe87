package datastore

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Candidate is one rejection-sampling sample with its reward.
type Candidate struct {
	RunID       string  `json:"run_id"`
	Round       int     `json:"round"`
	PromptID    string  `json:"prompt_id"`
	SampleIndex int     `json:"sample_index"`
	Text        string  `json:"text"`
	TokenIDs    []int32 `json:"token_ids"`
	Reward      float64 `json:"reward"`
	// Verified is the verifier's verdict: nil when the sample was not checked, false when
	// it failed the ground-truth check and so could not be selected.
	Verified  *bool     `json:"verified,omitempty"`
	Selected  bool      `json:"selected"`
	Shard     int       `json:"shard"`
	CreatedAt time.Time `json:"created_at"`
}

// CandidateFilter selects candidates; RunID is required, zero fields match everything.
type CandidateFilter struct {
	RunID        string
	Round        int
	PromptID     string
	SelectedOnly bool
	Limit        int
}

type candidateKey struct {
	run, prompt   string
	round, sample int
}

// RecordCandidates upserts cs through COPY into a temporary table: a retried shard
// rewrites its own rows (same key) and never adds new ones. Within cs, the last row for
// a key wins.
func (s *Store) RecordCandidates(ctx context.Context, cs []Candidate) error {
	if len(cs) == 0 {
		return nil
	}
	idx := make(map[candidateKey]int, len(cs))
	uniq := make([]Candidate, 0, len(cs))
	for _, c := range cs {
		if c.PromptID == "" || c.SampleIndex < 0 {
			return fmt.Errorf("record candidates for run %s round %d: candidate needs a prompt id and a sample index >= 0 (got %q, %d)", c.RunID, c.Round, c.PromptID, c.SampleIndex)
		}
		k := candidateKey{c.RunID, c.PromptID, c.Round, c.SampleIndex}
		if i, ok := idx[k]; ok {
			uniq[i] = c
			continue
		}
		idx[k] = len(uniq)
		uniq = append(uniq, c)
	}
	return s.InTx(ctx, func(tx *Store) error {
		if _, err := tx.db.Exec(ctx, `CREATE TEMP TABLE IF NOT EXISTS candidates_in
			(LIKE sampling_candidates INCLUDING DEFAULTS) ON COMMIT DROP;
			TRUNCATE candidates_in`); err != nil {
			return fmt.Errorf("record candidates: %w", err)
		}
		cols := []string{"run_id", "round", "prompt_id", "sample_index", "text", "token_ids", "reward", "verified", "selected", "shard"}
		_, err := tx.db.CopyFrom(ctx, pgx.Identifier{"candidates_in"}, cols, pgx.CopyFromSlice(len(uniq), func(i int) ([]any, error) {
			c := uniq[i]
			ids := c.TokenIDs
			if ids == nil {
				ids = []int32{}
			}
			return []any{c.RunID, c.Round, c.PromptID, c.SampleIndex, c.Text, ids, c.Reward, c.Verified, c.Selected, c.Shard}, nil
		}))
		if err != nil {
			return fmt.Errorf("record %d candidates: copy: %w", len(uniq), err)
		}
		_, err = tx.db.Exec(ctx, `INSERT INTO sampling_candidates (run_id, round, prompt_id, sample_index, text, token_ids, reward, verified, selected, shard)
			SELECT run_id, round, prompt_id, sample_index, text, token_ids, reward, verified, selected, shard FROM candidates_in
			ON CONFLICT (run_id, round, prompt_id, sample_index) DO UPDATE SET
				text = EXCLUDED.text, token_ids = EXCLUDED.token_ids, reward = EXCLUDED.reward,
				verified = EXCLUDED.verified, selected = EXCLUDED.selected, shard = EXCLUDED.shard`)
		if isFKViolation(err) {
			return fmt.Errorf("record %d candidates: run %s: %w", len(uniq), uniq[0].RunID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("record %d candidates: %w", len(uniq), err)
		}
		return nil
	})
}

// ListCandidates returns the candidates matching f ordered by round, prompt and sample
// index.
func (s *Store) ListCandidates(ctx context.Context, f CandidateFilter) ([]Candidate, error) {
	q := `SELECT run_id, round, prompt_id, sample_index, text, token_ids, reward, verified, selected, shard, created_at
		FROM sampling_candidates
		WHERE run_id = $1 AND ($2 = 0 OR round = $2) AND ($3 = '' OR prompt_id = $3) AND (NOT $4 OR selected)
		ORDER BY round, prompt_id, sample_index`
	args := []any{f.RunID, f.Round, f.PromptID, f.SelectedOnly}
	if f.Limit > 0 {
		q += ` LIMIT $5`
		args = append(args, f.Limit)
	}
	return collect(ctx, s.db, "list candidates of run "+f.RunID, func(row pgx.Row) (Candidate, error) {
		var c Candidate
		err := row.Scan(&c.RunID, &c.Round, &c.PromptID, &c.SampleIndex, &c.Text, &c.TokenIDs, &c.Reward, &c.Verified, &c.Selected, &c.Shard, &c.CreatedAt)
		return c, err
	}, q, args...)
}

// CandidateCounts returns how many candidates a round of a run has, and how many of them
// were selected.
func (s *Store) CandidateCounts(ctx context.Context, runID string, round int) (total, selected int64, err error) {
	err = s.db.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE selected) FROM sampling_candidates
		WHERE run_id = $1 AND round = $2`, runID, round).Scan(&total, &selected)
	if err != nil {
		return 0, 0, fmt.Errorf("count candidates of run %s round %d: %w", runID, round, err)
	}
	return total, selected, nil
}
