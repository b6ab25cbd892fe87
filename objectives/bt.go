package objectives

import (
	"fmt"
	"math"
	"strings"
	"sync"

	"gorgonia.org/gorgonia"
)

// Pair says rewards[Better] should exceed rewards[Worse] by at least Margin.
// Indices refer to one rewards vector, so each response is scored once and a
// ranked row simply contributes more pairs.
type Pair struct {
	// Better and Worse index the rewards vector.
	Better, Worse int
	// Margin is subtracted inside the sigmoid (Llama 2); 0, the zero value,
	// is Llama 3's choice.
	Margin float64
	// Row groups the pairs of one preference row; only PairWeighting
	// WeightPerRow reads it.
	Row int
}

// RankedPairs expands one row's responses, listed best first, into all
// ordered pairs (i before j in the list means i is better): a plain pair
// (chosen, rejected) gives 1 pair, a Llama 3 triple (edited, chosen,
// rejected) gives (edited>chosen), (edited>rejected), (chosen>rejected).
// Every pair gets the same margin and the given row.
func RankedPairs(row int, margin float64, ranked ...int) ([]Pair, error) {
	if len(ranked) < 2 {
		return nil, fmt.Errorf("ranked pairs for row %d: need at least 2 responses, got %d", row, len(ranked))
	}
	seen := make(map[int]bool, len(ranked))
	for _, r := range ranked {
		if seen[r] {
			return nil, fmt.Errorf("ranked pairs for row %d: response index %d listed twice", row, r)
		}
		seen[r] = true
	}
	pairs := make([]Pair, 0, len(ranked)*(len(ranked)-1)/2)
	for i := range ranked {
		for j := i + 1; j < len(ranked); j++ {
			pairs = append(pairs, Pair{Better: ranked[i], Worse: ranked[j], Margin: margin, Row: row})
		}
	}
	return pairs, nil
}

// Rating is an annotator's preference strength, as collected for Llama 2.
type Rating string

// The four Llama 2 preference strengths ("negligibly better / unsure" is one
// level; RatingUnsure is an alias accepted by the margin tables).
const (
	RatingSignificantlyBetter Rating = "significantly better"
	RatingBetter              Rating = "better"
	RatingSlightlyBetter      Rating = "slightly better"
	RatingNegligiblyBetter    Rating = "negligibly better"
	RatingUnsure              Rating = "unsure"
)

// ParseRating accepts a rating name, case-insensitively, with '_' or '-' for
// spaces, and "negligibly better / unsure" for the lowest level.
func ParseRating(s string) (Rating, error) {
	norm := strings.ToLower(strings.TrimSpace(s))
	norm = strings.NewReplacer("_", " ", "-", " ").Replace(norm)
	norm = strings.Join(strings.Fields(norm), " ")
	switch norm {
	case string(RatingSignificantlyBetter):
		return RatingSignificantlyBetter, nil
	case string(RatingBetter):
		return RatingBetter, nil
	case string(RatingSlightlyBetter):
		return RatingSlightlyBetter, nil
	case string(RatingNegligiblyBetter), "negligibly better / unsure", "negligibly better/unsure":
		return RatingNegligiblyBetter, nil
	case string(RatingUnsure):
		return RatingUnsure, nil
	}
	return "", fmt.Errorf("unknown preference rating %q (want significantly better, better, slightly better, negligibly better or unsure)", s)
}

// Llama2Margin is the "margin small" table of Llama 2 (Touvron et al. 2023,
// table 28): significantly better 1, better 2/3, slightly better 1/3,
// negligibly better/unsure 0.
func Llama2Margin(r Rating) (float64, error) {
	return marginFromTable(r, [4]float64{1, 2.0 / 3.0, 1.0 / 3.0, 0})
}

// Llama2MarginLarge is the "margin large" table of the same paper: 3, 2, 1, 0.
func Llama2MarginLarge(r Rating) (float64, error) {
	return marginFromTable(r, [4]float64{3, 2, 1, 0})
}

