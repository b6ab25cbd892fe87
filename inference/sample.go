package inference

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/posttrain/posttrain/kernels/nn"
)

// Params control how tokens are drawn and when a sample ends.
type Params struct {
	// MaxNewTokens bounds the tokens generated per sample (> 0). The prompt length plus
	// MaxNewTokens must not exceed max_position_embeddings.
	MaxNewTokens int `json:"max_new_tokens"`
	// Greedy takes the most likely token at every step (Temperature 0 does the same).
	Greedy bool `json:"greedy,omitempty"`
	// Temperature divides the logits before softmax (> 0, 1 = the model's distribution).
	Temperature float64 `json:"temperature"`
	// TopK keeps only the K most likely tokens (0 = off).
	TopK int `json:"top_k,omitempty"`
	// TopP keeps the smallest set of most likely tokens whose probability reaches TopP
	// (nucleus sampling; 0 or 1 = off). Applied after temperature and top-k, as Hugging
	// Face does.
	TopP float64 `json:"top_p,omitempty"`
	// StopTokens end a sample when drawn (e.g. <|eot_id|>, <|end_of_text|>); the stop
	// token is included in the completion.
	StopTokens []int32 `json:"stop_tokens,omitempty"`
	// Seed seeds each sample's RNG together with the sample's index, so the same seed
	// gives the same completions whatever else is decoded in the same batch.
	Seed uint64 `json:"seed"`
	// LogProbs records each generated token's log-probability under the model's own
	// distribution (temperature 1, no top-k/top-p).
	LogProbs bool `json:"logprobs,omitempty"`
}

// greedy reports whether sampling is deterministic argmax.
func (p *Params) greedy() bool { return p.Greedy || p.Temperature == 0 }

// Validate checks the parameters against a vocabulary size, naming the bad field.
func (p *Params) Validate(vocab int) error {
	switch {
	case p.MaxNewTokens <= 0:
		return fmt.Errorf("sampling: max_new_tokens must be > 0, got %d", p.MaxNewTokens)
	case p.Temperature < 0 || math.IsNaN(p.Temperature) || math.IsInf(p.Temperature, 0):
		return fmt.Errorf("sampling: temperature must be a finite number >= 0, got %g", p.Temperature)
	case p.TopK < 0:
		return fmt.Errorf("sampling: top_k must be >= 0, got %d", p.TopK)
	case p.TopP < 0 || p.TopP > 1 || math.IsNaN(p.TopP):
		return fmt.Errorf("sampling: top_p must be in [0, 1], got %g", p.TopP)
	}
	for i, t := range p.StopTokens {
		if t < 0 || int(t) >= vocab {
			return fmt.Errorf("sampling: stop token %d (index %d) is outside the vocabulary [0,%d)", t, i, vocab)
		}
	}
	return nil
}

// errNonFinite marks logits holding NaN or +Inf.
var errNonFinite = errors.New("non-finite logits")

// sampleToken draws one token from logits under p, given a uniform u in [0,1). probs and
// idx are vocab-sized scratch. It allocates nothing.
func sampleToken(logits []float32, p *Params, u float64, probs []float32, idx []int32) (int32, error) {
	best, mx := int32(0), float32(math.Inf(-1))
	for i, v := range logits {
		if v != v || v > math.MaxFloat32 {
			return -1, errNonFinite
		}
		if v > mx {
			best, mx = int32(i), v
		}
	}
	if math.IsInf(float64(mx), -1) {
		return -1, errNonFinite
	}
	if p.greedy() || p.TopK == 1 {
		return best, nil
	}
	cand := idx[:len(logits)]
	for i := range cand {
		cand[i] = int32(i)
	}
	invT := float32(1 / p.Temperature)
	var sum float64
	if p.TopK > 0 && p.TopK < len(cand) {
		selectTop(cand, logits, p.TopK)
		cand = cand[:p.TopK]
		for _, i := range cand {
			e := nn.Exp32((logits[i] - mx) * invT)
			probs[i] = e
			sum += float64(e)
		}
	} else {
		// Every token is a candidate: one vectorised pass.
		sum = float64(nn.ExpShift(probs[:len(logits)], logits, invT, -mx*invT))
	}
	if p.TopP > 0 && p.TopP < 1 {
		cand = cand[:nucleus(cand, probs, p.TopP*sum)]
		sum = 0
		for _, i := range cand {
			sum += float64(probs[i])
		}
	}
	target := u * sum
	var acc float64
	for _, i := range cand {
		acc += float64(probs[i])
		if acc > target {
			return i, nil
		}
	}
	return cand[len(cand)-1], nil
}

// logProb is log softmax(logits)[tok]; scratch (len(logits)) is overwritten.
func logProb(logits []float32, tok int32, scratch []float32) float32 {
	mx := float32(math.Inf(-1))
	for _, v := range logits {
		mx = max(mx, v)
	}
	s := nn.ExpShift(scratch[:len(logits)], logits, 1, -mx)
	return logits[tok] - mx - float32(math.Log(float64(s)))
}

