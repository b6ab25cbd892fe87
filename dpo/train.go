package dpo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/transformer"
)

// Config is one DPO run's settings.
type Config struct {
	Options
	Steps int // optimizer updates in total (a resumed run continues up to it)
	Accum int // micro-batches (of Options.Batch pairs) per update

	Schedule trainer.Schedule // PeakLR, WarmupSteps, MinLRRatio, Decay (TotalSteps = Steps)
	AdamW    trainer.AdamWConfig
	Seed     uint64 // seed of the pair order

	// OutDir receives checkpoints (policy + trainer state) every CheckpointEvery updates
	// (0: only at the end), at the end, and on cancellation. Empty means no checkpoints.
	OutDir          string
	CheckpointEvery int
	// Resume continues the run saved in OutDir; the policy argument then only fixes the
	// architecture. The reference must be the same as in the saved run.
	Resume bool
	// TokenizerJSON, when set, is written into every checkpoint.
	TokenizerJSON []byte
	// EvalEvery evaluates the validation pairs every that many updates (0: only before
	// and after training).
	EvalEvery int
}

// DefaultConfig is the Llama 3 objective with a learning rate suited to the small presets.
func DefaultConfig() Config {
	return Config{
		Options: DefaultOptions(),
		Steps:   100, Accum: 1,
		Schedule: trainer.Schedule{PeakLR: 1e-4, WarmupSteps: 10, MinLRRatio: 0.1, Decay: trainer.DecayCosine},
		AdamW:    trainer.DefaultAdamW(),
		Seed:     1,
	}
}

func (c Config) validate() error {
	if err := pretrain.CheckSizes("dpo", c.Steps, c.Batch, c.Accum); err != nil {
		return err
	}
	return pretrain.CheckRunOutput("dpo", c.CheckpointEvery, c.EvalEvery, c.Resume, c.OutDir)
}

// Hooks are Train's optional callbacks.
type Hooks struct {
	// Progress is called after every update (the trainer's callback).
	Progress func(trainer.Progress)
	// Metrics is called after every update with the metrics of its pairs.
	Metrics func(step int, m objectives.DPOMetrics)
	// Eval is called after each validation pass with the update count it followed.
	Eval func(step int, r EvalResult)
}

// Result summarises a finished (or interrupted) run.
type Result struct {
	OutDir    string `json:"out_dir,omitempty"`
	Steps     int    `json:"steps"`
	StartStep int    `json:"start_step"`
	Resumed   bool   `json:"resumed"`
	// First and Final are the metrics of this process's first and last update.
	First *objectives.DPOMetrics `json:"first,omitempty"`
	Final *objectives.DPOMetrics `json:"final,omitempty"`
	// ValBefore and Val are the validation metrics before and after this process's
	// updates (absent without validation pairs).
	ValBefore *EvalResult `json:"val_before,omitempty"`
	Val       *EvalResult `json:"val,omitempty"`
	// RefCache tells how the training pairs' reference log-probs were obtained.
	RefCache    CacheInfo `json:"ref_cache"`
	Pairs       int       `json:"pairs"`
	PairsPerSec float64   `json:"pairs_per_s"`
	ElapsedSec  float64   `json:"elapsed_s"`
	Parameters  int       `json:"parameters"`
}

// Keys of the trainer state's Extra map that a resume checks.
const (
	extraData  = "dpo_pairs_sha256"
	extraRef   = "dpo_reference_key"
	extraBatch = "batch"
	extraAccum = "accum"
	extraObj   = "objective"
)

