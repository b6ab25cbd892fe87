package sft

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/transformer"
)

// Config is one SFT run's settings.
type Config struct {
	Steps int // optimizer updates in total (a resumed run continues up to it)
	Batch int // rows per micro-batch
	Accum int // micro-batches per update
	// SeqLen is the length of a packed row in positions; 0 means the model's context
	// window. Unpacked batches are as long as their longest example.
	SeqLen int
	// Packing puts several short examples in one row (positions restart, no attention
	// across examples) so fewer positions are padding.
	Packing bool

	Schedule trainer.Schedule // PeakLR, WarmupSteps, MinLRRatio, Decay (TotalSteps = Steps)
	AdamW    trainer.AdamWConfig
	Seed     uint64 // seed of the data order

	// OutDir receives checkpoints (model + trainer state) every CheckpointEvery updates
	// (0: only at the end), at the end, and on cancellation. Empty means no checkpoints.
	OutDir          string
	CheckpointEvery int
	// Resume continues the run saved in OutDir; the base model then only fixes the
	// architecture and pool.
	Resume bool
	// TokenizerJSON, when set, is written into every checkpoint.
	TokenizerJSON []byte
	// EvalEvery measures validation loss every that many updates (0: only before and
	// after training).
	EvalEvery int
}

// DefaultConfig is a sensible SFT setting for the small presets.
func DefaultConfig() Config {
	return Config{
		Steps: 100, Batch: 8, Accum: 1,
		Schedule: trainer.Schedule{PeakLR: 3e-4, WarmupSteps: 10, MinLRRatio: 0.1, Decay: trainer.DecayCosine},
		AdamW:    trainer.DefaultAdamW(),
		Seed:     1,
	}
}

func (c Config) validate() error {
	if err := pretrain.CheckSizes("sft", c.Steps, c.Batch, c.Accum); err != nil {
		return err
	}
	if c.SeqLen < 0 {
		return fmt.Errorf("sft: seq must be >= 0, got %d", c.SeqLen)
	}
	return pretrain.CheckRunOutput("sft", c.CheckpointEvery, c.EvalEvery, c.Resume, c.OutDir)
}

// Hooks are Train's optional callbacks.
type Hooks struct {
	// Progress is called after every update (the trainer's callback).
	Progress func(trainer.Progress)
	// Eval is called after each validation pass with the update count it followed.
	Eval func(step int, r EvalResult)
}

// ValPoint is one validation measurement.
type ValPoint struct {
	Step int     `json:"step"`
	Loss float64 `json:"loss"`
}

// Result summarises a finished (or interrupted) run.
type Result struct {
	OutDir    string  `json:"out_dir,omitempty"`
	Steps     int     `json:"steps"`
	StartStep int     `json:"start_step"`
	Resumed   bool    `json:"resumed"`
	FirstLoss float64 `json:"first_loss"`
	FinalLoss float64 `json:"final_loss"`
	// ValLossBefore and ValLoss are the validation loss before the first and after the
	// last update of this process (absent without validation examples).
	ValLossBefore *float64   `json:"val_loss_before,omitempty"`
	ValLoss       *float64   `json:"val_loss,omitempty"`
	ValHistory    []ValPoint `json:"val_history,omitempty"`
	Examples      int        `json:"examples"`
	Rows          int        `json:"rows"`
	TargetTokens  int        `json:"target_tokens"`
	Tokens        int64      `json:"tokens"`
	TokensPerSec  float64    `json:"tokens_per_s"`
	ElapsedSec    float64    `json:"elapsed_s"`
	Parameters    int        `json:"parameters"`
}

// Keys of the trainer state's Extra map that a resume checks.
const (
	extraData    = "sft_data_sha256"
	extraBatch   = "batch"
	extraAccum   = "accum"
	extraPacking = "packing"
	extraSeq     = "seq"
)

