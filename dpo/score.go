package dpo

import (
	"fmt"

	"github.com/posttrain/posttrain/transformer"
)

// Sums are one response's summed log-probs: over its unmasked tokens (the log-ratio
// part) and over all its tokens (the NLL part).
type Sums struct {
	Masked float64
	All    float64
}

// scorer lays pairs out as batch rows (row 2i the chosen sequence of pair i, row 2i+1
// its rejected one, each prompt + response) and sums the response tokens' log-probs.
type scorer struct {
	m     *transformer.Model
	ws    *transformer.Workspace
	batch transformer.Batch
	t     int // width of the current batch
	// forwards counts forward passes, so tests can see the reference run once.
	forwards int
}

// maxWidth is the longest prompt + response of pairs, in positions (tokens - 1).
func maxWidth(pairs []Pair) int {
	w := 1
	for _, p := range pairs {
		w = max(w, len(p.Prompt)+max(len(p.Chosen), len(p.Rejected))-1)
	}
	return w
}

func newScorer(m *transformer.Model, maxPairs, maxT int) *scorer {
	n := 2 * maxPairs * maxT
	return &scorer{m: m, ws: m.NewWorkspace(2*maxPairs, maxT),
		batch: transformer.Batch{Tokens: make([]int32, n), Targets: make([]int32, n)}}
}

// fill writes sequence prompt+resp as row r of width t: inputs are every token but the
// last, targets are -1 over the prompt and the next token over the response.
func fillRow(b *transformer.Batch, r, t int, prompt, resp []int32) {
	tok, tg := b.Tokens[r*t:(r+1)*t], b.Targets[r*t:(r+1)*t]
	np := len(prompt)
	for p := 0; p < t; p++ {
		tok[p], tg[p] = 0, -1
		switch {
		case p < np:
			tok[p] = prompt[p]
		case p-np < len(resp):
			tok[p] = resp[p-np]
		}
		if j := p - (np - 1); j >= 0 && j < len(resp) {
			tg[p] = resp[j]
		}
	}
}

// forward runs the model on the pairs idx of pairs and returns each one's chosen and
// rejected sums. With mask false every token counts as unmasked.
func (s *scorer) forward(pairs []Pair, idx []int, mask bool, chosen, rejected []Sums) error {
	t := 1
	for _, i := range idx {
		t = max(t, maxWidth(pairs[i:i+1]))
	}
	n := 2 * len(idx)
	s.t = t
	s.batch.B, s.batch.T = n, t
	s.batch.Tokens = s.batch.Tokens[:cap(s.batch.Tokens)][:n*t]
	s.batch.Targets = s.batch.Targets[:cap(s.batch.Targets)][:n*t]
	for k, i := range idx {
		p := pairs[i]
		fillRow(&s.batch, 2*k, t, p.Prompt, p.Chosen)
		fillRow(&s.batch, 2*k+1, t, p.Prompt, p.Rejected)
	}
	if err := s.m.Forward(s.ws, &s.batch); err != nil {
		return fmt.Errorf("forward: %w", err)
	}
	s.forwards++
	lp := s.ws.LogProbs
	sum := func(r int, prompt, resp []int32, fmtMask []bool) Sums {
		var out Sums
		base := r*t + len(prompt) - 1
		for j := range resp {
			v := float64(lp[base+j])
			out.All += v
			if !mask || !fmtMask[j] {
				out.Masked += v
			}
		}
		return out
	}
	for k, i := range idx {
		p := pairs[i]
		chosen[k] = sum(2*k, p.Prompt, p.Chosen, p.ChosenFmt)
		rejected[k] = sum(2*k+1, p.Prompt, p.Rejected, p.RejectedFmt)
	}
	return nil
}

// dOut writes the per-token gradient dL/dlogp of the last forward into out (len B*T):
// chosen tokens get gAll plus gChosen when unmasked, rejected tokens gRejected when
// unmasked, and every other position 0.
func (s *scorer) dOut(out []float32, pairs []Pair, idx []int, mask bool, gChosen, gRejected, gAll []float64) []float32 {
	t := s.t
	if n := 2 * len(idx) * t; cap(out) < n {
		out = make([]float32, n)
	} else {
		out = out[:n]
		clear(out)
	}
	for k, i := range idx {
		p := pairs[i]
		base := 2*k*t + len(p.Prompt) - 1
		for j := range p.Chosen {
			g := gAll[k]
			if !mask || !p.ChosenFmt[j] {
				g += gChosen[k]
			}
			out[base+j] = float32(g)
		}
		base = (2*k+1)*t + len(p.Prompt) - 1
		for j := range p.Rejected {
			if !mask || !p.RejectedFmt[j] {
				out[base+j] = float32(gRejected[k])
			}
		}
	}
	return out
}
