package pretrain

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
)

// Stage is the trainer plumbing every training stage (pretraining, SFT, DPO, reward
// model) shares: the trainer over a model's weights, and a resume that only continues
// a saved run made with the same settings and data.
type Stage struct {
	// Name prefixes plain errors ("sft: ...").
	Name string
	// ResumePrefix prefixes resume errors ("sft: resume", "pretrain: --resume").
	ResumePrefix string
	Steps        int // optimizer updates in total (Schedule.TotalSteps)
	Accum        int // micro-batches per update
	Schedule     trainer.Schedule
	AdamW        trainer.AdamWConfig
	Seed         uint64 // seed of a fresh run's data order
	// Extra are the run settings saved with the trainer state that a resume must match.
	Extra map[string]string
	// Needs lists those settings for the mismatch error ("the same data, batch and accum").
	Needs string
	// Rows is the number of items the data shuffler walks; RowsDesc names them for the
	// cursor error ("the 12 training rows").
	Rows     int
	RowsDesc string
}

// NewTrainer builds the trainer over m's weights (with fresh gradients, returned too).
// With a saved state it checks Extra and the data cursor and resumes from it; otherwise
// the data order is a new shuffle of Rows with Seed. The trainer's state keeps Extra.
func (s Stage) NewTrainer(m *transformer.Model, saved *trainer.State) (*trainer.Trainer, *transformer.Params, error) {
	segs, err := trainer.ParamSegments(m.W)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	sched := s.Schedule
	sched.TotalSteps = s.Steps
	grads := m.NewGrads()
	tr, err := trainer.New(trainer.Config{Schedule: sched, AdamW: s.AdamW, MicroBatches: s.Accum}, m.W.Data, grads.Data, segs, m.Pool)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	if saved != nil {
		for k, want := range s.Extra {
			if got := saved.Extra[k]; got != want {
				return nil, nil, fmt.Errorf("%s: the saved run used %s=%s, this one %s (resume needs %s)", s.ResumePrefix, k, got, want, s.Needs)
			}
		}
		if saved.Data == nil || saved.Data.N != s.Rows {
			return nil, nil, fmt.Errorf("%s: the saved data cursor does not fit %s", s.ResumePrefix, s.RowsDesc)
		}
		if err := tr.Resume(saved); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.ResumePrefix, err)
		}
	} else {
		tr.State.Data = trainer.NewShuffler(s.Rows, s.Seed)
	}
	tr.State.Extra = s.Extra
	return tr, grads, nil
}

// StartModel returns the model a post-training stage trains and, on resume, the saved
// trainer state: the run saved in outDir (which must fit base, called what in errors),
// or a copy of base after checking that outDir (if any) holds no earlier run.
func (s Stage) StartModel(ctx context.Context, base *transformer.Model, outDir string, resume bool, what string) (*transformer.Model, *trainer.State, error) {
	if resume {
		saved, st, err := LoadRun(ctx, outDir, base.Pool)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Name, err)
		}
		if err := SameShape(base, saved); err != nil {
			return nil, nil, fmt.Errorf("%s: the checkpoint in %s does not fit the %s: %w", s.ResumePrefix, outDir, what, err)
		}
		return saved, st, nil
	}
	if outDir != "" {
		if err := CheckOutDir(outDir); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.Name, err)
		}
	}
	return CloneModel(base), nil, nil
}

// CheckpointHooks are trainer hooks calling progress after every update and, when
// outDir is set, saving m and tr's state there (SaveCheckpoint) every checkpointEvery
// updates, at the end and on cancellation.
func CheckpointHooks(progress func(trainer.Progress), checkpointEvery int, outDir string, m *transformer.Model, tokJSON []byte, tr *trainer.Trainer) trainer.Hooks {
	h := trainer.Hooks{Progress: progress, CheckpointEvery: checkpointEvery, SaveOnCancel: outDir != ""}
	if outDir != "" {
		h.Checkpoint = func(ctx context.Context, _ int) error {
			return SaveCheckpoint(ctx, outDir, m, tokJSON, tr.State)
		}
	}
	return h
}

