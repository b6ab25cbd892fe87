package inference

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// Request asks for Samples completions of one prompt.
type Request struct {
	Prompt  []int32
	Samples int
	Params  Params
}

// Finish reasons of a Completion.
const (
	FinishStop   = "stop"   // a stop token was drawn (and is the last token)
	FinishLength = "length" // MaxNewTokens were generated
)

// Completion is one sample's generated tokens.
type Completion struct {
	Tokens []int32 `json:"tokens"`
	// LogProbs are the tokens' log-probabilities when Params.LogProbs is set.
	LogProbs     []float32 `json:"logprobs,omitempty"`
	FinishReason string    `json:"finish_reason"`
}

// live is one sample being decoded.
type live struct {
	req, sample int
	seq         *Sequence
	rng         *rand.Rand
	params      *Params
	out         *Completion
	fresh       bool // its next logits are its prefix's (no token fed yet)
}

// Generate samples req.Samples completions of one prompt; see GenerateBatch.
func (e *Engine) Generate(ctx context.Context, req Request) ([]Completion, error) {
	out, err := e.GenerateBatch(ctx, []Request{req}, nil)
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// validate checks a request before any work starts.
func (e *Engine) validate(i int, r *Request) error {
	if r.Samples <= 0 {
		return fmt.Errorf("request %d: samples must be > 0, got %d", i, r.Samples)
	}
	if len(r.Prompt) == 0 {
		return fmt.Errorf("request %d: empty prompt", i)
	}
	if err := r.Params.Validate(e.d.vocab); err != nil {
		return fmt.Errorf("request %d: %w", i, err)
	}
	if len(r.Prompt)+r.Params.MaxNewTokens > e.d.maxPos {
		return fmt.Errorf("request %d: prompt of %d tokens + max_new_tokens %d exceeds max_position_embeddings=%d", i, len(r.Prompt), r.Params.MaxNewTokens, e.d.maxPos)
	}
	if err := e.checkTokens(r.Prompt, "prompt token"); err != nil {
		return fmt.Errorf("request %d: %w", i, err)
	}
	return nil
}

// GenerateBatch samples every request's completions, decoding up to MaxBatch sequences
// together. Each prompt is prefilled once, when its first sample starts, and its cache is
// shared by all its samples; requests start in order as rows free up. progress (may be
// nil) is called as samples finish with (finished, total).
func (e *Engine) GenerateBatch(ctx context.Context, reqs []Request, progress func(done, total int)) ([][]Completion, error) {
	total := 0
	for i := range reqs {
		if err := e.validate(i, &reqs[i]); err != nil {
			return nil, fmt.Errorf("inference: %w", err)
		}
		total += reqs[i].Samples
	}
	results := make([][]Completion, len(reqs))
	prefixes := make([]*Prefix, len(reqs))
	active := make([]*live, 0, e.maxBatch)
	seqs := make([]*Sequence, 0, e.maxBatch)
	feed := make([]int32, 0, e.maxBatch)
	e.ensureSampleState()
	// On any exit, return cache memory to the engine.
	defer func() {
		for _, lv := range active {
			e.ReleaseSequence(lv.seq)
		}
		for _, p := range prefixes {
			if p != nil {
				_ = e.ReleasePrefix(p)
			}
		}
	}()
	nextReq, nextSample, done := 0, 0, 0
	var logits []float32
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		// Admit new samples into free rows, prefilling their prompt on first use.
		for len(active) < e.maxBatch && nextReq < len(reqs) {
			r := &reqs[nextReq]
			if prefixes[nextReq] == nil {
				p, err := e.Prefill(ctx, r.Prompt)
				if err != nil {
					return nil, fmt.Errorf("inference: request %d: %w", nextReq, err)
				}
				prefixes[nextReq] = p
				results[nextReq] = make([]Completion, r.Samples)
				e.stats.PrefillTokensSaved += int64((r.Samples - 1) * len(r.Prompt))
			}
			seq, err := e.NewSequence(prefixes[nextReq], r.Params.MaxNewTokens-1)
			if err != nil {
				return nil, fmt.Errorf("inference: request %d: %w", nextReq, err)
			}
			out := &results[nextReq][nextSample]
			out.Tokens = make([]int32, 0, r.Params.MaxNewTokens)
			if r.Params.LogProbs {
				out.LogProbs = make([]float32, 0, r.Params.MaxNewTokens)
			}
			active = append(active, &live{
				req: nextReq, sample: nextSample, seq: seq, params: &r.Params, out: out, fresh: true,
				rng: rand.New(rand.NewPCG(r.Params.Seed, uint64(nextSample))),
			})
			if nextSample++; nextSample == r.Samples {
				nextReq, nextSample = nextReq+1, 0
			}
		}
		if len(active) == 0 {
			break
		}
		// Draw one token per live sample, in parallel over rows.
		start := time.Now()
		st := &e.sample
		k := 0 // index into logits rows of the last Decode
		for i, lv := range active {
			if lv.fresh {
				st.rows[i] = lv.seq.prefix.logits
				lv.fresh = false
			} else {
				st.rows[i] = logits[k*e.d.vocab : (k+1)*e.d.vocab]
				k++
			}
			st.params[i], st.rngs[i] = lv.params, lv.rng
		}
		e.par(opSample, len(active))
		e.stats.SampleTime += time.Since(start)
		e.stats.SampledTokens += int64(len(active))
		// Record tokens, retire finished samples, and feed the rest.
		kept := active[:0]
		seqs, feed = seqs[:0], feed[:0]
		for i, lv := range active {
			if err := st.errs[i]; err != nil {
				return nil, fmt.Errorf("inference: request %d sample %d step %d: %w", lv.req, lv.sample, len(lv.out.Tokens), err)
			}
			tok := st.tokens[i]
			lv.out.Tokens = append(lv.out.Tokens, tok)
			if lv.params.LogProbs {
				lv.out.LogProbs = append(lv.out.LogProbs, st.logp[i])
			}
			switch {
			case isStop(tok, lv.params.StopTokens):
				lv.out.FinishReason = FinishStop
			case len(lv.out.Tokens) >= lv.params.MaxNewTokens:
				lv.out.FinishReason = FinishLength
			default:
				kept = append(kept, lv)
				seqs = append(seqs, lv.seq)
				feed = append(feed, tok)
				continue
			}
			p := lv.seq.prefix
			e.ReleaseSequence(lv.seq)
			if p.refs == 0 && (lv.req < nextReq) {
				_ = e.ReleasePrefix(p)
				prefixes[lv.req] = nil
			}
			done++
			if progress != nil {
				progress(done, total)
			}
		}
		clear(active[len(kept):])
		active = kept
		if len(active) == 0 {
			continue
		}
		var err error
		if logits, err = e.Decode(seqs, feed); err != nil {
			return nil, fmt.Errorf("inference: %w", err)
		}
	}
	return results, nil
}

func isStop(tok int32, stops []int32) bool {
	for _, s := range stops {
		if tok == s {
			return true
		}
	}
	return false
}

// ensureSampleState sizes the per-row sampling state once.
func (e *Engine) ensureSampleState() {
	st := &e.sample
	if len(st.tokens) == e.maxBatch {
		return
	}
	st.rows = make([][]float32, e.maxBatch)
	st.params = make([]*Params, e.maxBatch)
	st.rngs = make([]*rand.Rand, e.maxBatch)
	st.tokens = make([]int32, e.maxBatch)
	st.logp = make([]float32, e.maxBatch)
	st.errs = make([]error, e.maxBatch)
}
