package reward

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/transformer"
)

// DefaultScoreBatch is the number of sequences Score runs per forward pass.
const DefaultScoreBatch = 16

// Scorer computes the rewards of prompt+response sequences with one reusable workspace,
// so repeated calls (rejection sampling scores every round's candidates) allocate almost
// nothing. A Scorer serves one call at a time.
type Scorer struct {
	m     *transformer.Model
	ws    *transformer.Workspace
	batch transformer.Batch
	maxB  int
	maxT  int
	order []int
	chunk []datasets.Sequence
}

// NewScorer prepares a scorer for m (a sequence classifier) running up to maxBatch
// sequences of up to maxLen tokens per forward pass (maxLen 0 or above the context
// window means the context window).
func NewScorer(m *transformer.Model, maxBatch, maxLen int) (*Scorer, error) {
	if err := checkModel(m); err != nil {
		return nil, err
	}
	if maxBatch < 1 {
		return nil, fmt.Errorf("reward: scorer batch must be >= 1, got %d", maxBatch)
	}
	if maxLen <= 0 || maxLen > m.Config.MaxPositionEmbeddings {
		maxLen = m.Config.MaxPositionEmbeddings
	}
	n := maxBatch * maxLen
	return &Scorer{m: m, ws: m.NewWorkspace(maxBatch, maxLen), maxB: maxBatch, maxT: maxLen,
		batch: transformer.Batch{Tokens: make([]int32, n), Last: make([]int32, maxBatch)}}, nil
}

// checkModel rejects a model that cannot be a reward model.
func checkModel(m *transformer.Model) error {
	switch {
	case m == nil || m.W == nil:
		return errors.New("reward: nil model")
	case m.Pool == nil:
		return errors.New("reward: the model has no kernel pool")
	case !m.Config.IsSequenceClassifier():
		return fmt.Errorf("reward: the model is a %v, not a %s (load it with checkpoint.LoadAsClassifier or convert it with FromCausalLM)", m.Config.Architectures, transformer.ArchSequenceClassifier)
	}
	return nil
}

// MaxBatch is the most sequences one forward pass holds.
func (s *Scorer) MaxBatch() int { return s.maxB }

// MaxLen is the longest sequence the scorer accepts.
func (s *Scorer) MaxLen() int { return s.maxT }

// forward runs one forward pass over seqs (at most MaxBatch, each non-empty and at most
// MaxLen tokens), in order, padded at the end to the longest; the reward of seqs[i] is
// then s.ws.Rewards[i], read at its final token. Padding after a row's last token cannot
// change that reward (causal attention), so the pad id is irrelevant.
func (s *Scorer) forward(seqs []datasets.Sequence) error {
	if len(seqs) == 0 || len(seqs) > s.maxB {
		return fmt.Errorf("reward: forward of %d sequences (batch holds 1..%d)", len(seqs), s.maxB)
	}
	t := 1
	for i, q := range seqs {
		n := q.Len()
		if n == 0 {
			return fmt.Errorf("reward: sequence %d is empty", i)
		}
		if n > s.maxT {
			return fmt.Errorf("reward: sequence %d is %d tokens, longer than the scorer's %d", i, n, s.maxT)
		}
		t = max(t, n)
	}
	b := &s.batch
	b.B, b.T = len(seqs), t
	b.Tokens = b.Tokens[:b.B*t]
	b.Last = b.Last[:b.B]
	for i, q := range seqs {
		row := b.Tokens[i*t : (i+1)*t]
		copy(row, q.Prompt)
		copy(row[len(q.Prompt):], q.Response)
		clear(row[q.Len():])
		b.Last[i] = int32(q.Len() - 1)
	}
	return s.m.Forward(s.ws, b)
}

// Score returns the reward of every sequence, in input order. Sequences are sorted by
// length and run in batches of MaxBatch, so each batch pads to a similar length.
func (s *Scorer) Score(ctx context.Context, seqs []datasets.Sequence) ([]float64, error) {
	return s.ScoreProgress(ctx, seqs, nil)
}

// ScoreProgress is Score calling progress (when non-nil) after each batch with the
// sequences scored so far and the total.
func (s *Scorer) ScoreProgress(ctx context.Context, seqs []datasets.Sequence, progress func(done, total int)) ([]float64, error) {
	out := make([]float64, len(seqs))
	for i, q := range seqs {
		if q.Len() == 0 {
			return nil, fmt.Errorf("reward: score: sequence %d is empty", i)
		}
		if q.Len() > s.maxT {
			return nil, fmt.Errorf("reward: score: sequence %d is %d tokens, longer than the limit of %d", i, q.Len(), s.maxT)
		}
	}
	s.order = s.order[:0]
	for i := range seqs {
		s.order = append(s.order, i)
	}
	sort.SliceStable(s.order, func(a, b int) bool { return seqs[s.order[a]].Len() > seqs[s.order[b]].Len() })
	for lo := 0; lo < len(s.order); lo += s.maxB {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		idx := s.order[lo:min(lo+s.maxB, len(s.order))]
		s.chunk = s.chunk[:0]
		for _, i := range idx {
			s.chunk = append(s.chunk, seqs[i])
		}
		if err := s.forward(s.chunk); err != nil {
			return nil, fmt.Errorf("reward: score: %w", err)
		}
		for j, i := range idx {
			out[i] = float64(s.ws.Rewards[j])
		}
		if progress != nil {
			progress(lo+len(idx), len(seqs))
		}
	}
	return out, nil
}

// Score returns the reward of every prompt+response sequence under the reward model m,
// batch sequences per forward pass (0: DefaultScoreBatch). For repeated calls, keep a
// Scorer instead.
func Score(ctx context.Context, m *transformer.Model, seqs []datasets.Sequence, batch int) ([]float64, error) {
	if batch <= 0 {
		batch = DefaultScoreBatch
	}
	longest := 1
	for _, q := range seqs {
		longest = max(longest, q.Len())
	}
	if err := checkModel(m); err != nil {
		return nil, err
	}
	if longest > m.Config.MaxPositionEmbeddings {
		for i, q := range seqs {
			if q.Len() == longest {
				return nil, fmt.Errorf("reward: score: sequence %d is %d tokens, longer than the model's context of %d", i, q.Len(), m.Config.MaxPositionEmbeddings)
			}
		}
	}
	s, err := NewScorer(m, max(1, min(batch, len(seqs))), longest)
	if err != nil {
		return nil, err
	}
	return s.Score(ctx, seqs)
}
