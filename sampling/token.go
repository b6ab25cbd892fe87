package sampling

import (
	"errors"
	"fmt"
	"math"

	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/kernels/nn"
)

// Params are the per-token sampling controls. They mirror inference.Params; this package
// drives decode steps itself (admission by memory, batches packing several prompts) and
// draws with its own tokenSampler (see there for why not inference.TokenSampler).
type Params struct {
	// Temperature divides the logits before softmax; 0 means greedy (argmax).
	Temperature float64 `json:"temperature"`
	// TopK keeps the K most likely tokens (0 = off).
	TopK int `json:"top_k,omitempty"`
	// TopP keeps the smallest set of most likely tokens whose probability reaches TopP,
	// after temperature and top-k (0 or 1 = off).
	TopP float64 `json:"top_p,omitempty"`
	// MaxNewTokens bounds each sample's length (> 0).
	MaxNewTokens int `json:"max_new_tokens"`
	// StopTokens end a sample when drawn; the stop token is kept as its last token.
	StopTokens []int32 `json:"stop_tokens,omitempty"`
}

// validate checks p against a vocabulary size, naming the bad field.
func (p *Params) validate(vocab int) error {
	switch {
	case p.MaxNewTokens <= 0:
		return fmt.Errorf("max_new_tokens must be > 0, got %d", p.MaxNewTokens)
	case p.Temperature < 0 || math.IsNaN(p.Temperature) || math.IsInf(p.Temperature, 0):
		return fmt.Errorf("temperature must be a finite number >= 0, got %g", p.Temperature)
	case p.TopK < 0:
		return fmt.Errorf("top_k must be >= 0, got %d", p.TopK)
	case !(p.TopP >= 0 && p.TopP <= 1):
		return fmt.Errorf("top_p must be in [0, 1], got %g", p.TopP)
	}
	for i, t := range p.StopTokens {
		if t < 0 || int(t) >= vocab {
			return fmt.Errorf("stop token %d (stop_tokens[%d]) is outside the vocabulary [0,%d)", t, i, vocab)
		}
	}
	return nil
}

func (p *Params) isStop(tok int32) bool {
	for _, s := range p.StopTokens {
		if s == tok {
			return true
		}
	}
	return false
}

// errNonFinite reports logits with NaN or +Inf, or all -Inf.
var errNonFinite = errors.New("non-finite logits")

// tokenSampler draws tokens from logits; its scratch is sized to the vocabulary so a
// draw allocates nothing. One sampler serves one goroutine. Its top-k and top-p
// selection are inference's; it is not inference.TokenSampler because that one sums the
// full-vocabulary weights in float32 (nn.ExpShift's total) where this one sums them in
// float64, and the two totals differ in the last bits: the same seed would then draw a
// different token in roughly 1 of 1,000 full-vocabulary draws, changing the candidates
// that earlier runs (and resumed or sharded runs mixing versions) produced.
type tokenSampler struct {
	w   []float32 // unnormalised probabilities
	idx []int32   // candidate token ids
}

func newTokenSampler(vocab int) *tokenSampler {
	return &tokenSampler{w: make([]float32, vocab), idx: make([]int32, vocab)}
}

// draw returns a token from logits under p given a uniform u in [0,1). Greedy, top-k
// and top-p all run in expected linear time in the vocabulary (selection, not sorting):
// sorting 4k-128k logits per token would cost as much as the decode step itself.
func (s *tokenSampler) draw(logits []float32, p *Params, u float64) (int32, error) {
	best, mx := int32(-1), float32(math.Inf(-1))
	for i, v := range logits {
		if v != v || v > math.MaxFloat32 {
			return -1, errNonFinite
		}
		if v > mx {
			best, mx = int32(i), v
		}
	}
	if best < 0 {
		return -1, errNonFinite
	}
	if p.Temperature == 0 || p.TopK == 1 {
		return best, nil
	}
	cand := s.idx[:len(logits)]
	for i := range cand {
		cand[i] = int32(i)
	}
	if p.TopK > 0 && p.TopK < len(cand) {
		inference.SelectTop(cand, logits, p.TopK)
		cand = cand[:p.TopK]
	}
	inv := float32(1 / p.Temperature)
	var total float64
	if len(cand) == len(logits) {
		// The whole vocabulary: one vectorised pass of e^((l-max)/T).
		nn.ExpShift(s.w[:len(logits)], logits, inv, -mx*inv)
		for _, e := range s.w[:len(logits)] {
			total += float64(e)
		}
	} else {
		for _, i := range cand {
			e := nn.Exp32((logits[i] - mx) * inv)
			s.w[i] = e
			total += float64(e)
		}
	}
	if p.TopP > 0 && p.TopP < 1 {
		cand = cand[:inference.Nucleus(cand, s.w, p.TopP*total)]
		total = 0
		for _, i := range cand {
			total += float64(s.w[i])
		}
	}
	target := u * total
	var acc float64
	for _, i := range cand {
		acc += float64(s.w[i])
		if acc > target {
			return i, nil
		}
	}
	return cand[len(cand)-1], nil
}
