package objectives

import (
	"fmt"
	"strings"
	"sync"

	"gorgonia.org/gorgonia"
)

// NLLNorm names how the NLL term on chosen responses is normalised. The
// frameworks disagree (see the package comment), so it is an explicit option.
type NLLNorm string

const (
	// NLLPerSequenceMean averages each row's per-token NLL, then averages over
	// rows: mean_i(-sum_t logp_it / n_i). Pang et al. 2024 and OpenRLHF; the default.
	NLLPerSequenceMean NLLNorm = "per-sequence-mean"
	// NLLBatchTokenMean averages over all chosen tokens of the batch:
	// -sum_i sum_t logp_it / sum_i n_i. TRL's choice.
	NLLBatchTokenMean NLLNorm = "batch-token-mean"
	// NLLPerSequenceSum averages each row's summed NLL over rows:
	// mean_i(-sum_t logp_it). NeMo's default.
	NLLPerSequenceSum NLLNorm = "per-sequence-sum"
)

// NLLNorms lists the accepted normalisations, default first.
func NLLNorms() []NLLNorm {
	return []NLLNorm{NLLPerSequenceMean, NLLBatchTokenMean, NLLPerSequenceSum}
}

// ParseNLLNorm accepts one of the names of NLLNorms (case-insensitive).
func ParseNLLNorm(s string) (NLLNorm, error) {
	for _, n := range NLLNorms() {
		if strings.EqualFold(strings.TrimSpace(s), string(n)) {
			return n, nil
		}
	}
	names := make([]string, 0, 3)
	for _, n := range NLLNorms() {
		names = append(names, string(n))
	}
	return "", fmt.Errorf("unknown NLL normalisation %q (want one of %s)", s, strings.Join(names, ", "))
}

// String returns the option's name.
func (n NLLNorm) String() string { return string(n) }

// DPOOptions configures the DPO + NLL objective.
type DPOOptions struct {
	// Beta scales the log-ratio difference inside the sigmoid; must be > 0.
	Beta float64
	// NLLCoef weights the NLL term on chosen responses; 0 turns it off (its
	// value is still reported).
	NLLCoef float64
	// NLLNorm selects the NLL normalisation; empty means NLLPerSequenceMean.
	NLLNorm NLLNorm
}

// DefaultDPOOptions is the Llama 3 recipe: beta 0.1, NLL coefficient 0.2,
// per-sequence-mean normalisation.
func DefaultDPOOptions() DPOOptions {
	return DPOOptions{Beta: 0.1, NLLCoef: 0.2, NLLNorm: NLLPerSequenceMean}
}

func (o DPOOptions) withDefaults() DPOOptions {
	if o.NLLNorm == "" {
		o.NLLNorm = NLLPerSequenceMean
	}
	return o
}

func (o DPOOptions) validate() error {
	if err := checkParam("dpo beta", o.Beta, 0, true); err != nil {
		return err
	}
	if err := checkParam("dpo nll coefficient", o.NLLCoef, 0, false); err != nil {
		return err
	}
	if _, err := ParseNLLNorm(string(o.NLLNorm)); err != nil {
		return fmt.Errorf("dpo nll normalisation: %w", err)
	}
	return nil
}

// DPOBatch holds the per-sequence quantities of one batch, one entry per row.
// Log-probs are sums of token log-probs of the response given the prompt.
type DPOBatch struct {
	// PolicyChosen is the policy's log-prob of the chosen response, summed
	// over its unmasked tokens (formatting tokens excluded by the caller).
	PolicyChosen []float64
	// PolicyRejected is the same for the rejected response.
	PolicyRejected []float64
	// ReferenceChosen is the frozen reference's log-prob of the chosen
	// response over the same unmasked tokens as PolicyChosen.
	ReferenceChosen []float64
	// ReferenceRejected is the same for the rejected response.
	ReferenceRejected []float64
	// PolicyChosenAll is the policy's log-prob of the chosen response summed
	// over all its tokens, formatting tokens included (the NLL term).
	PolicyChosenAll []float64
	// ChosenTokens counts the tokens summed in PolicyChosenAll; each must be > 0.
	ChosenTokens []int
}