// median3 returns the median of the keys at the ends and middle of idx.
func median3(idx []int32, key []float32) float32 {
	a, b, c := key[idx[0]], key[idx[len(idx)/2]], key[idx[len(idx)-1]]
	if a > b {
		a, b = b, a
	}
	if b > c {
		b = c
	}
	return max(a, b)
}

// partition3 reorders idx into keys > pv, == pv, < pv and returns the two boundaries.
func partition3(idx []int32, key []float32, pv float32) (gt, lt int) {
	i, hi := 0, len(idx)
	for i < hi {
		switch v := key[idx[i]]; {
		case v > pv:
			idx[gt], idx[i] = idx[i], idx[gt]
			gt++
			i++
		case v < pv:
			hi--
			idx[i], idx[hi] = idx[hi], idx[i]
		default:
			i++
		}
	}
	return gt, hi
}

// selectTop reorders idx so that idx[:k] hold the k largest keys (in no particular
// order), in expected linear time. Deterministic for a given input.
func selectTop(idx []int32, key []float32, k int) {
	lo, hi := 0, len(idx)
	for hi-lo > 1 {
		a, b := partition3(idx[lo:hi], key, median3(idx[lo:hi], key))
		a, b = a+lo, b+lo
		switch {
		case k <= a:
			hi = a
		case k <= b:
			return
		default:
			lo = b
		}
	}
}

// nucleus reorders idx and returns m such that idx[:m] is the smallest set of largest
// weights whose sum reaches target (at least one element), in expected linear time.
func nucleus(idx []int32, w []float32, target float64) int {
	lo, hi := 0, len(idx)
	need := target
	for hi-lo > 1 {
		a, b := partition3(idx[lo:hi], w, median3(idx[lo:hi], w))
		a, b = a+lo, b+lo
		var gt float64
		for _, i := range idx[lo:a] {
			gt += float64(w[i])
		}
		if gt >= need {
			hi = a
			continue
		}
		need -= gt
		for j := a; j < b; j++ {
			need -= float64(w[idx[j]])
			if need <= 0 {
				return j + 1
			}
		}
		lo = b
	}
	return max(hi, 1)
}

// SelectTop reorders idx so that idx[:k] hold the indices of the k largest keys (in no
// particular order), in expected linear time; the same input always gives the same order.
// It is the top-k step of TokenSampler, for callers with their own sampling loop.
func SelectTop(idx []int32, key []float32, k int) { selectTop(idx, key, k) }

// Nucleus reorders idx and returns m such that idx[:m] is the smallest set of largest
// weights w whose sum reaches target (at least one element), in expected linear time.
// It is the top-p step of TokenSampler, for callers with their own sampling loop.
func Nucleus(idx []int32, w []float32, target float64) int { return nucleus(idx, w, target) }

// TokenSampler draws tokens from logits rows with the engine's sampling rules
// (temperature, then top-k, then top-p, from one uniform number per draw). It owns
// vocabulary-sized scratch, so each goroutine needs its own; drawing allocates nothing.
type TokenSampler struct {
	probs []float32
	index []int32
}

// NewTokenSampler returns a sampler for rows of vocab logits.
func NewTokenSampler(vocab int) *TokenSampler {
	return &TokenSampler{probs: make([]float32, vocab), index: make([]int32, vocab)}
}

// Sample draws a token from logits (len == vocab) under p with u uniform in [0,1)
// (greedy ignores u). It fails on NaN or +Inf logits, or when every logit is -Inf.
func (s *TokenSampler) Sample(logits []float32, p *Params, u float64) (int32, error) {
	if len(logits) != len(s.probs) {
		return -1, fmt.Errorf("sampling: %d logits for a vocabulary of %d", len(logits), len(s.probs))
	}
	return sampleToken(logits, p, u, s.probs, s.index)
}

// LogProb is log softmax(logits)[tok], the token's log-probability at temperature 1.
func (s *TokenSampler) LogProb(logits []float32, tok int32) float32 {
	return logProb(logits, tok, s.probs)
}

// sampleState is the per-row input and output of one batched sampling op.
type sampleState struct {
	rows   [][]float32 // logits row per step row
	params []*Params
	rngs   []*rand.Rand
	tokens []int32
	logp   []float32
	errs   []error
}

// sampleRows draws the tokens of rows [lo,hi) (run on the pool).
func (e *Engine) sampleRows(lo, hi int) {
	st := &e.sample
	for r := lo; r < hi; r++ {
		p := st.params[r]
		ts := e.samplers[r]
		tok, err := ts.Sample(st.rows[r], p, st.rngs[r].Float64())
		st.tokens[r], st.errs[r] = tok, err
		if err == nil && p.LogProbs {
			st.logp[r] = ts.LogProb(st.rows[r], tok)
		}
	}
}
