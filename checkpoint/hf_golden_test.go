package checkpoint

import (
	"context"
	"encoding/json"
	"flag"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/transformer"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite the tiny checkpoints in testdata (then rerun testdata/hf_reference.py)")

// goldenModels are the checkpoints hf_reference.py scores: an untied and a tied causal LM
// with grouped-query attention, and a reward model.
func goldenModels() map[string]transformer.Config {
	base := func(arch string, tied bool) transformer.Config {
		c := testConfig(arch, tied)
		c.VocabSize, c.MaxPositionEmbeddings, c.RopeTheta, c.InitializerRange = 32, 16, 10000, 0.3
		return c
	}
	return map[string]transformer.Config{
		"causal":     base(transformer.ArchCausalLM, false),
		"tied":       base(transformer.ArchCausalLM, true),
		"classifier": base(transformer.ArchSequenceClassifier, false),
	}
}

// TestHFGolden loads checkpoints whose logits (and reward) an independent float64
// PyTorch implementation of Hugging Face's Llama computed from the same files
// (testdata/hf_reference.py), and checks the engine agrees: tensor names, [out, in]
// layout, rotate-half RoPE, grouped-query attention, tied heads and the score head.
func TestHFGolden(t *testing.T) {
	ctx := context.Background()
	pool := kernels.NewPool(1)
	defer pool.Close()
	if *updateGolden {
		for name, cfg := range goldenModels() {
			m, err := transformer.New(cfg, pool)
			require.NoError(t, err)
			m.Init(uint64(len(name)))
			for i := range m.W.Norm {
				m.W.Norm[i] = 1 + float32(i%5)/10
			}
			require.NoError(t, Save(ctx, filepath.Join("testdata", name), m, SaveOptions{Overwrite: true}))
		}
		t.Log("checkpoints rewritten: now run /usr/bin/python3 checkpoint/testdata/hf_reference.py")
		return
	}
	raw, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	require.NoError(t, err)
	var golden struct {
		Tokens []int32 `json:"tokens"`
	}
	require.NoError(t, json.Unmarshal(raw, &golden))
	var per map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &per))
	for name := range goldenModels() {
		t.Run(name, func(t *testing.T) {
			var want struct {
				Logits []float64 `json:"logits"`
				Reward *float64  `json:"reward"`
			}
			require.NoError(t, json.Unmarshal(per[name], &want))
			m, err := Load(ctx, filepath.Join("testdata", name), pool)
			require.NoError(t, err)
			T := len(golden.Tokens)
			b := &transformer.Batch{B: 1, T: T, Tokens: golden.Tokens, Targets: make([]int32, T), Last: []int32{int32(T - 1)}}
			ws := m.NewWorkspace(1, T)
			require.NoError(t, m.Forward(ws, b))
			if want.Reward != nil {
				require.InDelta(t, *want.Reward, ws.Rewards[0], 1e-4*math.Max(1, math.Abs(*want.Reward)))
				return
			}
			require.Len(t, want.Logits, T*m.Config.VocabSize)
			var maxDiff, maxAbs float64
			for i, w := range want.Logits {
				maxDiff = math.Max(maxDiff, math.Abs(w-float64(ws.Logits[i])))
				maxAbs = math.Max(maxAbs, math.Abs(w))
			}
			require.Greater(t, maxAbs, 0.1, "golden logits are not trivially small")
			require.LessOrEqual(t, maxDiff/maxAbs, 1e-5)
		})
	}
}
