package sampling

import (
	"context"
	"errors"
	"fmt"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/transformer"
)

// PrefixScorer scores with a reward model through the KV-cached inference engine, so
// each distinct prompt of a Score call runs through the model once and its cache is
// shared by all its responses, which are then fed token by token, all together. For K
// samples of a P-token prompt and N-token responses it computes P + K*N positions where
// a plain forward pass (reward.Scorer) computes K*(P+N).
//
// The engine serves causal LMs, so the scorer gives it a view of the reward model whose
// LM head holds the score head in row 0 (and zeros elsewhere): logit 0 after a
// sequence's final token is its reward. The rest of that head's product is wasted work,
// vocab x hidden per fed token, small next to the prompt recomputation it saves.
//
// Rewards match reward.Scorer's to float32 rounding (the engine sums in another
// order). It is not safe for concurrent use.
type PrefixScorer struct {
	eng    *inference.Engine
	vocab  int
	maxLen int
	seqs   []*inference.Sequence
	feed   []int32
	rows   []int
}

// NewPrefixScorer prepares a scorer for the reward model rm (a sequence classifier),
// decoding up to maxBatch responses per step (0: DefaultMaxBatch). The engine copies
// rm's weights: build a new scorer after rm changes.
func NewPrefixScorer(rm *transformer.Model, maxBatch int) (*PrefixScorer, error) {
	switch {
	case rm == nil || rm.W == nil:
		return nil, errors.New("prefix scorer: nil reward model")
	case !rm.Config.IsSequenceClassifier() || rm.W.Score == nil:
		return nil, fmt.Errorf("prefix scorer: the reward model is a %v, not a %s", rm.Config.Architectures, transformer.ArchSequenceClassifier)
	}
	if maxBatch <= 0 {
		maxBatch = DefaultMaxBatch
	}
	cfg := rm.Config
	cfg.Architectures = []string{transformer.ArchCausalLM}
	cfg.NumLabels = 0
	cfg.TieWordEmbeddings = false
	head := make([]float32, cfg.VocabSize*cfg.HiddenSize)
	copy(head, rm.W.Score)
	view := &transformer.Model{Config: cfg, Pool: rm.Pool,
		W: &transformer.Params{Embed: rm.W.Embed, Layers: rm.W.Layers, Norm: rm.W.Norm, LMHead: head}}
	eng, err := inference.NewEngine(view, inference.Options{MaxBatch: maxBatch})
	if err != nil {
		return nil, fmt.Errorf("prefix scorer: %w", err)
	}
	return &PrefixScorer{eng: eng, vocab: cfg.VocabSize, maxLen: cfg.MaxPositionEmbeddings}, nil
}

// KVBytesPerToken is the cache size of one scored position; Score holds at most one
// prompt plus its responses at a time, which Sampler counts against its KV budget.
func (s *PrefixScorer) KVBytesPerToken() int64 { return s.eng.KVBytesPerToken() }

// MaxLen is the longest prompt+response the scorer accepts (the context window).
func (s *PrefixScorer) MaxLen() int { return s.maxLen }

// Score returns every sequence's reward, in input order. Each distinct prompt is
// prefilled once; then the responses of all prompts are fed together, a token per
// step, MaxBatch rows per decode call. The caches of all prompts and responses of the
// call are held at once (KVBytesPerToken each).
func (s *PrefixScorer) Score(ctx context.Context, seqs []datasets.Sequence) ([]float64, error) {
	groups := map[string][]int{}
	var order []string
	for i, q := range seqs {
		if len(q.Prompt) == 0 || q.Len() > s.maxLen {
			return nil, fmt.Errorf("prefix scorer: sequence %d has a %d-token prompt and %d tokens in all (want a prompt and at most %d)", i, len(q.Prompt), q.Len(), s.maxLen)
		}
		k := tokensKey(q.Prompt)
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	out := make([]float64, len(seqs))
	var prefixes []*inference.Prefix
	live := make([]*inference.Sequence, len(seqs))
	defer func() {
		for _, q := range live {
			if q != nil {
				s.eng.ReleaseSequence(q)
			}
		}
		for _, p := range prefixes {
			_ = s.eng.ReleasePrefix(p)
		}
	}()
	// rows lists the sequences with a response, grouped by prompt (the engine reads a
	// shared prefix once per run of adjacent rows).
	rows := make([]int, 0, len(seqs))
	longest := 0
	for _, k := range order {
		idx := groups[k]
		pre, err := s.eng.Prefill(ctx, seqs[idx[0]].Prompt)
		if err != nil {
			return nil, fmt.Errorf("prefix scorer: %w", err)
		}
		prefixes = append(prefixes, pre)
		for _, i := range idx {
			resp := seqs[i].Response
			if len(resp) == 0 {
				out[i] = float64(pre.Logits()[0]) // the prompt's final token is the sequence's
				continue
			}
			q, err := s.eng.NewSequence(pre, len(resp))
			if err != nil {
				return nil, fmt.Errorf("prefix scorer: sequence %d: %w", i, err)
			}
			live[i] = q
			rows = append(rows, i)
			longest = max(longest, len(resp))
		}
	}
	mb := s.eng.MaxBatch()
	for t := range longest {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		s.rows = s.rows[:0]
		for _, i := range rows {
			if t < len(seqs[i].Response) {
				s.rows = append(s.rows, i)
			}
		}
		for lo := 0; lo < len(s.rows); lo += mb {
			chunk := s.rows[lo:min(lo+mb, len(s.rows))]
			s.seqs, s.feed = s.seqs[:0], s.feed[:0]
			for _, i := range chunk {
				s.seqs = append(s.seqs, live[i])
				s.feed = append(s.feed, seqs[i].Response[t])
			}
			logits, err := s.eng.Decode(s.seqs, s.feed)
			if err != nil {
				return nil, fmt.Errorf("prefix scorer: %w", err)
			}
			for r, i := range chunk {
				if t == len(seqs[i].Response)-1 {
					out[i] = float64(logits[r*s.vocab])
				}
			}
		}
	}
	return out, nil
}
