package sft

import (
	"context"
	"fmt"
	"math"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/transformer"
)

// EvalBatch is the number of examples Evaluate runs per forward pass.
const EvalBatch = 8

// EvalResult is the loss of a model on a set of examples.
type EvalResult struct {
	// N is the number of examples and Tokens the number of scored target tokens.
	N      int `json:"n"`
	Tokens int `json:"tokens"`
	// Loss is the mean negative log-likelihood per target token (token-weighted over all
	// examples, the same normalisation as training) and Perplexity its exp.
	Loss       float64 `json:"loss"`
	Perplexity float64 `json:"perplexity"`
	// MeanExampleLoss is the mean over examples of each example's per-token loss.
	MeanExampleLoss float64 `json:"mean_example_loss"`
}

// Evaluate computes the target-token loss of m on rows without training. Rows are
// checked like training rows; errors name the offending row.
func Evaluate(ctx context.Context, m *transformer.Model, rows []datasets.EncodedSFT) (EvalResult, error) {
	return EvaluateWithProgress(ctx, m, rows, nil)
}

// EvaluateWithProgress is Evaluate calling progress(done, total) after each batch of
// examples (for progress bars on long evaluations).
func EvaluateWithProgress(ctx context.Context, m *transformer.Model, rows []datasets.EncodedSFT, progress func(done, total int)) (EvalResult, error) {
	if err := checkModel(m); err != nil {
		return EvalResult{}, err
	}
	if len(rows) == 0 {
		return EvalResult{}, fmt.Errorf("sft: evaluate: no examples")
	}
	if err := CheckRows(rows, m.Config); err != nil {
		return EvalResult{}, err
	}
	l := unpackedLayout(rows)
	maxT := 1
	for _, w := range l.width {
		maxT = max(maxT, w)
	}
	e := newEvaluator(m, rows, l, min(EvalBatch, len(l.groups)), maxT)
	e.progress = progress
	return e.run(ctx)
}

// evaluator runs forward passes over a layout and sums per-example log-probs.
type evaluator struct {
	m      *transformer.Model
	rows   []datasets.EncodedSFT
	l      layout
	ws     *transformer.Workspace
	batch  *transformer.Batch
	groups []int
	maxB   int
	maxT   int
	// progress, when set, gets the examples done after each batch.
	progress func(done, total int)
}

func newEvaluator(m *transformer.Model, rows []datasets.EncodedSFT, l layout, maxB, maxT int) *evaluator {
	return &evaluator{m: m, rows: rows, l: l, ws: m.NewWorkspace(maxB, maxT), batch: newBatch(maxB, maxT),
		groups: make([]int, 0, maxB), maxB: maxB, maxT: maxT}
}

// run evaluates every group in order and sums each example's target-token NLL.
func (e *evaluator) run(ctx context.Context) (EvalResult, error) {
	nll := make([]float64, len(e.rows))
	tokens := make([]int, len(e.rows))
	for lo := 0; lo < len(e.l.groups); lo += e.maxB {
		if err := ctx.Err(); err != nil {
			return EvalResult{}, err
		}
		e.groups = e.groups[:0]
		for g := lo; g < min(lo+e.maxB, len(e.l.groups)); g++ {
			e.groups = append(e.groups, g)
		}
		t := e.l.maxWidth(e.groups)
		fillBatch(e.batch, e.rows, e.l, e.groups, t)
		if err := e.m.Forward(e.ws, e.batch); err != nil {
			return EvalResult{}, fmt.Errorf("sft: evaluate: %w", err)
		}
		for r, g := range e.groups {
			p := r * t
			for _, ex := range e.l.groups[g] {
				for j := 1; j < len(e.rows[ex].IDs); j++ {
					if e.batch.Targets[p] >= 0 {
						nll[ex] -= float64(e.ws.LogProbs[p])
						tokens[ex]++
					}
					p++
				}
			}
		}
		if e.progress != nil {
			e.progress(min(lo+e.maxB, len(e.l.groups)), len(e.l.groups))
		}
	}
	res := EvalResult{N: len(e.rows)}
	var sum float64
	for i := range nll {
		sum += nll[i]
		res.Tokens += tokens[i]
		res.MeanExampleLoss += nll[i] / float64(tokens[i])
	}
	res.Loss = sum / float64(res.Tokens)
	res.MeanExampleLoss /= float64(res.N)
	res.Perplexity = math.Exp(res.Loss)
	return res, nil
}

// checkModel rejects a model that cannot score tokens.
func checkModel(m *transformer.Model) error {
	switch {
	case m == nil || m.W == nil:
		return fmt.Errorf("sft: nil model")
	case m.Pool == nil:
		return fmt.Errorf("sft: model has no kernel pool")
	case m.Config.IsSequenceClassifier():
		return fmt.Errorf("sft: the model is a %s; SFT needs a causal LM", transformer.ArchSequenceClassifier)
	}
	return nil
}
