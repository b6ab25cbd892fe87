package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rewardIDRows writes n pre-tokenized rows whose chosen response ends in token 7 and
// rejected one in token 9 (a token-level preference rule), from seed.
func rewardIDRows(t *testing.T, path string, seed uint64, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	ids := func(k int) []int {
		out := make([]int, k)
		for i := range out {
			out[i] = 20 + rng.IntN(200)
		}
		return out
	}
	var lines []string
	for i := 0; i < n; i++ {
		body := ids(2 + rng.IntN(5))
		chosen := append(append([]int{}, body...), 7)
		rejected := append(append([]int{}, body...), 9)
		raw, err := json.Marshal(map[string]any{"prompt_ids": ids(3 + rng.IntN(4)), "chosen_ids": chosen, "rejected_ids": rejected})
		require.NoError(t, err)
		lines = append(lines, string(raw))
	}
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
}

func TestRewardTrainEvalAverageCLI(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base")
	_, _, err := runCLI(t, "model", "init", "--preset", "tiny", "--seed", "2", "--out", base)
	require.NoError(t, err)
	_, err = os.Stat(filepath.Join(base, "tokenizer.json"))
	require.True(t, os.IsNotExist(err), "pre-tokenized rows need no tokenizer")
	train, val := filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "val.jsonl")
	rewardIDRows(t, train, 1, 64)
	rewardIDRows(t, val, 2, 24)

	var rms []string
	for i, seed := range []string{"1", "2"} {
		rm := filepath.Join(dir, fmt.Sprintf("rm%d", i))
		stdout, stderr, err := runCLI(t, "reward", "train", "--model", base, "--train", train, "--val", val,
			"--out", rm, "--steps", "40", "--batch", "8", "--lr", "2e-3", "--warmup", "5", "--seed", seed, "--json")
		require.NoError(t, err, stderr)
		var res map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &res), stdout)
		assert.EqualValues(t, 40, res["steps"])
		assert.EqualValues(t, 64, res["pairs"])
		valRes := res["val"].(map[string]any)
		assert.Greater(t, valRes["accuracy"].(float64), 0.9, "the token rule is learnt")
		rms = append(rms, rm)
	}

	// eval --json prints exactly the documented metrics (plus rows and filter) and
	// --output adds each row's rewards.
	scored := filepath.Join(dir, "scored.jsonl")
	stdout, stderr, err := runCLI(t, "reward", "eval", "--model", rms[0], "--input", val, "--output", scored, "--json")
	require.NoError(t, err, stderr)
	var ev map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &ev))
	for _, k := range []string{"n", "loss", "accuracy", "mean_margin"} {
		assert.Contains(t, ev, k)
	}
	assert.EqualValues(t, 24, ev["n"])
	raw, err := os.ReadFile(scored)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	require.Len(t, lines, 24)
	correct := 0
	for _, l := range lines {
		var row struct {
			PromptIDs []int              `json:"prompt_ids"`
			Rewards   map[string]float64 `json:"rewards"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &row), l)
		assert.NotEmpty(t, row.PromptIDs, "the input row is kept")
		if row.Rewards["chosen"] > row.Rewards["rejected"] {
			correct++
		}
	}
	assert.InDelta(t, ev["accuracy"].(float64), float64(correct)/24, 1e-12)

	// Soups: uniform, weighted, greedy on reward accuracy.
	stdout, stderr, err = runCLI(t, "average", "--method", "uniform", "--out", filepath.Join(dir, "soup"), "--json", rms[0], rms[1])
	require.NoError(t, err, stderr)
	assert.Contains(t, stdout, `"method": "uniform"`)
	stdout, stderr, err = runCLI(t, "average", "--method", "weighted", "--weights", "3,1", "--out", filepath.Join(dir, "wsoup"), "--json", rms[0], rms[1])
	require.NoError(t, err, stderr)
	assert.Contains(t, stdout, "0.75")
	stdout, stderr, err = runCLI(t, "average", "--method", "greedy", "--stage", "reward", "--score-data", val,
		"--out", filepath.Join(dir, "gsoup"), "--json", rms[0], rms[1])
	require.NoError(t, err, stderr)
	var g map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &g))
	assert.Equal(t, "higher-is-better", g["direction"])
	assert.Len(t, g["steps"], 2)
	_, stderr, err = runCLI(t, "reward", "eval", "--model", filepath.Join(dir, "gsoup"), "--input", val)
	require.NoError(t, err, stderr)

	// Refusals name the models.
	_, _, err = runCLI(t, "average", "--out", filepath.Join(dir, "bad"), base, rms[0])
	require.ErrorContains(t, err, "cannot mix architectures")
	_, _, err = runCLI(t, "average", "--method", "weighted", "--weights", "1,-1", "--out", filepath.Join(dir, "bad"), rms[0], rms[1])
	require.ErrorContains(t, err, "weights must be >= 0")
	_, _, err = runCLI(t, "average", "--method", "greedy", "--out", filepath.Join(dir, "bad"), rms[0], rms[1])
	require.ErrorContains(t, err, "--score-data and --stage")
	_, _, err = runCLI(t, "average", "--method", "greedy", "--stage", "dpo", "--score-data", val, "--out", filepath.Join(dir, "bad"), base, base)
	require.ErrorContains(t, err, "needs --reference")

	// Bad data names the file and line.
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte(`{"prompt_ids":[1],"chosen_ids":[2],"rejected_ids":[3]}`+"\n"+`{"prompt_ids":[1],"chosen_ids":"x","rejected_ids":[3]}`+"\n"), 0o644))
	_, _, err = runCLI(t, "reward", "eval", "--model", rms[0], "--input", bad)
	require.ErrorContains(t, err, "bad.jsonl:2")
	// Text rows need a tokenizer.
	text := filepath.Join(dir, "text.jsonl")
	require.NoError(t, os.WriteFile(text, []byte(`{"prompt":"hi","chosen":"a","rejected":"b"}`+"\n"), 0o644))
	_, _, err = runCLI(t, "reward", "eval", "--model", rms[0], "--input", text)
	require.ErrorContains(t, err, "no tokenizer.json")
	// A causal LM is not a reward model.
	_, _, err = runCLI(t, "reward", "eval", "--model", base, "--input", val)
	require.ErrorContains(t, err, "not a reward model")
	_, _, err = runCLI(t, "average", "--method", "greedy", "--stage", "reward", "--score-data", val, "--out", filepath.Join(dir, "bad"), base, base)
	require.ErrorContains(t, err, "needs reward models")
}
