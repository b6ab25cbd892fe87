package dpo

import (
	"context"
	"errors"
	"fmt"

	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/transformer"
)

// Options are the objective and scoring settings shared by training and evaluation.
type Options struct {
	// Objective is beta, the NLL coefficient and its normalisation.
	Objective objectives.DPOOptions
	// MaskFormatting leaves formatting tokens out of both log-ratios (Llama 3).
	MaskFormatting bool
	// Batch is the number of pairs per forward pass (2*Batch sequences).
	Batch int
	// CacheDir, when set, stores the reference log-probs as refcache-<key>.json.
	CacheDir string
	// Progress, when set, is called by Evaluate after each batch of pairs scored by the
	// reference (phase "reference") and by the policy (phase "policy").
	Progress func(phase string, done, total int)
}

// DefaultOptions is the Llama 3 recipe: beta 0.1, NLL coefficient 0.2 with the
// per-sequence mean, formatting tokens masked.
func DefaultOptions() Options {
	return Options{Objective: objectives.DefaultDPOOptions(), MaskFormatting: true, Batch: 4}
}

// EvalResult is the DPO metrics of a policy against a reference, averaged over pairs.
type EvalResult struct {
	objectives.DPOMetrics
	// RefCache tells whether the reference log-probs came from the cache.
	RefCache CacheInfo `json:"ref_cache"`
}

// Evaluate computes loss, dpo_loss, nll_loss, rewards, margin, accuracy and log-probs of
// policy against reference over pairs, without training.
func Evaluate(ctx context.Context, policy, reference *transformer.Model, pairs []Pair, opts Options) (EvalResult, error) {
	obj, err := objectives.NewDPO(opts.Objective)
	if err != nil {
		return EvalResult{}, fmt.Errorf("dpo: %w", err)
	}
	if err := checkModel(policy, "policy"); err != nil {
		return EvalResult{}, err
	}
	if len(pairs) == 0 {
		return EvalResult{}, errors.New("dpo: evaluate: no pairs")
	}
	if opts.Batch < 1 {
		return EvalResult{}, fmt.Errorf("dpo: batch must be >= 1, got %d", opts.Batch)
	}
	if err := CheckPairs(pairs, policy.Config); err != nil {
		return EvalResult{}, err
	}
	ref, info, err := referenceLogProbs(ctx, reference, pairs, opts.MaskFormatting, opts.Batch, opts.CacheDir, opts.progress("reference"))
	if err != nil {
		return EvalResult{}, err
	}
	batch := min(opts.Batch, len(pairs))
	m, err := evaluate(ctx, newScorer(policy, batch, maxWidth(pairs)), obj, pairs, ref, opts.MaskFormatting, batch, opts.progress("policy"))
	return EvalResult{DPOMetrics: m, RefCache: info}, err
}

// progress adapts Progress to one phase; nil when unset.
func (o Options) progress(phase string) func(done, total int) {
	if o.Progress == nil {
		return nil
	}
	return func(done, total int) { o.Progress(phase, done, total) }
}

// evaluate scores pairs in order with s (built for batch pairs) and combines the batches.
func evaluate(ctx context.Context, s *scorer, obj *objectives.DPO, pairs []Pair, ref RefLogProbs, mask bool, batch int, progress func(done, total int)) (objectives.DPOMetrics, error) {
	var parts []objectives.DPOMetrics
	c, r := make([]Sums, batch), make([]Sums, batch)
	idx := make([]int, 0, batch)
	for lo := 0; lo < len(pairs); lo += batch {
		if err := ctx.Err(); err != nil {
			return objectives.DPOMetrics{}, err
		}
		idx = idx[:0]
		for i := lo; i < min(lo+batch, len(pairs)); i++ {
			idx = append(idx, i)
		}
		if err := s.forward(pairs, idx, mask, c, r); err != nil {
			return objectives.DPOMetrics{}, fmt.Errorf("dpo: policy: %w", err)
		}
		res, err := obj.Eval(objBatch(pairs, idx, c, r, ref))
		if err != nil {
			return objectives.DPOMetrics{}, fmt.Errorf("dpo: pairs %d-%d: %w", lo+1, lo+len(idx), err)
		}
		parts = append(parts, res.DPOMetrics)
		if progress != nil {
			progress(lo+len(idx), len(pairs))
		}
	}
	return obj.Combine(parts...), nil
}

// objBatch assembles the objective's per-sequence inputs for pairs idx.
func objBatch(pairs []Pair, idx []int, c, r []Sums, ref RefLogProbs) objectives.DPOBatch {
	n := len(idx)
	b := objectives.DPOBatch{PolicyChosen: make([]float64, n), PolicyRejected: make([]float64, n),
		ReferenceChosen: make([]float64, n), ReferenceRejected: make([]float64, n),
		PolicyChosenAll: make([]float64, n), ChosenTokens: make([]int, n)}
	for k, i := range idx {
		b.PolicyChosen[k], b.PolicyRejected[k] = c[k].Masked, r[k].Masked
		b.ReferenceChosen[k], b.ReferenceRejected[k] = ref.Chosen[i], ref.Rejected[i]
		b.PolicyChosenAll[k] = c[k].All
		b.ChosenTokens[k] = len(pairs[i].Chosen)
	}
	return b
}
