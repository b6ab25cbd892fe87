package transformer

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/kernels"
)

// testConfig is a tiny model: small enough for finite differences, with grouped-query
// attention (4 heads over 2 key/value heads) and two layers.
func testConfig(classifier, tied bool) Config {
	c := Config{
		Architectures: []string{ArchCausalLM}, ModelType: "llama",
		VocabSize: 13, HiddenSize: 16, IntermediateSize: 24, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, MaxPositionEmbeddings: 128,
		RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu", InitializerRange: 0.3,
		TieWordEmbeddings: tied,
	}
	if classifier {
		c.Architectures = []string{ArchSequenceClassifier}
		c.NumLabels = 1
	}
	return c
}

// newTestModel builds a model with random weights, including non-unit norm gains so the
// norm weights' gradients are exercised.
func newTestModel(t testing.TB, cfg Config, workers int, seed uint64) *Model {
	t.Helper()
	pool := kernels.NewPool(workers)
	t.Cleanup(pool.Close)
	m, err := New(cfg, pool)
	require.NoError(t, err)
	m.Init(seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, ts := range m.W.Tensors {
		if len(ts.Shape) == 1 {
			for i := range ts.Data {
				ts.Data[i] = float32(0.5 + rng.Float64())
			}
		}
	}
	return m
}

// randomBatch makes a batch of random tokens and targets, with some negative targets.
func randomBatch(cfg Config, B, T int, seed uint64) *Batch {
	rng := rand.New(rand.NewPCG(seed, 11))
	b := &Batch{B: B, T: T, Tokens: make([]int32, B*T), Targets: make([]int32, B*T), Last: make([]int32, B)}
	for i := range b.Tokens {
		b.Tokens[i] = int32(rng.IntN(cfg.VocabSize))
		b.Targets[i] = int32(rng.IntN(cfg.VocabSize))
		if rng.IntN(5) == 0 {
			b.Targets[i] = -1
		}
	}
	for r := range b.Last {
		b.Last[r] = int32(T/2 + rng.IntN(T-T/2))
	}
	return b
}

// packSegments gives row r two packed examples split at cut, with restarted positions.
func packSegments(b *Batch, cut int) {
	b.Positions = make([]int32, b.B*b.T)
	b.Segments = make([]int32, b.B*b.T)
	for r := 0; r < b.B; r++ {
		for t := 0; t < b.T; t++ {
			i := r*b.T + t
			if t < cut {
				b.Positions[i], b.Segments[i] = int32(t), 0
			} else {
				b.Positions[i], b.Segments[i] = int32(t-cut), 1
			}
		}
	}
}
