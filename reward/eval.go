package reward

import (
	"context"
	"errors"
	"fmt"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/transformer"
)

// EvalOptions tune Evaluate.
type EvalOptions struct {
	// Batch is the number of sequences per forward pass (0: DefaultScoreBatch).
	Batch int
	// Margin selects the margins inside the reported loss (default none).
	Margin MarginMode
	// SimilarityThreshold drops near-identical pairs from the metrics, as in training;
	// 0 evaluates every pair (DefaultEvalOptions uses the training default).
	SimilarityThreshold float64
	// Progress, when set, is called after each forward pass with the sequences scored
	// so far and the total.
	Progress func(done, total int)
}

// DefaultEvalOptions evaluate like training filters: pairs whose responses are at least
// DefaultSimilarityThreshold alike (identical ones included, which no model can rank) are
// left out of the metrics.
func DefaultEvalOptions() EvalOptions {
	return EvalOptions{Batch: DefaultScoreBatch, SimilarityThreshold: DefaultSimilarityThreshold}
}

// EvalResult is a reward model's quality on held-out pairs.
type EvalResult struct {
	// N is the number of pairs evaluated (a ranked triple gives 3).
	N int `json:"n"`
	// Loss is the mean Bradley-Terry loss -log sigmoid(r_better - r_worse - margin).
	Loss float64 `json:"loss"`
	// Accuracy is the fraction of pairs with r_better > r_worse.
	Accuracy float64 `json:"accuracy"`
	// MeanMargin is the mean of r_better - r_worse (margins not subtracted).
	MeanMargin float64 `json:"mean_margin"`
	// Rows is the number of rows with at least one evaluated pair.
	Rows int `json:"rows"`
	// Filter counts the pairs the similarity filter removed.
	Filter FilterStats `json:"filter"`
}

// Evaluate scores every response of rows with the reward model m and returns the pair
// metrics and each row's rewards (rewards[i][k] is rows[i].Responses[k]'s, best first).
func Evaluate(ctx context.Context, m *transformer.Model, rows []datasets.EncodedPreference, opts EvalOptions) (EvalResult, [][]float64, error) {
	if err := checkModel(m); err != nil {
		return EvalResult{}, nil, err
	}
	if len(rows) == 0 {
		return EvalResult{}, nil, errors.New("reward: evaluate: no rows")
	}
	if !(opts.SimilarityThreshold >= 0 && opts.SimilarityThreshold <= 1) {
		return EvalResult{}, nil, fmt.Errorf("reward: evaluate: similarity threshold must be in [0,1], got %g", opts.SimilarityThreshold)
	}
	if err := CheckRows(rows, m.Config); err != nil {
		return EvalResult{}, nil, fmt.Errorf("reward: evaluate: %w", err)
	}
	prep, st, err := prepare(rows, opts.Margin, opts.SimilarityThreshold)
	if err != nil {
		return EvalResult{}, nil, fmt.Errorf("reward: evaluate: %w", err)
	}
	batch := opts.Batch
	if batch <= 0 {
		batch = DefaultScoreBatch
	}
	sc, err := NewScorer(m, min(batch, 3*len(rows)), longestRow(rows))
	if err != nil {
		return EvalResult{}, nil, err
	}
	ev, err := newEvaluator(rows, prep, st)
	if err != nil {
		return EvalResult{}, nil, err
	}
	return ev.run(ctx, sc, opts.Progress)
}

// longestRow is the length of the longest prompt+response of rows.
func longestRow(rows []datasets.EncodedPreference) int {
	t := 1
	for _, r := range rows {
		for _, resp := range r.Responses {
			t = max(t, len(r.Prompt)+len(resp))
		}
	}
	return t
}

// evaluator holds a validation set flattened into sequences and global pairs.
type evaluator struct {
	rows   []datasets.EncodedPreference
	seqs   []datasets.Sequence
	offset []int // rows[i]'s responses start at seqs[offset[i]]
	pairs  []objectives.Pair
	stats  FilterStats
	bt     *objectives.BradleyTerry
}

func newEvaluator(rows []datasets.EncodedPreference, prep []prepared, st FilterStats) (*evaluator, error) {
	bt, err := objectives.NewBradleyTerry(objectives.BTOptions{})
	if err != nil {
		return nil, fmt.Errorf("reward: %w", err)
	}
	e := &evaluator{rows: rows, offset: make([]int, len(rows)), stats: st, bt: bt}
	for i, r := range rows {
		e.offset[i] = len(e.seqs)
		for _, resp := range r.Responses {
			e.seqs = append(e.seqs, datasets.Sequence{Prompt: r.Prompt, Response: resp})
		}
	}
	for _, p := range prep {
		for _, q := range p.pairs {
			q.Better = e.offset[p.row] + p.resp[q.Better]
			q.Worse = e.offset[p.row] + p.resp[q.Worse]
			q.Row = p.row
			e.pairs = append(e.pairs, q)
		}
	}
	return e, nil
}

// run scores every sequence with sc and computes the metrics over the kept pairs.
func (e *evaluator) run(ctx context.Context, sc *Scorer, progress func(done, total int)) (EvalResult, [][]float64, error) {
	flat, err := sc.ScoreProgress(ctx, e.seqs, progress)
	if err != nil {
		return EvalResult{}, nil, fmt.Errorf("reward: evaluate: %w", err)
	}
	rewards := make([][]float64, len(e.rows))
	for i, r := range e.rows {
		rewards[i] = flat[e.offset[i] : e.offset[i]+len(r.Responses)]
	}
	res := EvalResult{Filter: e.stats}
	if len(e.pairs) == 0 {
		return res, rewards, fmt.Errorf("reward: evaluate: no pairs left after the similarity filter (%d of %d dropped at threshold %g)", e.stats.FilteredPairs, e.stats.Pairs, e.stats.Threshold)
	}
	bt, err := e.bt.Eval(flat, e.pairs)
	if err != nil {
		return EvalResult{}, nil, fmt.Errorf("reward: evaluate: %w", err)
	}
	res.N, res.Loss, res.Accuracy, res.MeanMargin, res.Rows = bt.Pairs, bt.BTLoss, bt.Accuracy, bt.MeanMargin, bt.Rows
	return res, rewards, nil
}