func marginFromTable(r Rating, t [4]float64) (float64, error) {
	switch r {
	case RatingSignificantlyBetter:
		return t[0], nil
	case RatingBetter:
		return t[1], nil
	case RatingSlightlyBetter:
		return t[2], nil
	case RatingNegligiblyBetter, RatingUnsure:
		return t[3], nil
	}
	return 0, fmt.Errorf("no margin for preference rating %q", r)
}

// PairWeighting says how pairs are weighted in the batch loss.
type PairWeighting string

const (
	// WeightPerPair gives every pair weight 1/P (P pairs in the batch): the
	// loss is the plain mean over all pairs, so a ranked triple, which adds 3
	// pairs, counts three times as much as a plain chosen/rejected row. The
	// default, and the "averaged over all ordered pairs" of the notes.
	WeightPerPair PairWeighting = "per-pair"
	// WeightPerRow gives every row (Pair.Row) total weight 1/rows, split
	// evenly over its pairs: a triple's 3 pairs get 1/3 each (InstructGPT's
	// 1/C(K,2) normalisation).
	WeightPerRow PairWeighting = "per-row"
)

// BTOptions configures the Bradley-Terry reward-model loss.
type BTOptions struct {
	// CenteringCoef is eta in + eta * weighted mean of (r_better + r_worse)^2
	// (Eisenstein et al. 2023); 0, the default, turns centering off.
	CenteringCoef float64
	// Weighting is WeightPerPair (default when empty) or WeightPerRow.
	Weighting PairWeighting
}

func (o BTOptions) withDefaults() BTOptions {
	if o.Weighting == "" {
		o.Weighting = WeightPerPair
	}
	return o
}

func (o BTOptions) validate() error {
	if err := checkParam("bradley-terry centering coefficient", o.CenteringCoef, 0, false); err != nil {
		return err
	}
	if o.Weighting != WeightPerPair && o.Weighting != WeightPerRow {
		return fmt.Errorf("bradley-terry weighting %q: want %q or %q", o.Weighting, WeightPerPair, WeightPerRow)
	}
	return nil
}

// BTResult is one evaluation of the Bradley-Terry loss.
type BTResult struct {
	// Loss = BTLoss + CenteringCoef * Centering; the value that is differentiated.
	Loss float64 `json:"loss"`
	// BTLoss = sum_p w_p * -log sigmoid(r_better - r_worse - margin).
	BTLoss float64 `json:"bt_loss"`
	// Centering = sum_p w_p * (r_better + r_worse)^2 (reported even when eta is 0).
	Centering float64 `json:"centering"`
	// Accuracy is the fraction of pairs with r_better > r_worse (unweighted).
	Accuracy float64 `json:"accuracy"`
	// MeanMargin is the mean of r_better - r_worse over pairs (unweighted,
	// margins not subtracted).
	MeanMargin float64 `json:"mean_margin"`
	// Pairs is the number of pairs.
	Pairs int `json:"pairs"`
	// Rows is the number of distinct Pair.Row values.
	Rows int `json:"rows"`
	// Grad[k] = dLoss / drewards[k]; zero for rewards in no pair.
	Grad []float64 `json:"-"`
}

// Graph input names of the Bradley-Terry objective.
const (
	inBetter  = "r_better"    // P: rewards[pairs[p].Better]
	inWorse   = "r_worse"     // P: rewards[pairs[p].Worse]
	inMargins = "margins"     // P
	inWeights = "pair_weight" // P, sums to 1
	outBT     = "bt_loss"
	outCenter = "centering"
)

// BradleyTerry evaluates the pairwise reward-model loss over one rewards
// vector. The graph works on per-pair rewards (r_better, r_worse), gathered
// from the rewards vector by index; gorgonia differentiates the loss with
// respect to them, and the gather's adjoint (a scatter-add) folds those
// gradients back onto each response, summing over every pair it appears in.
// Cost is O(pairs). Graphs are compiled once per number of pairs and reused.
// Safe for concurrent use (calls are serialised).
type BradleyTerry struct {
	opts  BTOptions
	mu    sync.Mutex
	progs map[int]*program
}

