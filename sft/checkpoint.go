package sft

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
)

// LoadRunCheckpoint loads the weights and trainer state that a stage saved together in
// dir with pretrain.SaveCheckpoint, first putting back dir.old if a crash happened
// between that function's two renames. DPO resumes through it too.
func LoadRunCheckpoint(ctx context.Context, dir string, pool *kernels.Pool) (*transformer.Model, *trainer.State, error) {
	clean := filepath.Clean(dir)
	if _, err := os.Stat(clean); errors.Is(err, os.ErrNotExist) {
		if _, err := os.Stat(clean + ".old"); err == nil {
			if err := os.Rename(clean+".old", clean); err != nil {
				return nil, nil, fmt.Errorf("recover checkpoint %s: %w", dir, err)
			}
		}
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