// Len is the number of rows (the length of PolicyChosen).
func (b DPOBatch) Len() int { return len(b.PolicyChosen) }

func (b DPOBatch) validate() error {
	n := len(b.PolicyChosen)
	if n == 0 {
		return fmt.Errorf("dpo batch: PolicyChosen is empty: need at least one row")
	}
	fields := []struct {
		name string
		vals []float64
	}{
		{"PolicyChosen", b.PolicyChosen},
		{"PolicyRejected", b.PolicyRejected},
		{"ReferenceChosen", b.ReferenceChosen},
		{"ReferenceRejected", b.ReferenceRejected},
		{"PolicyChosenAll", b.PolicyChosenAll},
	}
	for _, f := range fields {
		if len(f.vals) != n {
			return fmt.Errorf("dpo batch: %s has %d rows, PolicyChosen has %d", f.name, len(f.vals), n)
		}
		if err := checkFinite(f.name, f.vals); err != nil {
			return fmt.Errorf("dpo batch: %w", err)
		}
	}
	if len(b.ChosenTokens) != n {
		return fmt.Errorf("dpo batch: ChosenTokens has %d rows, PolicyChosen has %d", len(b.ChosenTokens), n)
	}
	for i, c := range b.ChosenTokens {
		if c <= 0 {
			return fmt.Errorf("dpo batch: ChosenTokens[%d] = %d: the chosen response must have at least one token", i, c)
		}
	}
	return nil
}

// DPOMetrics are the batch's losses and the metrics TRL users know, averaged
// over rows; N and ChosenTokens let callers combine batches.
type DPOMetrics struct {
	// N is the number of rows.
	N int `json:"n"`
	// Loss = DPOLoss + NLLCoef * NLLLoss.
	Loss float64 `json:"loss"`
	// DPOLoss = mean_i -log sigmoid(beta * (logr_chosen_i - logr_rejected_i)).
	DPOLoss float64 `json:"dpo_loss"`
	// NLLLoss is the normalised NLL of the chosen responses (all tokens).
	NLLLoss float64 `json:"nll_loss"`
	// RewardsChosen = mean_i beta * (PolicyChosen_i - ReferenceChosen_i).
	RewardsChosen float64 `json:"rewards_chosen"`
	// RewardsRejected = mean_i beta * (PolicyRejected_i - ReferenceRejected_i).
	RewardsRejected float64 `json:"rewards_rejected"`
	// Margin = RewardsChosen - RewardsRejected.
	Margin float64 `json:"margin"`
	// Accuracy is the fraction of rows whose chosen reward is strictly greater.
	Accuracy float64 `json:"accuracy"`
	// LogpsChosen is the mean policy log-prob of the chosen response over its
	// unmasked tokens (TRL's logps/chosen).
	LogpsChosen float64 `json:"logps_chosen"`
	// LogpsRejected is the same for the rejected response.
	LogpsRejected float64 `json:"logps_rejected"`
	// ChosenTokens is the total number of chosen tokens in the NLL term.
	ChosenTokens int `json:"chosen_tokens"`
}

// DPOResult is one evaluation: losses, metrics, and the gradient of Loss with
// respect to each per-sequence policy input (the reference is frozen).
type DPOResult struct {
	DPOMetrics
	// GradPolicyChosen[i] = dLoss / dPolicyChosen[i].
	GradPolicyChosen []float64
	// GradPolicyRejected[i] = dLoss / dPolicyRejected[i].
	GradPolicyRejected []float64
	// GradPolicyChosenAll[i] = dLoss / dPolicyChosenAll[i] (zero when NLLCoef is 0).
	GradPolicyChosenAll []float64
}

