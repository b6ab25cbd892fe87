package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer/pretrain"
)

// The dpo package's PyTorch fixture: a tiny policy and reference without tokenizer.json,
// pre-tokenized pairs, and PyTorch's metrics for several flag settings.
const torchFixture = "../../dpo/testdata/torch"

// TestDPOEvalCLIMatchesTorch: `posttrain dpo eval --json` prints the numbers of the
// PyTorch implementation for every golden setting.
func TestDPOEvalCLIMatchesTorch(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(torchFixture, "golden.json"))
	require.NoError(t, err)
	var golden struct {
		Cases []struct {
			Beta               float64            `json:"beta"`
			NLLCoef            float64            `json:"nll_coef"`
			NLLNorm            string             `json:"nll_norm"`
			MaskFormatting     bool               `json:"mask_formatting"`
			FormattingTokenIDs []int              `json:"formatting_token_ids"`
			Metrics            map[string]float64 `json:"metrics"`
		} `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(raw, &golden))
	require.NotEmpty(t, golden.Cases)
	cache := t.TempDir()
	for i, c := range golden.Cases {
		ids := make([]string, len(c.FormattingTokenIDs))
		for j, id := range c.FormattingTokenIDs {
			ids[j] = fmt.Sprint(id)
		}
		stdout, _, err := runCLI(t, "dpo", "eval", "--policy", filepath.Join(torchFixture, "policy"),
			"--reference", filepath.Join(torchFixture, "reference"), "--input", filepath.Join(torchFixture, "pairs.jsonl"),
			"--beta", fmt.Sprint(c.Beta), "--nll-coef", fmt.Sprint(c.NLLCoef), "--nll-norm", c.NLLNorm,
			fmt.Sprintf("--mask-formatting=%t", c.MaskFormatting), "--formatting-token-ids", strings.Join(ids, ","),
			"--cache-dir", cache, "--threads", "2", "--json")
		require.NoError(t, err, "case %d", i)
		var got map[string]float64
		require.NoError(t, json.Unmarshal([]byte(stdout), &got), stdout)
		for _, k := range []string{"loss", "dpo_loss", "nll_loss", "rewards_chosen", "rewards_rejected", "accuracy", "margin", "logps_chosen", "n"} {
			want := c.Metrics[k]
			assert.InDelta(t, want, got[k], 1e-5+2e-6*max(want, -want), "case %d %s", i, k)
		}
	}
}

// TestSFTThenDPOCLIOnPreTokenizedRows runs sft train/eval and dpo train/eval end to end
// on pre-tokenized rows with a model directory that has no tokenizer.json.
func TestSFTThenDPOCLIOnPreTokenizedRows(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(1, 1))
	var lines []string
	for i := 0; i < 32; i++ {
		prompt := make([]int, 2+rng.IntN(5))
		completion := make([]int, 0, len(prompt)+1)
		for j := range prompt {
			prompt[j] = rng.IntN(60)
			completion = append(completion, (prompt[j]*7+3)%60) // learnable from the prompt
		}
		completion = append(completion, 63) // end of turn
		raw, err := json.Marshal(map[string]any{"prompt_ids": prompt, "completion_ids": completion})
		require.NoError(t, err)
		lines = append(lines, string(raw))
	}
	sftPath := filepath.Join(dir, "sft.jsonl")
	require.NoError(t, os.WriteFile(sftPath, []byte(strings.Join(lines, "\n")+"\n"), 0o644))

	sftOut := filepath.Join(dir, "sft1")
	stdout, stderr, err := runCLI(t, "sft", "train", "--model", filepath.Join(torchFixture, "reference"),
		"--train", sftPath, "--val", sftPath, "--out", sftOut, "--steps", "20", "--batch", "4", "--lr", "3e-3",
		"--warmup", "2", "--packing", "--seq", "64", "--seed", "7", "--threads", "2", "--json")
	require.NoError(t, err, stderr)
	var sres struct {
		Steps         int     `json:"steps"`
		ValLossBefore float64 `json:"val_loss_before"`
		ValLoss       float64 `json:"val_loss"`
		Rows          int     `json:"rows"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &sres), stdout)
	assert.Equal(t, 20, sres.Steps)
	assert.Less(t, sres.ValLoss, sres.ValLossBefore)
	assert.Less(t, sres.Rows, 32, "packed")
	assert.Contains(t, stderr, "20/20", "a progress bar on stderr")

	stdout, _, err = runCLI(t, "sft", "eval", "--model", sftOut, "--input", sftPath, "--threads", "2", "--json")
	require.NoError(t, err)
	var eres map[string]float64
	require.NoError(t, json.Unmarshal([]byte(stdout), &eres))
	assert.InDelta(t, sres.ValLoss, eres["loss"], 1e-9, "sft eval reproduces the final validation loss")
	assert.Equal(t, 32.0, eres["n"])

	pairs := filepath.Join(torchFixture, "pairs.jsonl")
	dpoOut := filepath.Join(dir, "dpo1")
	stdout, stderr, err = runCLI(t, "dpo", "train", "--policy", sftOut, "--input", pairs, "--val", pairs,
		"--formatting-token-ids", "61,62,63", "--out", dpoOut, "--steps", "8", "--batch", "2", "--lr", "2e-3",
		"--warmup", "1", "--cache-dir", filepath.Join(dir, "cache"), "--threads", "2", "--json")
	require.NoError(t, err, stderr)
	var dres struct {
		Steps     int `json:"steps"`
		ValBefore struct {
			Margin float64 `json:"margin"`
		} `json:"val_before"`
		Val struct {
			Margin float64 `json:"margin"`
		} `json:"val"`
		RefCache struct {
			Hit  bool   `json:"hit"`
			Path string `json:"path"`
		} `json:"ref_cache"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &dres), stdout)
	assert.Equal(t, 8, dres.Steps)
	assert.Zero(t, dres.ValBefore.Margin, "the reference defaults to the policy's own weights")
	assert.Greater(t, dres.Val.Margin, 0.0)
	assert.FileExists(t, dres.RefCache.Path)

	stdout, _, err = runCLI(t, "dpo", "eval", "--policy", dpoOut, "--reference", sftOut, "--input", pairs,
		"--formatting-token-ids", "61,62,63", "--cache-dir", filepath.Join(dir, "cache"), "--threads", "2", "--json")
	require.NoError(t, err)
	var m map[string]float64
	require.NoError(t, json.Unmarshal([]byte(stdout), &m))
	assert.InDelta(t, dres.Val.Margin, m["margin"], 1e-9, "dpo eval reproduces the final validation margin")
}

func TestSFTDPOCLIRejectsBadRows(t *testing.T) {
	dir := t.TempDir()
	long := make([]string, 70)
	for i := range long {
		long[i] = "5"
	}
	cases := []struct {
		name, cmd, row, want string
	}{
		{"sft too long", "sft", `{"prompt_ids": [1], "completion_ids": [` + strings.Join(long, ",") + `]}`, "rows.jsonl:2: field completion: example is 71 tokens, longer than the context window of 64"},
		{"sft wrong type", "sft", `{"prompt_ids": [1, 2], "completion_ids": "x"}`, "rows.jsonl:2: field completion_ids"},
		{"dpo empty rejected", "dpo", `{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": []}`, "rows.jsonl:2"},
		{"dpo out of vocab", "dpo", `{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [64]}`, "line 2: field rejected: token id 64 is outside the vocabulary [0,64)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			good := `{"prompt_ids": [1], "completion_ids": [2, 63]}`
			if c.cmd == "dpo" {
				good = `{"prompt_ids": [1], "chosen_ids": [2], "rejected_ids": [3]}`
			}
			path := filepath.Join(dir, "rows.jsonl")
			require.NoError(t, os.WriteFile(path, []byte(good+"\n"+c.row+"\n"), 0o644))
			model := filepath.Join(torchFixture, "reference")
			args := []string{c.cmd, "eval", "--input", path, "--threads", "1", "--json"}
			if c.cmd == "sft" {
				args = append(args, "--model", model)
			} else {
				args = append(args, "--policy", model, "--cache-dir", "")
			}
			_, _, err := runCLI(t, args...)
			require.Error(t, err)
			t.Log(err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

// TestDPOEvalTakesUnsetFlagsFromConfig: --set dpo.beta / dpo.nll_norm / dpo.formatting_token_ids
// stand in for the flags, and a flag given on the command line wins over the config.
func TestDPOEvalTakesUnsetFlagsFromConfig(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(torchFixture, "golden.json"))
	require.NoError(t, err)
	var golden struct {
		Cases []struct {
			Metrics map[string]float64 `json:"metrics"`
		} `json:"cases"`
	}
	require.NoError(t, json.Unmarshal(raw, &golden))
	base := []string{"dpo", "eval", "--policy", filepath.Join(torchFixture, "policy"), "--reference", filepath.Join(torchFixture, "reference"),
		"--input", filepath.Join(torchFixture, "pairs.jsonl"), "--cache-dir", "", "--threads", "1", "--json"}
	cases := []struct {
		name  string
		extra []string
		want  int // golden case
	}{
		{"preset defaults", []string{"--set", "dpo.formatting_token_ids=61,62,63"}, 0},
		{"set beta and norm", []string{"--set", "dpo.formatting_token_ids=61,62,63", "--set", "dpo.beta=0.5", "--set", "dpo.nll_norm=batch-token-mean"}, 1},
		{"flag wins", []string{"--set", "dpo.formatting_token_ids=1,2", "--set", "dpo.beta=0.9", "--beta", "0.25", "--nll-coef", "0", "--formatting-token-ids", "63"}, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stdout, _, err := runCLI(t, append(append([]string{}, base...), c.extra...)...)
			require.NoError(t, err)
			var got map[string]float64
			require.NoError(t, json.Unmarshal([]byte(stdout), &got))
			for _, k := range []string{"loss", "dpo_loss", "nll_loss", "margin"} {
				want := golden.Cases[c.want].Metrics[k]
				assert.InDelta(t, want, got[k], 1e-5+2e-6*max(want, -want), k)
			}
		})
	}
}

// TestStageCLIOnTextRowsUsesTheTokenizer: text rows are rendered with the model
// directory's tokenizer.json, whose header and end-of-turn tokens are the default
// formatting set (the same numbers as naming them with --formatting-token-ids).
func TestStageCLIOnTextRowsUsesTheTokenizer(t *testing.T) {
	dir := t.TempDir()
	tokPath := "../../tokenizer/testdata/tiny_llama3.json"
	tok, err := tokenizer.LoadFile(tokPath)
	require.NoError(t, err)
	for i, name := range []string{"policy", "reference"} {
		_, err := pretrain.Init(context.Background(), pretrain.InitOptions{Preset: "tiny", Tokenizer: tokPath,
			VocabSize: tok.VocabSize(), Seed: uint64(i + 1), OutDir: filepath.Join(dir, name)})
		require.NoError(t, err)
	}
	prefs := strings.Join([]string{
		`{"prompt": "What is two plus two?", "chosen": "Four.", "rejected": "Five, I think."}`,
		`{"prompt": [{"role": "user", "content": "Name a colour."}], "chosen": "Blue.", "rejected": "A car."}`,
		`{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "No.", "edited": "Hello!"}`,
	}, "\n") + "\n"
	prefPath := filepath.Join(dir, "prefs.jsonl")
	require.NoError(t, os.WriteFile(prefPath, []byte(prefs), 0o644))
	eval := func(extra ...string) map[string]float64 {
		args := append([]string{"dpo", "eval", "--policy", filepath.Join(dir, "policy"), "--reference", filepath.Join(dir, "reference"),
			"--input", prefPath, "--cache-dir", "", "--threads", "1", "--json"}, extra...)
		stdout, _, err := runCLI(t, args...)
		require.NoError(t, err)
		var m map[string]float64
		require.NoError(t, json.Unmarshal([]byte(stdout), &m))
		return m
	}
	masked := eval()
	ids := make([]string, 0, 5)
	for _, id := range tok.FormattingTokenIDs() {
		ids = append(ids, fmt.Sprint(id))
	}
	explicit := eval("--formatting-token-ids", strings.Join(ids, ","))
	unmasked := eval("--mask-formatting=false")
	assert.Equal(t, 3.0, masked["n"])
	assert.Equal(t, masked["dpo_loss"], explicit["dpo_loss"])
	assert.NotEqual(t, masked["dpo_loss"], unmasked["dpo_loss"], "the end-of-turn is masked by default")
	assert.Equal(t, masked["nll_loss"], unmasked["nll_loss"], "the NLL term covers formatting tokens either way")
	allPairs := eval("--edited", "all-pairs")
	assert.Equal(t, 5.0, allPairs["n"], "the edited row gives 3 ordered pairs")

	sftPath := filepath.Join(dir, "sft.jsonl")
	require.NoError(t, os.WriteFile(sftPath, []byte(`{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Bye!"}]}`+"\n"), 0o644))
	sftEval := func(extra ...string) map[string]float64 {
		stdout, _, err := runCLI(t, append([]string{"sft", "eval", "--model", filepath.Join(dir, "policy"), "--input", sftPath, "--threads", "1", "--json"}, extra...)...)
		require.NoError(t, err)
		var m map[string]float64
		require.NoError(t, json.Unmarshal([]byte(stdout), &m))
		return m
	}
	all, last := sftEval(), sftEval("--last-turn-only")
	assert.Equal(t, float64(len(tok.Encode("Hello!"))+len(tok.Encode("Bye!"))+2), all["tokens"], "both answers and their end-of-turn tokens")
	assert.Equal(t, float64(len(tok.Encode("Bye!"))+1), last["tokens"])
}
