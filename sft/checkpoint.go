package sft

import (
	"context"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/trainer/pretrain"
	"github.com/posttrain/posttrain/transformer"
)

// LoadRunCheckpoint loads the weights and trainer state that a stage saved together in
// dir with pretrain.SaveCheckpoint, first putting back dir.old if a crash happened
// between that function's two renames (pretrain.LoadRun).
func LoadRunCheckpoint(ctx context.Context, dir string, pool *kernels.Pool) (*transformer.Model, *trainer.State, error) {
	return pretrain.LoadRun(ctx, dir, pool)
}

// CheckOutDir refuses to start a fresh run in a non-empty directory, so an earlier run's
// checkpoint is never overwritten by accident (pretrain.CheckOutDir).
func CheckOutDir(dir string) error { return pretrain.CheckOutDir(dir) }

// CloneModel returns a model with the same configuration and pool and a copy of m's
// weights, so training it leaves m untouched (pretrain.CloneModel).
func CloneModel(m *transformer.Model) *transformer.Model { return pretrain.CloneModel(m) }

// SameShape reports whether two models have the same parameter layout (tensor names and
// shapes), as a resumed checkpoint must have with the model it started from
// (pretrain.SameShape).
func SameShape(a, b *transformer.Model) error { return pretrain.SameShape(a, b) }