// Graph input and output names of the DPO objective.
const (
	inPolicyChosen    = "policy_chosen"
	inPolicyRejected  = "policy_rejected"
	inRefChosen       = "reference_chosen"
	inRefRejected     = "reference_rejected"
	inPolicyChosenAll = "policy_chosen_all"
	inChosenTokens    = "chosen_tokens"
	outDPO            = "dpo_loss"
	outNLL            = "nll_loss"
)

// DPO evaluates the DPO + NLL objective. It compiles one graph per batch size
// on first use and re-binds new values on every later call. Safe for
// concurrent use (calls are serialised).
type DPO struct {
	opts  DPOOptions
	mu    sync.Mutex
	progs map[int]*program
}

// NewDPO validates opts and returns an evaluator.
func NewDPO(opts DPOOptions) (*DPO, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	return &DPO{opts: opts, progs: make(map[int]*program)}, nil
}

// Options returns the evaluator's options with defaults filled in.
func (d *DPO) Options() DPOOptions { return d.opts }

// Eval computes the loss, metrics and gradients for one batch.
func (d *DPO) Eval(batch DPOBatch) (DPOResult, error) {
	if err := batch.validate(); err != nil {
		return DPOResult{}, err
	}
	n := batch.Len()
	d.mu.Lock()
	defer d.mu.Unlock()
	p, err := d.program(n)
	if err != nil {
		return DPOResult{}, err
	}
	tokens := make([]float64, n)
	total := 0
	for i, c := range batch.ChosenTokens {
		tokens[i] = float64(c)
		total += c
	}
	sets := []struct {
		name string
		vals []float64
	}{
		{inPolicyChosen, batch.PolicyChosen},
		{inPolicyRejected, batch.PolicyRejected},
		{inRefChosen, batch.ReferenceChosen},
		{inRefRejected, batch.ReferenceRejected},
		{inPolicyChosenAll, batch.PolicyChosenAll},
	}
	if d.opts.NLLNorm != NLLPerSequenceSum {
		sets = append(sets, struct {
			name string
			vals []float64
		}{inChosenTokens, tokens})
	}
	for _, s := range sets {
		if err := p.set(s.name, s.vals); err != nil {
			return DPOResult{}, fmt.Errorf("dpo: %w", err)
		}
	}
	if err := p.run(); err != nil {
		return DPOResult{}, fmt.Errorf("dpo: %w", err)
	}
	res := DPOResult{DPOMetrics: dpoMetrics(d.opts.Beta, batch)}
	res.ChosenTokens = total
	if res.Loss, err = p.value("cost"); err != nil {
		return DPOResult{}, fmt.Errorf("dpo: %w", err)
	}
	if res.DPOLoss, err = p.value(outDPO); err != nil {
		return DPOResult{}, fmt.Errorf("dpo: %w", err)
	}
	if res.NLLLoss, err = p.value(outNLL); err != nil {
		return DPOResult{}, fmt.Errorf("dpo: %w", err)
	}
	if res.GradPolicyChosen, err = p.grad(inPolicyChosen); err != nil {
		return DPOResult{}, fmt.Errorf("dpo: %w", err)
	}
	if res.GradPolicyRejected, err = p.grad(inPolicyRejected); err != nil {
		return DPOResult{}, fmt.Errorf("dpo: %w", err)
	}
	if d.opts.NLLCoef > 0 {
		if res.GradPolicyChosenAll, err = p.grad(inPolicyChosenAll); err != nil {
			return DPOResult{}, fmt.Errorf("dpo: %w", err)
		}
	} else {
		res.GradPolicyChosenAll = make([]float64, n)
	}
	return res, nil
}

// program returns the compiled graph for batch size n, building it once.
func (d *DPO) program(n int) (*program, error) {
	if p, ok := d.progs[n]; ok {
		return p, nil
	}
	p, err := buildDPO(d.opts, n)
	if err != nil {
		return nil, fmt.Errorf("dpo: build graph for batch size %d: %w", n, err)
	}
	d.progs[n] = p
	return p, nil
}

