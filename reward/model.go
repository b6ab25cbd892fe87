package reward

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
)

// FromCausalLM returns a reward model built on a copy of lm's backbone (embeddings,
// layers, final norm; lm_head dropped) with a new score head drawn from normal(0, std)
// with seed (std 0: zeros), the in-memory twin of checkpoint.LoadAsClassifier. A model
// that already is a sequence classifier is copied as is.
func FromCausalLM(lm *transformer.Model, seed uint64, std float64) (*transformer.Model, error) {
	if lm == nil || lm.W == nil {
		return nil, errors.New("reward: nil model")
	}
	if lm.Config.IsSequenceClassifier() {
		return cloneModel(lm), nil
	}
	if !(std >= 0) || math.IsInf(std, 0) {
		return nil, fmt.Errorf("reward: score init std must be >= 0, got %g", std)
	}
	cfg := lm.Config
	cfg.Architectures = []string{transformer.ArchSequenceClassifier}
	cfg.NumLabels = 1
	cfg.TieWordEmbeddings = false
	m, err := transformer.New(cfg, lm.Pool)
	if err != nil {
		return nil, fmt.Errorf("reward: %w", err)
	}
	for _, t := range m.W.Tensors {
		if t.Name == "score.weight" {
			continue
		}
		src, ok := lm.W.Lookup(t.Name)
		if !ok || len(src.Data) != len(t.Data) {
			return nil, fmt.Errorf("reward: the causal LM has no tensor %s of %d values", t.Name, len(t.Data))
		}
		copy(t.Data, src.Data)
	}
	if std > 0 {
		rng := rand.New(rand.NewPCG(seed, seed^0x5c0e))
		for i := range m.W.Score {
			m.W.Score[i] = float32(rng.NormFloat64() * std)
		}
	}
	return m, nil
}

// cloneModel copies m's weights into a new model with the same config and pool.
func cloneModel(m *transformer.Model) *transformer.Model {
	w := transformer.NewParams(m.Config)
	copy(w.Data, m.W.Data)
	return &transformer.Model{Config: m.Config, W: w, Pool: m.Pool}
}

// sameLayout reports whether two models have the same tensors (names and shapes).
func sameLayout(a, b *transformer.Model) error {
	if len(a.W.Tensors) != len(b.W.Tensors) {
		return fmt.Errorf("%d tensors vs %d", len(a.W.Tensors), len(b.W.Tensors))
	}
	for i, t := range a.W.Tensors {
		u := b.W.Tensors[i]
		if t.Name != u.Name || fmt.Sprint(t.Shape) != fmt.Sprint(u.Shape) {
			return fmt.Errorf("tensor %d is %s %v vs %s %v", i, t.Name, t.Shape, u.Name, u.Shape)
		}
	}
	return nil
}

// loadRun loads the weights and trainer state saved together in dir (by
// pretrain.SaveCheckpoint), first putting back dir.old if a crash happened between that
// function's two renames.
func loadRun(ctx context.Context, dir string, pool *kernels.Pool) (*transformer.Model, *trainer.State, error) {
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
