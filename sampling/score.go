package sampling

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/transformer"
)

// Scorer gives the reward of each prompt+response sequence, in input order. It has the
// method set of reward.Scorer, so a reward-package scorer plugs in unchanged.
type Scorer interface {
	Score(ctx context.Context, seqs []datasets.Sequence) ([]float64, error)
}

// ClassifierScorer scores with a sequence-classifier model (score head) through the
// training forward pass: rows padded at the end, the reward read at each row's final
// token. It reuses one workspace; it serves one call at a time.
type ClassifierScorer struct {
	m     *transformer.Model
	ws    *transformer.Workspace
	maxB  int
	maxT  int
	batch transformer.Batch
}

// NewClassifierScorer prepares a scorer for the reward model m, running up to maxBatch
// sequences of up to maxLen tokens per forward pass (maxLen <= 0 or beyond the context
// window means the context window).
func NewClassifierScorer(m *transformer.Model, maxBatch, maxLen int) (*ClassifierScorer, error) {
	switch {
	case m == nil || m.W == nil:
		return nil, errors.New("scorer: nil reward model")
	case !m.Config.IsSequenceClassifier() || m.W.Score == nil:
		return nil, fmt.Errorf("scorer: the reward model is a %v, not a %s", m.Config.Architectures, transformer.ArchSequenceClassifier)
	case maxBatch < 1:
		return nil, fmt.Errorf("scorer: batch must be >= 1, got %d", maxBatch)
	}
	if maxLen <= 0 || maxLen > m.Config.MaxPositionEmbeddings {
		maxLen = m.Config.MaxPositionEmbeddings
	}
	return &ClassifierScorer{m: m, ws: m.NewWorkspace(maxBatch, maxLen), maxB: maxBatch, maxT: maxLen,
		batch: transformer.Batch{Tokens: make([]int32, maxBatch*maxLen), Last: make([]int32, maxBatch)}}, nil
}

// Score returns every sequence's reward. Sequences run longest first in batches, so
// each batch pads to a similar length; padding after a row's last token cannot change
// its reward (causal attention).
func (s *ClassifierScorer) Score(ctx context.Context, seqs []datasets.Sequence) ([]float64, error) {
	order := make([]int, len(seqs))
	for i, q := range seqs {
		if q.Len() == 0 || q.Len() > s.maxT {
			return nil, fmt.Errorf("scorer: sequence %d has %d tokens (want 1..%d)", i, q.Len(), s.maxT)
		}
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return seqs[order[a]].Len() > seqs[order[b]].Len() })
	out := make([]float64, len(seqs))
	for lo := 0; lo < len(order); lo += s.maxB {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		idx := order[lo:min(lo+s.maxB, len(order))]
		t := seqs[idx[0]].Len()
		b := &s.batch
		b.B, b.T = len(idx), t
		b.Tokens, b.Last = b.Tokens[:b.B*t], b.Last[:b.B]
		for r, i := range idx {
			row := b.Tokens[r*t : (r+1)*t]
			n := copy(row, seqs[i].Prompt)
			n += copy(row[n:], seqs[i].Response)
			clear(row[n:])
			b.Last[r] = int32(n - 1)
		}
		if err := s.m.Forward(s.ws, b); err != nil {
			return nil, fmt.Errorf("scorer: %w", err)
		}
		for r, i := range idx {
			out[i] = float64(s.ws.Rewards[r])
		}
	}
	return out, nil
}
