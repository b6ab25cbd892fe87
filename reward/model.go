package reward

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/posttrain/posttrain/trainer/pretrain"
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
		return pretrain.CloneModel(lm), nil
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
