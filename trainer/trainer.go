// Package trainer runs the optimisation loop shared by every training stage (pretraining,
// SFT, DPO, reward models): AdamW with decoupled weight decay over flat float32 buffers,
// global-norm gradient clipping, a warmup-then-decay learning-rate schedule, gradient
// accumulation, NaN/Inf detection, a seeded data order, progress callbacks, and a saved
// state that resumes a run bit-identically. It knows nothing of the model beyond the
// flat parameter and gradient buffers, nor of Temporal or PostgreSQL.
package trainer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/posttrain/posttrain/kernels"
)

// Config is one run's optimisation settings.
type Config struct {
	Schedule Schedule    `json:"schedule"`
	AdamW    AdamWConfig `json:"adamw"`
	// MicroBatches is the number of step-function calls accumulated per update (>= 1).
	// Their gradients are averaged, so the stage computes each micro-batch's mean loss.
	MicroBatches int `json:"micro_batches"`
}

// Validate rejects settings the trainer cannot run.
func (c Config) Validate() error {
	if err := c.Schedule.Validate(); err != nil {
		return err
	}
	if err := c.AdamW.Validate(); err != nil {
		return err
	}
	if c.MicroBatches < 1 {
		return fmt.Errorf("trainer: micro_batches must be >= 1, got %d", c.MicroBatches)
	}
	return nil
}

// Micro is what a step function reports for one micro-batch.
type Micro struct {
	// Loss is the micro-batch's mean loss, the quantity whose gradient was accumulated.
	Loss float64
	// Tokens is how many tokens the micro-batch processed (for tokens/s).
	Tokens int
}

// StepFunc computes one micro-batch's loss and ADDS its gradient into grads (which the
// trainer zeroes before each update's first micro-batch). step is the 0-based index of
// the update being computed and micro the 0-based micro-batch within it.
type StepFunc func(ctx context.Context, step, micro int, grads []float32) (Micro, error)

