package demotask

import (
	"math/rand/v2"
	"strings"
)

// Rating is the strength of a preference, in Llama 2's four levels.
type Rating string

// The rating levels, strongest first.
const (
	SignificantlyBetter Rating = "significantly_better"
	Better              Rating = "better"
	SlightlyBetter      Rating = "slightly_better"
	NegligiblyBetter    Rating = "negligibly_better"
)

// Preference is one annotation: chosen over rejected, and, when both responses were
// wrong, an edited, correct response ranked above both (edited > chosen > rejected).
type Preference struct {
	Chosen   string `json:"chosen"`
	Rejected string `json:"rejected"`
	Edited   string `json:"edited,omitempty"`
	Rating   Rating `json:"rating"`
}

// AnnotatorOptions tune the simulated annotator.
type AnnotatorOptions struct {
	// Noise is the probability of swapping the preference at random.
	Noise float64
	// LengthBias is the probability of preferring the longer response when both are
	// equally correct, modelling a known annotator bias (0 prefers concise ones).
	LengthBias float64
	// Edit, when set, makes the annotator write a correct response when both are wrong.
	Edit bool
}

// Annotator is the simulated annotator of the demo: it prefers correct answers, and
// between two equally correct ones the better formatted and more concise one.
type Annotator struct {
	opts AnnotatorOptions
	rng  *rand.Rand
}

// NewAnnotator returns a deterministic annotator for the seed.
func NewAnnotator(opts AnnotatorOptions, seed uint64) *Annotator {
	return &Annotator{opts: opts, rng: rand.New(rand.NewPCG(seed, 0xa11ce))}
}

// formatScore is higher for tidier responses: no surrounding space, no repetition.
func formatScore(s string) int {
	score := 0
	if s == strings.TrimSpace(s) {
		score++
	}
	if s != "" && !HasTailRepetition(s) {
		score++
	}
	return score
}

// HasTailRepetition reports whether the response ends by repeating a short piece three or
// more times, the failure mode DPO's formatting-token masking is meant to prevent.
func HasTailRepetition(s string) bool {
	if f := strings.Fields(s); len(f) >= 3 && f[len(f)-1] == f[len(f)-2] && f[len(f)-2] == f[len(f)-3] {
		return true
	}
	r := []rune(s)
	for unit := 1; unit <= 8 && 3*unit <= len(r); unit++ {
		a := string(r[len(r)-unit:])
		b := string(r[len(r)-2*unit : len(r)-unit])
		c := string(r[len(r)-3*unit : len(r)-2*unit])
		if a == b && b == c {
			return true
		}
	}
	return false
}

// Compare annotates two responses to the item. ok is false when the two are the same text
// (there is nothing to prefer).
func (a *Annotator) Compare(it Item, x, y string) (p Preference, ok bool) {
	if x == y {
		return Preference{}, false
	}
	cx, cy := it.Correct(x), it.Correct(y)
	var first bool // true: x is preferred
	rating := Better
	switch {
	case cx != cy:
		first, rating = cx, SignificantlyBetter
	case formatScore(x) != formatScore(y):
		first, rating = formatScore(x) > formatScore(y), SlightlyBetter
	default:
		longer := len(x) > len(y)
		if a.rng.Float64() < a.opts.LengthBias {
			first = longer
		} else {
			first = !longer
		}
		rating = NegligiblyBetter
		if len(x) == len(y) {
			first = x < y
		}
	}
	if a.rng.Float64() < a.opts.Noise {
		first = !first
	}
	if first {
		p = Preference{Chosen: x, Rejected: y, Rating: rating}
	} else {
		p = Preference{Chosen: y, Rejected: x, Rating: rating}
	}
	if a.opts.Edit && !cx && !cy {
		p.Edited = it.Answer
	}
	return p, true
}
