package reward

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/transformer"
)

// Hooks are Train's optional callbacks.
type Hooks struct {
	// Progress is called after every update (the trainer's callback).
	Progress func(trainer.Progress)
	// Eval is called after each validation pass with the update count it followed.
	Eval func(step int, r EvalResult)
}

// ValPoint is one validation measurement.
type ValPoint struct {
	Step int        `json:"step"` // updates done when measured
	Eval EvalResult `json:"eval"` // the validation metrics
}

// Result summarises a finished (or interrupted) run.
type Result struct {
	OutDir    string  `json:"out_dir,omitempty"` // the checkpoint directory, if any
	Steps     int     `json:"steps"`             // updates done in total
	StartStep int     `json:"start_step"`        // updates done before this process (resume)
	Resumed   bool    `json:"resumed"`           // whether the run continued a saved one
	FirstLoss float64 `json:"first_loss"`        // loss of this process's first update
	FinalLoss float64 `json:"final_loss"`        // loss of the last update
	// TrainAccuracy is the pair accuracy over the pairs this process trained on, measured
	// on the rewards before each update.
	TrainAccuracy float64 `json:"train_accuracy"`
	// Filter is what the similarity filter removed from the training rows.
	Filter FilterStats `json:"filter"`
	// Rows is the number of training rows left after filtering.
	Rows int `json:"rows"`
	// Pairs is the number of training pairs left after filtering.
	Pairs int `json:"pairs"`
	// ValBefore and Val are the validation metrics before the first and after the last
	// update of this process (absent without validation rows).
	ValBefore *EvalResult `json:"val_before,omitempty"`
	Val       *EvalResult `json:"val,omitempty"`
	// ValHistory lists every validation pass of this process.
	ValHistory []ValPoint `json:"val_history,omitempty"`
	// PairsTrained, Tokens and the rates count this process's updates.
	PairsTrained int64   `json:"pairs_trained"`
	Tokens       int64   `json:"tokens"`       // sequence tokens processed (prompt + response)
	PairsPerSec  float64 `json:"pairs_per_s"`  // training throughput in pairs
	TokensPerSec float64 `json:"tokens_per_s"` // training throughput in tokens
	ElapsedSec   float64 `json:"elapsed_s"`    // wall time of this process's updates
	Parameters   int     `json:"parameters"`   // model parameter count
}

// Keys of the trainer state's Extra map that a resume checks.
const (
	extraData      = "reward_data_sha256"
	extraBatch     = "batch"
	extraAccum     = "accum"
	extraMargin    = "margin"
	extraThreshold = "similarity_threshold"
)

