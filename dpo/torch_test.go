package dpo

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The PyTorch comparison: testdata/torch holds a tiny policy and reference checkpoint and
// pre-tokenized pairs written by TestWriteTorchFixture (run with
// POSTTRAIN_WRITE_DPO_FIXTURE=1), and golden.json written from them by
// testdata/torch_dpo_eval.py, a plain float64 Llama forward and the DPO formulas in
// PyTorch. TestEvaluateMatchesTorch needs no Python.
const torchDir = "testdata/torch"

// fixtureFormatting returns the formatting token ids of the fixture's vocabulary.
func fixtureFormatting() []int32 { return []int32{61, 62, 63} }

func fixtureConfig() transformer.Config {
	return transformer.Config{
		Architectures: []string{transformer.ArchCausalLM}, ModelType: "llama",
		VocabSize: 64, HiddenSize: 32, IntermediateSize: 64, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, MaxPositionEmbeddings: 64,
		RMSNormEps: 1e-5, RopeTheta: 10000, HiddenAct: "silu", TorchDtype: "float32", InitializerRange: 0.2,
	}
}

// TestWriteTorchFixture regenerates the fixture; it is skipped unless asked for.
func TestWriteTorchFixture(t *testing.T) {
	if os.Getenv("POSTTRAIN_WRITE_DPO_FIXTURE") == "" {
		t.Skip("set POSTTRAIN_WRITE_DPO_FIXTURE=1 to rewrite testdata/torch (then run testdata/torch_dpo_eval.py)")
	}
	pool := kernels.NewPool(2)
	defer pool.Close()
	ref, err := transformer.New(fixtureConfig(), pool)
	require.NoError(t, err)
	ref.Init(77)

	rng := rand.New(rand.NewPCG(3, 4))
	seq := func(n int, end bool) []int32 {
		out := make([]int32, n)
		for i := range out {
			out[i] = int32(rng.IntN(61))
			if rng.IntN(6) == 0 {
				out[i] = fixtureFormatting()[rng.IntN(2)] // a header token mid-sequence
			}
		}
		if end {
			out[n-1] = 63 // end of turn
		}
		return out
	}
	var lines []string
	for i := 0; i < 7; i++ {
		row := map[string]any{
			"prompt_ids":   seq(2+rng.IntN(9), false),
			"chosen_ids":   seq(2+rng.IntN(11), true),
			"rejected_ids": seq(2+rng.IntN(11), rng.IntN(4) != 0),
		}
		if i == 2 || i == 5 {
			row["edited_ids"] = seq(3+rng.IntN(6), true)
		}
		raw, err := json.Marshal(row)
		require.NoError(t, err)
		lines = append(lines, string(raw))
	}
	require.NoError(t, os.MkdirAll(torchDir, 0o755))
	pairsPath := filepath.Join(torchDir, "pairs.jsonl")
	require.NoError(t, os.WriteFile(pairsPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644))

	// The policy is the reference after a few DPO steps, so the log-ratios are not zero;
	// every third pair is trained the wrong way round, so the accuracy is not 1.
	pairs := fixturePairs(t, fixtureFormatting())
	for i := range pairs {
		if i%3 == 1 {
			p := &pairs[i]
			p.Chosen, p.Rejected, p.ChosenFmt, p.RejectedFmt = p.Rejected, p.Chosen, p.RejectedFmt, p.ChosenFmt
		}
	}
	cfg := DefaultConfig()
	cfg.Steps, cfg.Batch = 4, 3
	cfg.Schedule = trainer.Schedule{PeakLR: 4e-3, WarmupSteps: 1}
	policy, _, err := Train(context.Background(), cfg, ref, ref, pairs, nil, Hooks{})
	require.NoError(t, err)
	for name, m := range map[string]*transformer.Model{"policy": policy, "reference": ref} {
		require.NoError(t, checkpoint.Save(context.Background(), filepath.Join(torchDir, name), m, checkpoint.SaveOptions{Overwrite: true}))
	}
}

// fixturePairs reads the fixture's pre-tokenized rows the way the CLI does.
func fixturePairs(t *testing.T, formatting []int32) []Pair {
	t.Helper()
	path := filepath.Join(torchDir, "pairs.jsonl")
	prefs, err := datasets.ReadPreferencesFile(path, datasets.ReadOptions{})
	require.NoError(t, err)
	enc := &datasets.Encoder{Formatting: formatting, MaxLen: 64}
	rows := make([]datasets.EncodedPreference, len(prefs))
	for i, p := range prefs {
		rows[i], err = enc.EncodePreference(p)
		require.NoError(t, err)
	}
	pairs, err := Pairs(rows, "")
	require.NoError(t, err)
	return pairs
}

// goldenCase is one setting of golden.json and PyTorch's metrics for it.
type goldenCase struct {
	Beta               float64            `json:"beta"`
	NLLCoef            float64            `json:"nll_coef"`
	NLLNorm            string             `json:"nll_norm"`
	MaskFormatting     bool               `json:"mask_formatting"`
	FormattingTokenIDs []int32            `json:"formatting_token_ids"`
	Metrics            map[string]float64 `json:"metrics"`
}

// TestEvaluateMatchesTorch: dpo eval's numbers equal a straightforward PyTorch
// implementation of the forward pass and the formulas, for several settings.
func TestEvaluateMatchesTorch(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(torchDir, "golden.json"))
	require.NoError(t, err)
	var golden struct {
		Cases []goldenCase `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(raw, &golden))
	require.GreaterOrEqual(t, len(golden.Cases), 4)
	pool := kernels.NewPool(2)
	defer pool.Close()
	policy, err := checkpoint.Load(context.Background(), filepath.Join(torchDir, "policy"), pool)
	require.NoError(t, err)
	ref, err := checkpoint.Load(context.Background(), filepath.Join(torchDir, "reference"), pool)
	require.NoError(t, err)
	worst := 0.0 // largest relative difference, logged for the record
	defer func() { t.Logf("largest difference from PyTorch (relative where |x| > 1): %.2g", worst) }()
	for i, c := range golden.Cases {
		t.Run(fmt.Sprintf("%d_%s_mask=%t", i, c.NLLNorm, c.MaskFormatting), func(t *testing.T) {
			norm, err := objectives.ParseNLLNorm(c.NLLNorm)
			require.NoError(t, err)
			opts := Options{Objective: objectives.DPOOptions{Beta: c.Beta, NLLCoef: c.NLLCoef, NLLNorm: norm},
				MaskFormatting: c.MaskFormatting, Batch: 3}
			got, err := Evaluate(context.Background(), policy, ref, fixturePairs(t, c.FormattingTokenIDs), opts)
			require.NoError(t, err)
			raw, err := json.Marshal(got.DPOMetrics)
			require.NoError(t, err)
			var gm map[string]float64
			require.NoError(t, json.Unmarshal(raw, &gm))
			for _, k := range []string{"loss", "dpo_loss", "nll_loss", "rewards_chosen", "rewards_rejected", "accuracy", "margin", "logps_chosen", "n"} {
				want, ok := c.Metrics[k]
				require.True(t, ok, "golden.json lacks %s", k)
				worst = max(worst, abs(want-gm[k])/max(1, abs(want)))
				assert.InDelta(t, want, gm[k], 1e-5+2e-6*abs(want), "%s: go %s, torch %s", k, strconv.FormatFloat(gm[k], 'g', -1, 64), strconv.FormatFloat(want, 'g', -1, 64))
			}
		})
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