// Train fine-tunes a copy of base on train (base is left unchanged) and returns it with
// a summary. Cancelling ctx stops between updates after checkpointing, so OutDir then
// resumes the run exactly; the model and result so far are returned with the error.
func Train(ctx context.Context, cfg Config, base *transformer.Model, train, val []datasets.EncodedSFT, hooks Hooks) (*transformer.Model, Result, error) {
	res := Result{OutDir: cfg.OutDir, Resumed: cfg.Resume, Examples: len(train)}
	if err := cfg.validate(); err != nil {
		return nil, res, err
	}
	if err := checkModel(base); err != nil {
		return nil, res, err
	}
	if len(train) == 0 {
		return nil, res, errors.New("sft: no training examples")
	}
	if err := CheckRows(train, base.Config); err != nil {
		return nil, res, fmt.Errorf("training data: %w", err)
	}
	if err := CheckRows(val, base.Config); err != nil {
		return nil, res, fmt.Errorf("validation data: %w", err)
	}
	seq := cfg.SeqLen
	if seq == 0 || seq > base.Config.MaxPositionEmbeddings {
		seq = base.Config.MaxPositionEmbeddings
	}

	stage := pretrain.Stage{Name: "sft", ResumePrefix: "sft: resume", Steps: cfg.Steps, Accum: cfg.Accum,
		Schedule: cfg.Schedule, AdamW: cfg.AdamW, Seed: cfg.Seed}
	m, state, err := stage.StartModel(ctx, base, cfg.OutDir, cfg.Resume, "model")
	if err != nil {
		return nil, res, err
	}

	l := unpackedLayout(train)
	if cfg.Packing {
		if l, err = packedLayout(train, seq); err != nil {
			return nil, res, err
		}
	}
	res.Rows = len(l.groups)
	for _, r := range train {
		res.TargetTokens += targetCount(r)
	}
	res.Parameters = len(m.W.Data)

	stage.Extra = map[string]string{
		extraData: Fingerprint(train), extraBatch: strconv.Itoa(cfg.Batch), extraAccum: strconv.Itoa(cfg.Accum),
		extraPacking: strconv.FormatBool(cfg.Packing), extraSeq: strconv.Itoa(seq),
	}
	stage.Needs = "the same data, batch, accum, packing and seq"
	stage.Rows, stage.RowsDesc = len(l.groups), fmt.Sprintf("the %d training rows", len(l.groups))
	tr, grads, err := stage.NewTrainer(m, state)
	if err != nil {
		return nil, res, err
	}
	res.StartStep = tr.State.Step

	var ev *evaluator
	if len(val) > 0 {
		vl := unpackedLayout(val)
		maxT := 1
		for _, w := range vl.width {
			maxT = max(maxT, w)
		}
		ev = newEvaluator(m, val, vl, min(EvalBatch, len(val)), maxT)
	}
	validate := func(step int) error {
		if ev == nil {
			return nil
		}
		r, err := ev.run(ctx)
		if err != nil {
			return err
		}
		loss := r.Loss
		res.ValHistory = append(res.ValHistory, ValPoint{Step: step, Loss: loss})
		if res.ValLossBefore == nil {
			res.ValLossBefore = &loss
		}
		res.ValLoss = &loss
		if hooks.Eval != nil {
			hooks.Eval(step, r)
		}
		return nil
	}
	if err := validate(tr.State.Step); err != nil {
		return m, res, fmt.Errorf("sft: validation: %w", err)
	}

	maxT := seq
	if !cfg.Packing {
		maxT = 1
		for _, w := range l.width {
			maxT = max(maxT, w)
		}
	}
	step := &trainStep{m: m, grads: grads, rows: train, l: l, state: tr.State, ws: m.NewWorkspace(cfg.Batch, maxT),
		batch: newBatch(cfg.Batch, maxT), idx: make([]int, cfg.Batch), weights: make([]float32, cfg.Batch*maxT)}
	for i := range step.weights {
		step.weights[i] = 1
	}

	start := time.Now()
	prog := pretrain.NewProgress(cfg.EvalEvery, validate, hooks.Progress)
	th := pretrain.CheckpointHooks(prog.Update, cfg.CheckpointEvery, cfg.OutDir, m, cfg.TokenizerJSON, tr)
	runErr := tr.Run(ctx, step.run, th)
	res.Steps = tr.State.Step
	res.Tokens = tr.State.Tokens
	res.ElapsedSec = time.Since(start).Seconds()
	if res.ElapsedSec > 0 {
		res.TokensPerSec = float64(step.tokens) / res.ElapsedSec
	}
	res.FirstLoss, res.FinalLoss = prog.Losses()
	if runErr != nil {
		return m, res, fmt.Errorf("sft: %w", runErr)
	}
	if prog.EvalErr != nil {
		return m, res, fmt.Errorf("sft: validation: %w", prog.EvalErr)
	}
	if res.Steps > res.StartStep || len(res.ValHistory) == 0 {
		if err := validate(res.Steps); err != nil {
			return m, res, fmt.Errorf("sft: validation: %w", err)
		}
	}
	return m, res, nil
}

// trainStep is the SFT StepFunc: Batch rows from the shuffler, mean NLL over their
// target tokens.
type trainStep struct {
	m       *transformer.Model
	grads   *transformer.Params
	rows    []datasets.EncodedSFT
	l       layout
	state   *trainer.State
	ws      *transformer.Workspace
	batch   *transformer.Batch
	idx     []int
	weights []float32
	tokens  int64 // real (non-padding) positions processed by this process
}

func (s *trainStep) run(ctx context.Context, _, _ int, _ []float32) (trainer.Micro, error) {
	if err := ctx.Err(); err != nil {
		return trainer.Micro{}, err
	}
	if err := s.state.Data.Fill(s.idx); err != nil {
		return trainer.Micro{}, err
	}
	// Padding after the last example changes nothing (causal mask), so rows are only as
	// long as the widest one of this micro-batch.
	t := s.l.maxWidth(s.idx)
	scored := fillBatch(s.batch, s.rows, s.l, s.idx, t)
	if scored == 0 {
		return trainer.Micro{}, errors.New("micro-batch has no target tokens")
	}
	loss, err := s.m.WeightedNLL(s.ws, s.batch, s.weights[:s.batch.B*t], s.grads)
	used := 0
	for _, g := range s.idx {
		used += s.l.width[g]
	}
	s.tokens += int64(used)
	return trainer.Micro{Loss: loss, Tokens: used}, err
}