// Progress describes one finished update, for progress bars, heartbeats and metrics.
type Progress struct {
	Step  int     `json:"step"` // updates completed, 1-based
	Total int     `json:"total"`
	Loss  float64 `json:"loss"` // mean over the update's micro-batches
	LR    float64 `json:"lr"`
	// GradNorm is the global norm of the averaged gradient before clipping.
	GradNorm float64 `json:"grad_norm"`
	Clipped  bool    `json:"clipped"`
	Tokens   int     `json:"tokens"` // tokens in this update
	// TokensPerSec and ETA average over the updates this process has run.
	TokensPerSec float64       `json:"tokens_per_s"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	ETA          time.Duration `json:"eta_ns"`
}

// Hooks are the optional callbacks of Run.
type Hooks struct {
	// Progress is called after every update.
	Progress func(Progress)
	// Checkpoint is called after every CheckpointEvery-th update (when > 0) and after
	// the last one; it typically saves the weights and SaveState(dir, t.State). It gets a
	// context that is not cancelled with Run's, so a save always runs to completion.
	Checkpoint      func(ctx context.Context, step int) error
	CheckpointEvery int
	// SaveOnCancel also checkpoints when ctx is cancelled after updates that are not
	// saved yet, so an interrupted run loses nothing (Ctrl-C, a cancelled activity).
	SaveOnCancel bool
}

// Trainer updates a flat parameter buffer from the gradients a StepFunc accumulates.
type Trainer struct {
	cfg    Config
	params []float32
	grads  []float32
	opt    *AdamW
	// State is the resumable part: update count, moments, data cursor.
	State *State
	// dirty is set while grads may hold a partial accumulation (e.g. after a failed step).
	dirty bool

	// Throughput over this process's updates.
	runStart  time.Time
	runSteps  int
	runTokens int64
}

// New prepares a trainer over params and grads (same length, laid out as segs) with a
// fresh state. Use Resume to continue from a saved one.
func New(cfg Config, params, grads []float32, segs []Segment, pool *kernels.Pool) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(params) != len(grads) {
		return nil, fmt.Errorf("trainer: %d parameters but %d gradients", len(params), len(grads))
	}
	opt, err := NewAdamW(cfg.AdamW, len(params), segs, pool)
	if err != nil {
		return nil, err
	}
	st := NewState(len(params))
	st.Config = cfg
	clear(grads)
	return &Trainer{cfg: cfg, params: params, grads: grads, opt: opt, State: st}, nil
}

// Config returns the run's settings.
func (t *Trainer) Config() Config { return t.cfg }

// Optimizer returns the AdamW instance (for its gradient norm and segment lookups).
func (t *Trainer) Optimizer() *AdamW { return t.opt }

// Resume replaces the state with st (from LoadState), checking it fits the parameters.
func (t *Trainer) Resume(st *State) error {
	if len(st.M) != len(t.params) || len(st.V) != len(t.params) {
		return fmt.Errorf("trainer: saved state has moments for %d parameters, the model has %d", len(st.M), len(t.params))
	}
	if st.Step > t.cfg.Schedule.TotalSteps {
		return fmt.Errorf("trainer: saved state is at step %d, past the run's %d total steps", st.Step, t.cfg.Schedule.TotalSteps)
	}
	st.Config = t.cfg
	t.State = st
	clear(t.grads)
	t.dirty = false
	return nil
}

// Done reports whether every scheduled update has run.
func (t *Trainer) Done() bool { return t.State.Step >= t.cfg.Schedule.TotalSteps }

// Step runs one update: it accumulates cfg.MicroBatches micro-batches through fn, checks
// the loss and gradient for NaN/Inf, clips to the global norm, and applies AdamW at the
// scheduled learning rate. Errors name the 1-based update number.
func (t *Trainer) Step(ctx context.Context, fn StepFunc) (Progress, error) {
	if err := ctx.Err(); err != nil {
		return Progress{}, err
	}
	if t.runStart.IsZero() {
		t.runStart = time.Now()
	}
	s := t.State.Step
	num := s + 1
	if t.dirty {
		clear(t.grads)
	}
	t.dirty = true
	n := t.cfg.MicroBatches
	var loss float64
	tokens := 0
	for micro := 0; micro < n; micro++ {
		r, err := fn(ctx, s, micro, t.grads)
		if err != nil {
			return Progress{}, fmt.Errorf("step %d: %w", num, err)
		}
		if math.IsNaN(r.Loss) || math.IsInf(r.Loss, 0) {
			return Progress{}, fmt.Errorf("step %d: loss is %v (micro-batch %d)", num, r.Loss, micro)
		}
		loss += r.Loss
		tokens += r.Tokens
	}
	inv := 1 / float64(n)
	loss *= inv
	norm := t.opt.GradNorm(t.grads) * inv
	if math.IsNaN(norm) || math.IsInf(norm, 0) {
		where := t.opt.FirstNonFinite(t.grads)
		if where == "" {
			// Every element is finite but their squares overflowed float64: not possible
			// for float32 inputs, kept for a clear message should it ever happen.
			where = "the norm itself"
		}
		return Progress{}, fmt.Errorf("step %d: gradient norm is %v (first non-finite gradient in %s)", num, norm, where)
	}
	scale := inv
	clipped := false
	if c := t.cfg.AdamW.ClipNorm; c > 0 && norm > c {
		scale *= c / norm
		clipped = true
	}
	lr := t.cfg.Schedule.LR(s)
	if err := t.opt.Update(t.params, t.grads, t.State.M, t.State.V, num, lr, scale); err != nil {
		return Progress{}, fmt.Errorf("step %d: %w", num, err)
	}
	t.dirty = false // Update zeroed the gradients
	t.State.Step = num
	t.State.Tokens += int64(tokens)
	t.runSteps++
	t.runTokens += int64(tokens)
	elapsed := time.Since(t.runStart)
	p := Progress{Step: num, Total: t.cfg.Schedule.TotalSteps, Loss: loss, LR: lr, GradNorm: norm,
		Clipped: clipped, Tokens: tokens, Elapsed: elapsed}
	if sec := elapsed.Seconds(); sec > 0 {
		p.TokensPerSec = float64(t.runTokens) / sec
	}
	if remaining := p.Total - num; remaining > 0 {
		p.ETA = time.Duration(float64(elapsed) / float64(t.runSteps) * float64(remaining))
	}
	return p, nil
}

// Run performs updates until the schedule's TotalSteps, calling the hooks. Cancelling ctx
// stops it between updates (or inside the step function, if it watches ctx) with
// ctx.Err(); the last checkpoint then holds a consistent state to resume from.
func (t *Trainer) Run(ctx context.Context, fn StepFunc, hooks Hooks) error {
	saved := t.State.Step
	save := func(step int) error {
		if hooks.Checkpoint == nil {
			return nil
		}
		if err := hooks.Checkpoint(context.WithoutCancel(ctx), step); err != nil {
			return fmt.Errorf("checkpoint at step %d: %w", step, err)
		}
		saved = step
		return nil
	}
	for !t.Done() {
		if err := ctx.Err(); err != nil {
			if hooks.SaveOnCancel && saved < t.State.Step {
				if serr := save(t.State.Step); serr != nil {
					return errors.Join(err, serr)
				}
			}
			return err
		}
		p, err := t.Step(ctx, fn)
		if err != nil {
			if ctx.Err() != nil && hooks.SaveOnCancel && saved < t.State.Step {
				if serr := save(t.State.Step); serr != nil {
					return errors.Join(err, serr)
				}
			}
			return err
		}
		if hooks.Progress != nil {
			hooks.Progress(p)
		}
		if t.Done() || (hooks.CheckpointEvery > 0 && p.Step%hooks.CheckpointEvery == 0) {
			if err := save(p.Step); err != nil {
				return err
			}
		}
	}
	return nil
}