// NewBradleyTerry validates opts and returns an evaluator.
func NewBradleyTerry(opts BTOptions) (*BradleyTerry, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &BradleyTerry{opts: opts, progs: make(map[int]*program)}, nil
}

// Options returns the evaluator's options with defaults filled in.
func (bt *BradleyTerry) Options() BTOptions { return bt.opts }

// Eval computes the loss, its gradient with respect to every reward, and the
// pair metrics.
func (bt *BradleyTerry) Eval(rewards []float64, pairs []Pair) (BTResult, error) {
	if err := validatePairs(rewards, pairs); err != nil {
		return BTResult{}, err
	}
	np := len(pairs)
	better := make([]float64, np)
	worse := make([]float64, np)
	margins := make([]float64, np)
	for i, p := range pairs {
		better[i], worse[i], margins[i] = rewards[p.Better], rewards[p.Worse], p.Margin
	}
	weights := pairWeights(pairs, bt.opts.Weighting)

	bt.mu.Lock()
	defer bt.mu.Unlock()
	prog, err := bt.program(np)
	if err != nil {
		return BTResult{}, err
	}
	for _, s := range []struct {
		name string
		vals []float64
	}{{inBetter, better}, {inWorse, worse}, {inMargins, margins}, {inWeights, weights}} {
		if err := prog.set(s.name, s.vals); err != nil {
			return BTResult{}, fmt.Errorf("bradley-terry: %w", err)
		}
	}
	if err := prog.run(); err != nil {
		return BTResult{}, fmt.Errorf("bradley-terry: %w", err)
	}

	res := BTResult{Pairs: np, Rows: countRows(pairs)}
	if res.Loss, err = prog.value("cost"); err != nil {
		return BTResult{}, fmt.Errorf("bradley-terry: %w", err)
	}
	if res.BTLoss, err = prog.value(outBT); err != nil {
		return BTResult{}, fmt.Errorf("bradley-terry: %w", err)
	}
	if res.Centering, err = prog.value(outCenter); err != nil {
		return BTResult{}, fmt.Errorf("bradley-terry: %w", err)
	}
	gBetter, err := prog.grad(inBetter)
	if err != nil {
		return BTResult{}, fmt.Errorf("bradley-terry: %w", err)
	}
	gWorse, err := prog.grad(inWorse)
	if err != nil {
		return BTResult{}, fmt.Errorf("bradley-terry: %w", err)
	}
	res.Grad = make([]float64, len(rewards))
	correct := 0
	for i, p := range pairs {
		res.Grad[p.Better] += gBetter[i]
		res.Grad[p.Worse] += gWorse[i]
		d := better[i] - worse[i]
		if d > 0 {
			correct++
		}
		res.MeanMargin += d
	}
	res.Accuracy = float64(correct) / float64(np)
	res.MeanMargin /= float64(np)
	return res, nil
}

// Combine merges the results of batches evaluated with bt into the result of
// their union, as if it had been one batch (rows must not span batches):
// Loss, BTLoss and Centering are weighted by Pairs (WeightPerPair) or Rows
// (WeightPerRow), Accuracy and MeanMargin by Pairs. Grad is left nil.
func (bt *BradleyTerry) Combine(parts ...BTResult) BTResult {
	var out BTResult
	for _, p := range parts {
		out.Pairs += p.Pairs
		out.Rows += p.Rows
	}
	if out.Pairs == 0 {
		return BTResult{}
	}
	for _, p := range parts {
		wp := float64(p.Pairs) / float64(out.Pairs)
		wl := wp
		if bt.opts.Weighting == WeightPerRow {
			wl = float64(p.Rows) / float64(out.Rows)
		}
		out.Loss += wl * p.Loss
		out.BTLoss += wl * p.BTLoss
		out.Centering += wl * p.Centering
		out.Accuracy += wp * p.Accuracy
		out.MeanMargin += wp * p.MeanMargin
	}
	return out
}

