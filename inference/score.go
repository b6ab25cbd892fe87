package inference

import (
	"context"
	"errors"
	"fmt"

	"github.com/posttrain/posttrain/transformer"
)

// ScoreItem is a prompt and a completion to score, as token ids used exactly as given.
type ScoreItem struct {
	Prompt, Completion []int32
}

// Score is a completion's log-probability under the model.
type Score struct {
	// LogProb is the sum of TokenLogProbs.
	LogProb float64 `json:"logprob"`
	// TokenLogProbs are log p(completion[i] | prompt, completion[:i]).
	TokenLogProbs []float32 `json:"token_logprobs"`
}

// Scorer computes completion log-probabilities with the training forward pass (the same
// numbers a DPO reference model or a trainer sees), a few rows per pass.
type Scorer struct {
	m    *transformer.Model
	ws   *transformer.Workspace
	maxB int
	b    transformer.Batch
}

// NewScorer prepares a scorer for the causal LM m, running up to maxBatch rows per
// forward pass (default 8).
func NewScorer(m *transformer.Model, maxBatch int) (*Scorer, error) {
	if m == nil || m.W == nil {
		return nil, errors.New("scorer: nil model")
	}
	if m.Config.IsSequenceClassifier() {
		return nil, errors.New("scorer: the model is a sequence classifier (no lm_head); log-probabilities need a causal LM")
	}
	if maxBatch <= 0 {
		maxBatch = 8
	}
	return &Scorer{m: m, ws: m.NewWorkspace(maxBatch, m.Config.MaxPositionEmbeddings), maxB: maxBatch}, nil
}

// Check validates one item against the model, naming the problem.
func (s *Scorer) Check(it ScoreItem) error {
	cfg := s.m.Config
	switch {
	case len(it.Prompt) == 0:
		return errors.New("the prompt is empty (the first completion token needs at least one token of context)")
	case len(it.Completion) == 0:
		return errors.New("the completion is empty")
	case len(it.Prompt)+len(it.Completion)-1 > cfg.MaxPositionEmbeddings:
		return fmt.Errorf("prompt (%d tokens) + completion (%d tokens) exceed max_position_embeddings=%d", len(it.Prompt), len(it.Completion), cfg.MaxPositionEmbeddings)
	}
	for _, part := range []struct {
		name string
		ids  []int32
	}{{"prompt", it.Prompt}, {"completion", it.Completion}} {
		for i, id := range part.ids {
			if id < 0 || int(id) >= cfg.VocabSize {
				return fmt.Errorf("%s token %d at index %d is outside the vocabulary [0,%d)", part.name, id, i, cfg.VocabSize)
			}
		}
	}
	return nil
}

// Score scores the items in order, calling progress (may be nil) with the number done.
func (s *Scorer) Score(ctx context.Context, items []ScoreItem, progress func(done int)) ([]Score, error) {
	for i, it := range items {
		if err := s.Check(it); err != nil {
			return nil, fmt.Errorf("scorer: item %d: %w", i, err)
		}
	}
	out := make([]Score, len(items))
	for lo := 0; lo < len(items); lo += s.maxB {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hi := min(lo+s.maxB, len(items))
		if err := s.scoreBatch(items[lo:hi], out[lo:hi]); err != nil {
			return nil, fmt.Errorf("scorer: items %d-%d: %w", lo, hi-1, err)
		}
		if progress != nil {
			progress(hi)
		}
	}
	return out, nil
}

// scoreBatch runs one forward pass over rows padded to the longest; padding sits after
// each row's tokens, where causal attention keeps it from affecting them, and is not
// scored.
func (s *Scorer) scoreBatch(items []ScoreItem, out []Score) error {
	T := 0
	for _, it := range items {
		T = max(T, len(it.Prompt)+len(it.Completion)-1)
	}
	B := len(items)
	b := &s.b
	b.B, b.T = B, T
	b.Tokens = resize(b.Tokens, B*T)
	b.Targets = resize(b.Targets, B*T)
	for r, it := range items {
		row, tgt := b.Tokens[r*T:(r+1)*T], b.Targets[r*T:(r+1)*T]
		n := len(it.Prompt) + len(it.Completion) - 1
		for i := range T {
			row[i], tgt[i] = 0, -1
			if i < n {
				row[i] = at(it, i)
				if i >= len(it.Prompt)-1 {
					tgt[i] = at(it, i+1)
				}
			}
		}
	}
	if err := s.m.Forward(s.ws, b); err != nil {
		return err
	}
	for r, it := range items {
		lp := make([]float32, len(it.Completion))
		var sum float64
		for i := range lp {
			lp[i] = s.ws.LogProbs[r*T+len(it.Prompt)-1+i]
			sum += float64(lp[i])
		}
		out[r] = Score{LogProb: sum, TokenLogProbs: lp}
	}
	return nil
}

// at is token i of prompt followed by completion.
func at(it ScoreItem, i int) int32 {
	if i < len(it.Prompt) {
		return it.Prompt[i]
	}
	return it.Completion[i-len(it.Prompt)]
}

func resize(s []int32, n int) []int32 {
	if cap(s) < n {
		return make([]int32, n)
	}
	return s[:n]
}