// Train fits a copy of base (a sequence classifier: see FromCausalLM and
// checkpoint.LoadAsClassifier; base is left unchanged) to the preference rows of train
// with the Bradley-Terry loss, and returns it with a summary. Validation rows, when
// given, are evaluated before, every EvalEvery updates, and after training. Cancelling
// ctx stops between updates after checkpointing, so OutDir then resumes the run exactly;
// the model and result so far are returned with the error.
func Train(ctx context.Context, cfg Config, base *transformer.Model, train, val []datasets.EncodedPreference, hooks Hooks) (*transformer.Model, Result, error) {
	res := Result{OutDir: cfg.OutDir, Resumed: cfg.Resume}
	if cfg.Margin == "" {
		cfg.Margin = MarginNone
	}
	if err := cfg.validate(); err != nil {
		return nil, res, err
	}
	if err := checkModel(base); err != nil {
		return nil, res, err
	}
	if len(train) == 0 {
		return nil, res, errors.New("reward: no training rows")
	}
	if err := CheckRows(train, base.Config); err != nil {
		return nil, res, fmt.Errorf("reward: training data: %w", err)
	}
	if err := CheckRows(val, base.Config); err != nil {
		return nil, res, fmt.Errorf("reward: validation data: %w", err)
	}
	prep, st, err := prepare(train, cfg.Margin, cfg.SimilarityThreshold)
	if err != nil {
		return nil, res, fmt.Errorf("reward: training data: %w", err)
	}
	res.Filter, res.Rows, res.Pairs = st, len(prep), st.KeptPairs()
	if len(prep) == 0 {
		return nil, res, fmt.Errorf("reward: every training pair was dropped by the similarity filter (threshold %g)", cfg.SimilarityThreshold)
	}
	bt, err := cfg.objective()
	if err != nil {
		return nil, res, err
	}

	stage := pretrain.Stage{Name: "reward", ResumePrefix: "reward: resume", Steps: cfg.Steps, Accum: cfg.Accum,
		Schedule: cfg.Schedule, AdamW: cfg.AdamW, Seed: cfg.Seed}
	m, state, err := stage.StartModel(ctx, base, cfg.OutDir, cfg.Resume, "model")
	if err != nil {
		return nil, res, err
	}
	res.Parameters = len(m.W.Data)

	stage.Extra = map[string]string{
		extraData: Fingerprint(train), extraBatch: strconv.Itoa(cfg.Batch), extraAccum: strconv.Itoa(cfg.Accum),
		extraMargin: string(cfg.Margin), extraThreshold: strconv.FormatFloat(cfg.SimilarityThreshold, 'g', -1, 64),
	}
	stage.Needs = "the same data, batch, accum, margin and similarity threshold"
	stage.Rows, stage.RowsDesc = len(prep), fmt.Sprintf("the %d training rows", len(prep))
	tr, grads, err := stage.NewTrainer(m, state)
	if err != nil {
		return nil, res, err
	}
	res.StartStep = tr.State.Step

	maxResp := 2
	for _, p := range prep {
		maxResp = max(maxResp, len(p.resp))
	}
	maxT := longestRow(train)
	if len(val) > 0 {
		maxT = max(maxT, longestRow(val))
	}
	sc, err := NewScorer(m, cfg.Batch*maxResp, maxT)
	if err != nil {
		return nil, res, err
	}

	var ev *evaluator
	if len(val) > 0 {
		vprep, vst, err := prepare(val, cfg.Margin, cfg.SimilarityThreshold)
		if err != nil {
			return nil, res, fmt.Errorf("reward: validation data: %w", err)
		}
		if ev, err = newEvaluator(val, vprep, vst); err != nil {
			return nil, res, err
		}
	}
	validate := func(step int) error {
		if ev == nil {
			return nil
		}
		r, _, err := ev.run(ctx, sc, nil)
		if err != nil {
			return err
		}
		res.ValHistory = append(res.ValHistory, ValPoint{Step: step, Eval: r})
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
		return m, res, fmt.Errorf("reward: validation: %w", err)
	}

	step := &trainStep{sc: sc, grads: grads, bt: bt, rows: train, prep: prep, state: tr.State,
		idx: make([]int, cfg.Batch), dOut: make([]float32, sc.MaxBatch()), rewards: make([]float64, sc.MaxBatch())}
	start := time.Now()
	prog := pretrain.NewProgress(cfg.EvalEvery, validate, hooks.Progress)
	th := pretrain.CheckpointHooks(prog.Update, cfg.CheckpointEvery, cfg.OutDir, m, cfg.TokenizerJSON, tr)
	runErr := tr.Run(ctx, step.run, th)
	res.Steps = tr.State.Step
	res.Tokens = step.tokens
	res.PairsTrained = step.nPairs
	res.ElapsedSec = time.Since(start).Seconds()
	if res.ElapsedSec > 0 {
		res.TokensPerSec = float64(step.tokens) / res.ElapsedSec
		res.PairsPerSec = float64(step.nPairs) / res.ElapsedSec
	}
	if step.nPairs > 0 {
		res.TrainAccuracy = float64(step.correct) / float64(step.nPairs)
	}
	res.FirstLoss, res.FinalLoss = prog.Losses()
	if runErr != nil {
		return m, res, fmt.Errorf("reward: %w", runErr)
	}
	if prog.EvalErr != nil {
		return m, res, fmt.Errorf("reward: validation: %w", prog.EvalErr)
	}
	if res.Steps > res.StartStep || len(res.ValHistory) == 0 {
		if err := validate(res.Steps); err != nil {
			return m, res, fmt.Errorf("reward: validation: %w", err)
		}
	}
	return m, res, nil
}

// trainStep is the reward-model StepFunc: Batch preference rows from the shuffler, every
// response of them one batch row scored once, the Bradley-Terry loss over their pairs.
type trainStep struct {
	sc      *Scorer
	grads   *transformer.Params
	bt      *objectives.BradleyTerry
	rows    []datasets.EncodedPreference
	prep    []prepared
	state   *trainer.State
	idx     []int
	seqs    []datasets.Sequence
	pairs   []objectives.Pair
	rewards []float64
	dOut    []float32
	// This process's counts: tokens and pairs trained, pairs ranked right before the update.
	tokens, nPairs, correct int64
}

func (s *trainStep) run(ctx context.Context, _, _ int, _ []float32) (trainer.Micro, error) {
	if err := ctx.Err(); err != nil {
		return trainer.Micro{}, err
	}
	if err := s.state.Data.Fill(s.idx); err != nil {
		return trainer.Micro{}, err
	}
	s.seqs, s.pairs = s.seqs[:0], s.pairs[:0]
	tokens := 0
	for j, pi := range s.idx {
		p := s.prep[pi]
		r := s.rows[p.row]
		base := len(s.seqs)
		for _, k := range p.resp {
			q := datasets.Sequence{Prompt: r.Prompt, Response: r.Responses[k]}
			s.seqs = append(s.seqs, q)
			tokens += q.Len()
		}
		for _, q := range p.pairs {
			q.Better += base
			q.Worse += base
			q.Row = j
			s.pairs = append(s.pairs, q)
		}
	}
	if err := s.sc.forward(s.seqs); err != nil {
		return trainer.Micro{}, err
	}
	b := len(s.seqs)
	rewards := s.rewards[:b]
	for i := range rewards {
		rewards[i] = float64(s.sc.ws.Rewards[i])
	}
	r, err := s.bt.Eval(rewards, s.pairs)
	if err != nil {
		return trainer.Micro{}, err
	}
	dOut := s.dOut[:b]
	for i := range dOut {
		dOut[i] = float32(r.Grad[i])
	}
	if err := s.sc.m.Backward(s.sc.ws, &s.sc.batch, dOut, s.grads); err != nil {
		return trainer.Micro{}, err
	}
	s.tokens += int64(tokens)
	s.nPairs += int64(r.Pairs)
	s.correct += int64(math.Round(r.Accuracy * float64(r.Pairs)))
	return trainer.Micro{Loss: r.Loss, Tokens: tokens}, nil
}