// Train runs DPO on a copy of policy against the frozen reference (which may be the same
// model: neither argument is modified) and returns the trained policy. Cancelling ctx
// stops between updates after checkpointing, so OutDir then resumes the run exactly.
func Train(ctx context.Context, cfg Config, policy, reference *transformer.Model, train, val []Pair, hooks Hooks) (*transformer.Model, Result, error) {
	res := Result{OutDir: cfg.OutDir, Resumed: cfg.Resume, Pairs: len(train)}
	if err := cfg.validate(); err != nil {
		return nil, res, err
	}
	obj, err := objectives.NewDPO(cfg.Objective)
	if err != nil {
		return nil, res, fmt.Errorf("dpo: %w", err)
	}
	if err := checkModel(policy, "policy"); err != nil {
		return nil, res, err
	}
	if err := checkModel(reference, "reference"); err != nil {
		return nil, res, err
	}
	if err := pretrain.SameShape(policy, reference); err != nil {
		return nil, res, fmt.Errorf("dpo: policy and reference differ: %w", err)
	}
	if len(train) == 0 {
		return nil, res, errors.New("dpo: no training pairs")
	}
	if err := CheckPairs(train, policy.Config); err != nil {
		return nil, res, fmt.Errorf("training data: %w", err)
	}
	if err := CheckPairs(val, policy.Config); err != nil {
		return nil, res, fmt.Errorf("validation data: %w", err)
	}

	stage := pretrain.Stage{Name: "dpo", ResumePrefix: "dpo: resume", Steps: cfg.Steps, Accum: cfg.Accum,
		Schedule: cfg.Schedule, AdamW: cfg.AdamW, Seed: cfg.Seed}
	m, state, err := stage.StartModel(ctx, policy, cfg.OutDir, cfg.Resume, "policy")
	if err != nil {
		return nil, res, err
	}
	res.Parameters = len(m.W.Data)

	// The reference is frozen: its log-probs are computed once for the whole run.
	ref, info, err := referenceLogProbs(ctx, reference, train, cfg.MaskFormatting, cfg.Batch, cfg.CacheDir, cfg.progress("reference"))
	res.RefCache = info
	if err != nil {
		return nil, res, err
	}
	var valRef RefLogProbs
	if len(val) > 0 {
		if valRef, _, err = ReferenceLogProbs(ctx, reference, val, cfg.MaskFormatting, cfg.Batch, cfg.CacheDir); err != nil {
			return nil, res, err
		}
	}

	o := obj.Options()
	stage.Extra = map[string]string{
		extraData: Fingerprint(train), extraRef: info.Key,
		extraBatch: strconv.Itoa(cfg.Batch), extraAccum: strconv.Itoa(cfg.Accum),
		extraObj: fmt.Sprintf("beta=%g nll_coef=%g nll_norm=%s mask_formatting=%t", o.Beta, o.NLLCoef, o.NLLNorm, cfg.MaskFormatting),
	}
	stage.Needs = "the same pairs, reference, batch, accum and objective"
	stage.Rows, stage.RowsDesc = len(train), fmt.Sprintf("the %d training pairs", len(train))
	tr, grads, err := stage.NewTrainer(m, state)
	if err != nil {
		return nil, res, err
	}
	res.StartStep = tr.State.Step

	var valScorer *scorer
	valBatch := min(cfg.Batch, len(val))
	if len(val) > 0 {
		valScorer = newScorer(m, valBatch, maxWidth(val))
	}
	validate := func(step int) error {
		if valScorer == nil {
			return nil
		}
		vm, err := evaluate(ctx, valScorer, obj, val, valRef, cfg.MaskFormatting, valBatch, nil)
		if err != nil {
			return err
		}
		r := EvalResult{DPOMetrics: vm}
		if res.ValBefore == nil {
			res.ValBefore = &r
		}
		res.Val = &r
		if hooks.Eval != nil {
			hooks.Eval(step, r)
		}
		return nil
	}
	if err := validate(tr.State.Step); err != nil {
		return m, res, fmt.Errorf("dpo: validation: %w", err)
	}

	step := newTrainStep(m, grads, obj, train, ref, tr.State, cfg)
	start := time.Now()
	progress := func(p trainer.Progress) {
		sm := obj.Combine(step.parts...)
		step.parts = step.parts[:0]
		if res.First == nil {
			first := sm
			res.First = &first
		}
		res.Final = &sm
		if hooks.Progress != nil {
			hooks.Progress(p)
		}
		if hooks.Metrics != nil {
			hooks.Metrics(p.Step, sm)
		}
	}
	prog := pretrain.NewProgress(cfg.EvalEvery, validate, progress)
	th := pretrain.CheckpointHooks(prog.Update, cfg.CheckpointEvery, cfg.OutDir, m, cfg.TokenizerJSON, tr)
	runErr := tr.Run(ctx, step.run, th)
	res.Steps = tr.State.Step
	res.ElapsedSec = time.Since(start).Seconds()
	if res.ElapsedSec > 0 {
		res.PairsPerSec = float64((res.Steps-res.StartStep)*cfg.Batch*cfg.Accum) / res.ElapsedSec
	}
	if runErr != nil {
		return m, res, fmt.Errorf("dpo: %w", runErr)
	}
	if prog.EvalErr != nil {
		return m, res, fmt.Errorf("dpo: validation: %w", prog.EvalErr)
	}
	if res.Steps > res.StartStep {
		if err := validate(res.Steps); err != nil {
			return m, res, fmt.Errorf("dpo: validation: %w", err)
		}
	}
	return m, res, nil
}

// trainStep is the DPO StepFunc: Batch pairs from the shuffler, the objective over their
// per-sequence sums, and its gradient spread over the response tokens.
type trainStep struct {
	m     *transformer.Model
	grads *transformer.Params
	obj   *objectives.DPO
	pairs []Pair
	ref   RefLogProbs
	state *trainer.State
	mask  bool
	s     *scorer
	idx   []int
	c, r  []Sums
	dout  []float32
	// parts are the metrics of the current update's micro-batches.
	parts []objectives.DPOMetrics
}

func newTrainStep(m *transformer.Model, grads *transformer.Params, obj *objectives.DPO, pairs []Pair, ref RefLogProbs, st *trainer.State, cfg Config) *trainStep {
	w := maxWidth(pairs)
	return &trainStep{m: m, grads: grads, obj: obj, pairs: pairs, ref: ref, state: st, mask: cfg.MaskFormatting,
		s: newScorer(m, cfg.Batch, w), idx: make([]int, cfg.Batch), c: make([]Sums, cfg.Batch), r: make([]Sums, cfg.Batch),
		dout: make([]float32, 2*cfg.Batch*w)}
}

func (s *trainStep) run(ctx context.Context, _, _ int, _ []float32) (trainer.Micro, error) {
	if err := ctx.Err(); err != nil {
		return trainer.Micro{}, err
	}
	if err := s.state.Data.Fill(s.idx); err != nil {
		return trainer.Micro{}, err
	}
	if err := s.s.forward(s.pairs, s.idx, s.mask, s.c, s.r); err != nil {
		return trainer.Micro{}, err
	}
	res, err := s.obj.Eval(objBatch(s.pairs, s.idx, s.c, s.r, s.ref))
	if err != nil {
		return trainer.Micro{}, err
	}
	d := s.s.dOut(s.dout, s.pairs, s.idx, s.mask, res.GradPolicyChosen, res.GradPolicyRejected, res.GradPolicyChosenAll)
	if err := s.m.Backward(s.s.ws, &s.s.batch, d, s.grads); err != nil {
		return trainer.Micro{}, err
	}
	s.parts = append(s.parts, res.DPOMetrics)
	tokens := 0
	for _, i := range s.idx {
		p := s.pairs[i]
		tokens += 2*len(p.Prompt) + len(p.Chosen) + len(p.Rejected) - 2
	}
	return trainer.Micro{Loss: res.Loss, Tokens: tokens}, nil
}