// LoadRun loads the weights and trainer state saved together in dir by SaveCheckpoint,
// first putting back dir.old if a crash happened between that function's two renames.
func LoadRun(ctx context.Context, dir string, pool *kernels.Pool) (*transformer.Model, *trainer.State, error) {
	clean := filepath.Clean(dir)
	if err := restoreSwap(clean); err != nil {
		return nil, nil, fmt.Errorf("recover checkpoint %s: %w", dir, err)
	}
	if !trainer.HasState(clean) {
		return nil, nil, fmt.Errorf("resume: %s holds no %s to resume from", dir, trainer.StateJSONFile)
	}
	st, err := trainer.LoadState(clean)
	if err != nil {
		return nil, nil, fmt.Errorf("resume: %w", err)
	}
	m, err := checkpoint.Load(ctx, clean, pool)
	if err != nil {
		return nil, nil, fmt.Errorf("resume: %w", err)
	}
	return m, st, nil
}

// CheckOutDir refuses to start a fresh run in a non-empty directory, so an earlier run's
// checkpoint is never overwritten by accident.
func CheckOutDir(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("output %s is not empty; resume the run saved there, or choose another directory", dir)
	}
	return nil
}

// CloneModel returns a model with the same configuration and pool and a copy of m's
// weights, so training it leaves m untouched.
func CloneModel(m *transformer.Model) *transformer.Model {
	w := transformer.NewParams(m.Config)
	copy(w.Data, m.W.Data)
	return &transformer.Model{Config: m.Config, W: w, Pool: m.Pool}
}

// SameShape reports whether two models have the same parameter layout (tensor names and
// shapes), as a resumed checkpoint must have with the model it started from.
func SameShape(a, b *transformer.Model) error {
	if len(a.W.Tensors) != len(b.W.Tensors) {
		return fmt.Errorf("models have %d and %d tensors", len(a.W.Tensors), len(b.W.Tensors))
	}
	for i, t := range a.W.Tensors {
		u := b.W.Tensors[i]
		if t.Name != u.Name || fmt.Sprint(t.Shape) != fmt.Sprint(u.Shape) {
			return fmt.Errorf("tensor %d is %s %v in one model and %s %v in the other", i, t.Name, t.Shape, u.Name, u.Shape)
		}
	}
	return nil
}

// Progress is the bookkeeping a post-training stage does after every update: the loss
// of this process's first and last update, the caller's callback, and a validation pass
// every EvalEvery updates before the last one (the stage validates after the run).
type Progress struct {
	evalEvery int
	validate  func(step int) error
	hook      func(trainer.Progress)
	// first and final are the first and last loss seen; first is NaN until one is.
	first, final float64
	// EvalErr is the first failed validation pass; the passes after it are skipped.
	EvalErr error
}

// NewProgress tracks losses, calls hook (if not nil) after every update, and validate
// (if evalEvery > 0) every evalEvery updates.
func NewProgress(evalEvery int, validate func(step int) error, hook func(trainer.Progress)) *Progress {
	return &Progress{evalEvery: evalEvery, validate: validate, hook: hook, first: math.NaN(), final: math.NaN()}
}

// Update is the trainer's progress callback.
func (s *Progress) Update(p trainer.Progress) {
	if math.IsNaN(s.first) {
		s.first = p.Loss
	}
	s.final = p.Loss
	if s.hook != nil {
		s.hook(p)
	}
	if s.evalEvery > 0 && p.Step%s.evalEvery == 0 && p.Step < p.Total && s.EvalErr == nil {
		s.EvalErr = s.validate(p.Step)
	}
}

// Losses returns the first and final loss seen, 0 and 0 before any update.
func (s *Progress) Losses() (first, final float64) {
	if math.IsNaN(s.first) {
		return 0, 0
	}
	return s.first, s.final
}

// CheckSizes checks a stage's steps, batch and accum settings (each >= 1); stage prefixes
// the error.
func CheckSizes(stage string, steps, batch, accum int) error {
	switch {
	case steps < 1:
		return fmt.Errorf("%s: steps must be >= 1, got %d", stage, steps)
	case batch < 1:
		return fmt.Errorf("%s: batch must be >= 1, got %d", stage, batch)
	case accum < 1:
		return fmt.Errorf("%s: accum must be >= 1, got %d", stage, accum)
	}
	return nil
}

// CheckRunOutput checks a stage's checkpoint-every and eval-every settings (>= 0) and
// that a resume names the output directory of the run; stage prefixes the error.
func CheckRunOutput(stage string, checkpointEvery, evalEvery int, resume bool, outDir string) error {
	switch {
	case checkpointEvery < 0:
		return fmt.Errorf("%s: checkpoint-every must be >= 0, got %d", stage, checkpointEvery)
	case evalEvery < 0:
		return fmt.Errorf("%s: eval-every must be >= 0, got %d", stage, evalEvery)
	case resume && outDir == "":
		return fmt.Errorf("%s: resume needs the output directory of the run", stage)
	}
	return nil
}