func countRows(pairs []Pair) int {
	rows := make(map[int]struct{}, len(pairs))
	for _, p := range pairs {
		rows[p.Row] = struct{}{}
	}
	return len(rows)
}

func (bt *BradleyTerry) program(np int) (*program, error) {
	if p, ok := bt.progs[np]; ok {
		return p, nil
	}
	p, err := buildBT(bt.opts, np)
	if err != nil {
		return nil, fmt.Errorf("bradley-terry: build graph for %d pairs: %w", np, err)
	}
	bt.progs[np] = p
	return p, nil
}

// buildBT writes the objective as a gorgonia expression over the per-pair
// rewards rb, rw, margins m and weights w:
//
//	bt     = w · softplus(-(rb - rw - m))   = sum_p w_p * -log sigmoid(rb_p - rw_p - m_p)
//	center = w · (rb + rw)^2                = sum_p w_p * (rb_p + rw_p)^2
//	cost   = bt + eta * center
func buildBT(o BTOptions, np int) (*program, error) {
	b := newBuilder()
	rb := b.vector(inBetter, np)
	rw := b.vector(inWorse, np)
	margins := b.vector(inMargins, np)
	weights := b.vector(inWeights, np)

	btLoss := b.dot(weights, b.negLogSigmoid(b.sub(b.sub(rb, rw), margins)))
	center := b.dot(weights, b.square(b.add(rb, rw)))
	cost := btLoss
	if o.CenteringCoef > 0 {
		cost = b.add(btLoss, b.scale(o.CenteringCoef, center))
	}
	return b.compile(cost, map[string]*gorgonia.Node{outBT: btLoss, outCenter: center}, []string{inBetter, inWorse})
}

func validatePairs(rewards []float64, pairs []Pair) error {
	if len(rewards) == 0 {
		return fmt.Errorf("bradley-terry: rewards is empty")
	}
	if len(pairs) == 0 {
		return fmt.Errorf("bradley-terry: pairs is empty: need at least one pair")
	}
	if err := checkFinite("rewards", rewards); err != nil {
		return fmt.Errorf("bradley-terry: %w", err)
	}
	for i, p := range pairs {
		switch {
		case p.Better < 0 || p.Better >= len(rewards):
			return fmt.Errorf("bradley-terry: pairs[%d].Better = %d: out of range [0, %d)", i, p.Better, len(rewards))
		case p.Worse < 0 || p.Worse >= len(rewards):
			return fmt.Errorf("bradley-terry: pairs[%d].Worse = %d: out of range [0, %d)", i, p.Worse, len(rewards))
		case p.Better == p.Worse:
			return fmt.Errorf("bradley-terry: pairs[%d] compares response %d with itself", i, p.Better)
		case math.IsNaN(p.Margin) || math.IsInf(p.Margin, 0):
			return fmt.Errorf("bradley-terry: pairs[%d].Margin = %v: must be finite", i, p.Margin)
		case p.Row < 0:
			return fmt.Errorf("bradley-terry: pairs[%d].Row = %d: must be >= 0", i, p.Row)
		}
	}
	return nil
}

// pairWeights returns weights summing to 1 per the weighting option.
func pairWeights(pairs []Pair, w PairWeighting) []float64 {
	out := make([]float64, len(pairs))
	if w == WeightPerRow {
		perRow := make(map[int]int)
		for _, p := range pairs {
			perRow[p.Row]++
		}
		rows := float64(len(perRow))
		for i, p := range pairs {
			out[i] = 1 / (rows * float64(perRow[p.Row]))
		}
		return out
	}
	for i := range out {
		out[i] = 1 / float64(len(pairs))
	}
	return out
}