// buildDPO writes the objective as a gorgonia expression:
//
//	logits = beta * ((pc - rc) - (pr - rr))
//	dpo    = mean(softplus(-logits))            = mean(-log sigmoid(logits))
//	nll    = per the normalisation, over all chosen tokens
//	cost   = dpo + coef * nll
func buildDPO(o DPOOptions, n int) (*program, error) {
	b := newBuilder()
	pc := b.vector(inPolicyChosen, n)
	pr := b.vector(inPolicyRejected, n)
	rc := b.vector(inRefChosen, n)
	rr := b.vector(inRefRejected, n)
	pall := b.vector(inPolicyChosenAll, n)

	logits := b.scale(o.Beta, b.sub(b.sub(pc, rc), b.sub(pr, rr)))
	dpo := b.mean(b.negLogSigmoid(logits))

	var nll = b.neg(pall) // per-row summed NLL
	switch o.NLLNorm {
	case NLLPerSequenceMean:
		nll = b.mean(b.div(nll, b.vector(inChosenTokens, n)))
	case NLLBatchTokenMean:
		nll = b.div(b.sum(nll), b.sum(b.vector(inChosenTokens, n)))
	case NLLPerSequenceSum:
		nll = b.mean(nll)
	default:
		return nil, fmt.Errorf("unknown NLL normalisation %q", o.NLLNorm)
	}

	cost := dpo
	wrt := []string{inPolicyChosen, inPolicyRejected}
	if o.NLLCoef > 0 {
		cost = b.add(dpo, b.scale(o.NLLCoef, nll))
		wrt = append(wrt, inPolicyChosenAll)
	}
	return b.compile(cost, map[string]*gorgonia.Node{outDPO: dpo, outNLL: nll}, wrt)
}

// Combine merges the metrics of batches evaluated with d into the metrics of
// their union, exactly as if it had been one batch: per-row means are
// weighted by N, and the batch-token-mean NLL by ChosenTokens. Use it for
// evaluation over many batches and for logging accumulated steps.
func (d *DPO) Combine(parts ...DPOMetrics) DPOMetrics {
	var out DPOMetrics
	for _, p := range parts {
		out.N += p.N
		out.ChosenTokens += p.ChosenTokens
	}
	if out.N == 0 {
		return DPOMetrics{}
	}
	for _, p := range parts {
		w := float64(p.N) / float64(out.N)
		out.DPOLoss += w * p.DPOLoss
		out.RewardsChosen += w * p.RewardsChosen
		out.RewardsRejected += w * p.RewardsRejected
		out.Accuracy += w * p.Accuracy
		out.LogpsChosen += w * p.LogpsChosen
		out.LogpsRejected += w * p.LogpsRejected
		if d.opts.NLLNorm == NLLBatchTokenMean {
			w = float64(p.ChosenTokens) / float64(out.ChosenTokens)
		}
		out.NLLLoss += w * p.NLLLoss
	}
	out.Margin = out.RewardsChosen - out.RewardsRejected
	out.Loss = out.DPOLoss + d.opts.NLLCoef*out.NLLLoss
	return out
}

// dpoMetrics computes the reward metrics in plain float64: they are not
// differentiated, and the comparison for accuracy has no gradient anyway.
func dpoMetrics(beta float64, b DPOBatch) DPOMetrics {
	n := b.Len()
	m := DPOMetrics{N: n}
	correct := 0
	for i := 0; i < n; i++ {
		rc := beta * (b.PolicyChosen[i] - b.ReferenceChosen[i])
		rr := beta * (b.PolicyRejected[i] - b.ReferenceRejected[i])
		m.RewardsChosen += rc
		m.RewardsRejected += rr
		if rc > rr {
			correct++
		}
		m.LogpsChosen += b.PolicyChosen[i]
		m.LogpsRejected += b.PolicyRejected[i]
	}
	fn := float64(n)
	m.RewardsChosen /= fn
	m.RewardsRejected /= fn
	m.Margin = m.RewardsChosen - m.RewardsRejected
	m.Accuracy = float64(correct) / fn
	m.LogpsChosen /= fn
	m.LogpsRejected /= fn
	return m
}
