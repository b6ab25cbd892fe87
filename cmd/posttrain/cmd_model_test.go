package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/safetensors"
	"github.com/posttrain/posttrain/tokenizer"
)

// modelCLIFixture writes a trained tokenizer directory and a small JSONL corpus.
func modelCLIFixture(t *testing.T) (tokDir, corpus string, vocab int) {
	t.Helper()
	dir := t.TempDir()
	var docs, lines []string
	names := []string{"Ada", "Ben", "Cleo", "Dan"}
	for i := 0; i < 60; i++ {
		d := fmt.Sprintf("%s found a red ball. %s gave the ball to %s.", names[i%4], names[i%4], names[(i+1)%4])
		docs = append(docs, d)
		lines = append(lines, fmt.Sprintf("{\"text\": %q}", d))
	}
	tok, err := tokenizer.Train(context.Background(), slices.Values(docs), 320, tokenizer.TrainOptions{})
	require.NoError(t, err)
	tokDir = filepath.Join(dir, "tok")
	require.NoError(t, tok.SaveDir(tokDir))
	corpus = filepath.Join(dir, "corpus.jsonl")
	require.NoError(t, os.WriteFile(corpus, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	return tokDir, corpus, tok.VocabSize()
}

func TestModelInitInfoPretrainResume(t *testing.T) {
	tokDir, corpus, vocab := modelCLIFixture(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "base0")

	stdout, _, err := runCLI(t, "model", "init", "--preset", "tiny", "--tokenizer", tokDir,
		"--vocab-size", fmt.Sprint(vocab), "--seed", "3", "--out", model, "--json")
	require.NoError(t, err)
	var info map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &info))
	assert.Equal(t, "LlamaForCausalLM", info["architecture"])
	assert.Equal(t, true, info["has_tokenizer"])
	cfg := info["config"].(map[string]any)
	assert.EqualValues(t, vocab, cfg["vocab_size"])
	assert.NotNil(t, cfg["bos_token_id"], "the tokenizer's BOS id is recorded")

	// Same seed, same weights; another seed, other weights.
	again := filepath.Join(dir, "again")
	_, _, err = runCLI(t, "model", "init", "--preset", "tiny", "--tokenizer", tokDir, "--vocab-size", fmt.Sprint(vocab), "--seed", "3", "--out", again)
	require.NoError(t, err)
	other := filepath.Join(dir, "other")
	_, _, err = runCLI(t, "model", "init", "--preset", "tiny", "--tokenizer", tokDir, "--vocab-size", fmt.Sprint(vocab), "--seed", "4", "--out", other)
	require.NoError(t, err)
	w0, _ := os.ReadFile(filepath.Join(model, "model.safetensors"))
	w1, _ := os.ReadFile(filepath.Join(again, "model.safetensors"))
	w2, _ := os.ReadFile(filepath.Join(other, "model.safetensors"))
	assert.True(t, bytes.Equal(w0, w1))
	assert.False(t, bytes.Equal(w0, w2))

	stdout, _, err = runCLI(t, "model", "info", model)
	require.NoError(t, err)
	assert.Contains(t, stdout, "LlamaForCausalLM")
	assert.Contains(t, stdout, "model.safetensors")
	assert.Regexp(t, `layers\s+2`, stdout)

	out := filepath.Join(dir, "base1")
	stdout, stderr, err := runCLI(t, "pretrain", "--model", model, "--data", corpus, "--out", out,
		"--steps", "4", "--batch", "2", "--seq", "32", "--lr", "2e-3", "--warmup", "1", "--checkpoint-every", "2", "--threads", "1", "--json")
	require.NoError(t, err)
	assert.Contains(t, stderr, "loss", "progress bar on stderr")
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	assert.EqualValues(t, 4, res["steps"])
	assert.EqualValues(t, 4*2*32, res["tokens"])
	assert.Less(t, res["final_loss"].(float64), res["first_loss"].(float64))

	stdout, _, err = runCLI(t, "model", "info", out, "--json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(stdout), &info))
	assert.EqualValues(t, 4, info["trainer_step"])

	// The corpus may also be given as arguments.
	stdout, _, err = runCLI(t, "pretrain", "--out", out, "--resume",
		"--steps", "6", "--batch", "2", "--seq", "32", "--lr", "2e-3", "--warmup", "1", "--threads", "1", corpus)
	require.NoError(t, err)
	assert.Contains(t, stdout, "steps       6 (this run 4..6)")
}

func TestModelCommandsRejectBadInput(t *testing.T) {
	tokDir, corpus, _ := modelCLIFixture(t)
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown preset", []string{"model", "init", "--preset", "huge", "--out", filepath.Join(dir, "a")}, `unknown model preset "huge"`},
		{"no size", []string{"model", "init", "--out", filepath.Join(dir, "b")}, "give --preset"},
		{"preset and config", []string{"model", "init", "--preset", "tiny", "--config", "c.json", "--out", filepath.Join(dir, "c")}, "not both"},
		{"vocab mismatch", []string{"model", "init", "--preset", "tiny", "--tokenizer", tokDir, "--out", filepath.Join(dir, "d")}, "pass --vocab-size"},
		{"missing config", []string{"model", "init", "--config", filepath.Join(dir, "nope.json"), "--out", filepath.Join(dir, "e")}, "nope.json"},
		{"info missing", []string{"model", "info", filepath.Join(dir, "nothing")}, "nothing"},
		{"info args", []string{"model", "info"}, "accepts 1 arg"},
		{"convert bad dtype", []string{"model", "convert", "--model", dir, "--out", filepath.Join(dir, "g"), "--dtype", "int8"}, `unknown --dtype "int8" (valid: bf16, f16, f32)`},
		{"convert no dtype", []string{"model", "convert", "--model", dir, "--out", filepath.Join(dir, "h")}, "--dtype is required"},
		{"convert no out", []string{"model", "convert", "--model", dir, "--dtype", "bf16"}, "--model and --out are required"},
		{"convert missing model", []string{"model", "convert", "--model", filepath.Join(dir, "nothing"), "--out", filepath.Join(dir, "i"), "--dtype", "bf16"}, "nothing"},
		{"pretrain no out", []string{"pretrain", "--model", dir, "--data", corpus}, "--out is required"},
		{"pretrain bad steps", []string{"pretrain", "--model", dir, "--data", corpus, "--out", filepath.Join(dir, "f"), "--steps", "0"}, "--steps must be >= 1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, tc.args...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestModelConvert(t *testing.T) {
	tokDir, _, vocab := modelCLIFixture(t)
	dir := t.TempDir()
	model := filepath.Join(dir, "base")
	_, _, err := runCLI(t, "model", "init", "--preset", "tiny", "--tokenizer", tokDir,
		"--vocab-size", fmt.Sprint(vocab), "--seed", "5", "--out", model)
	require.NoError(t, err)
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	orig, err := checkpoint.Load(context.Background(), model, pool)
	require.NoError(t, err)

	tests := []struct {
		flag   string
		dtype  string
		narrow func(float32) float32
	}{
		{"bf16", "BF16", func(v float32) float32 { return safetensors.BFloat16ToFloat32(safetensors.Float32ToBFloat16(v)) }},
		{"F16", "F16", func(v float32) float32 { return safetensors.HalfToFloat32(safetensors.Float32ToHalf(v)) }},
	}
	for _, tc := range tests {
		t.Run(tc.flag, func(t *testing.T) {
			out := filepath.Join(dir, "out-"+tc.flag)
			stdout, _, err := runCLI(t, "model", "convert", "--model", model, "--out", out, "--dtype", tc.flag, "--json")
			require.NoError(t, err)
			var res struct {
				Out         string `json:"out"`
				DType       string `json:"dtype"`
				Parameters  int64  `json:"parameters"`
				BytesBefore int64  `json:"bytes_before"`
				BytesAfter  int64  `json:"bytes_after"`
			}
			require.NoError(t, json.Unmarshal([]byte(stdout), &res))
			assert.Equal(t, out, res.Out)
			assert.Equal(t, tc.dtype, res.DType)
			assert.EqualValues(t, len(orig.W.Data), res.Parameters)
			st, err := os.Stat(filepath.Join(out, checkpoint.WeightsFile))
			require.NoError(t, err)
			assert.Equal(t, st.Size(), res.BytesAfter)
			assert.Less(t, float64(res.BytesAfter), 0.55*float64(res.BytesBefore), "about half: %d -> %d", res.BytesBefore, res.BytesAfter)

			got, err := checkpoint.Load(context.Background(), out, pool)
			require.NoError(t, err)
			require.Len(t, got.W.Data, len(orig.W.Data))
			for i, v := range orig.W.Data {
				require.Equalf(t, tc.narrow(v), got.W.Data[i], "weight %d", i)
			}
			tokA, err := os.ReadFile(filepath.Join(model, checkpoint.TokenizerFile))
			require.NoError(t, err)
			tokB, err := os.ReadFile(filepath.Join(out, checkpoint.TokenizerFile))
			require.NoError(t, err)
			assert.Equal(t, tokA, tokB, "tokenizer.json is copied along")

			info, _, err := runCLI(t, "model", "info", out)
			require.NoError(t, err)
			assert.Contains(t, info, tc.dtype+" x")
		})
	}

	// The table output names the sizes; f32 widens a narrow model back.
	back := filepath.Join(dir, "back")
	stdout, _, err := runCLI(t, "model", "convert", "--model", filepath.Join(dir, "out-bf16"), "--out", back, "--dtype", "f32")
	require.NoError(t, err)
	assert.Regexp(t, `dtype\s+F32`, stdout)
	assert.Regexp(t, `model\.safetensors\s+\d+ bytes -> \d+ bytes`, stdout)

	// --out must be empty unless --overwrite.
	_, _, err = runCLI(t, "model", "convert", "--model", model, "--out", back, "--dtype", "bf16")
	require.ErrorContains(t, err, "not empty")
	_, _, err = runCLI(t, "model", "convert", "--model", model, "--out", back, "--dtype", "bf16", "--overwrite")
	require.NoError(t, err)
}

func TestModelConvertRefusesF16Overflow(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "base")
	_, _, err := runCLI(t, "model", "init", "--preset", "tiny", "--seed", "1", "--out", model)
	require.NoError(t, err)
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	m, err := checkpoint.Load(context.Background(), model, pool)
	require.NoError(t, err)
	m.W.Norm[0] = 1e6
	big := filepath.Join(dir, "big")
	require.NoError(t, checkpoint.Save(context.Background(), big, m, checkpoint.SaveOptions{}))
	_, _, err = runCLI(t, "model", "convert", "--model", big, "--out", filepath.Join(dir, "f16"), "--dtype", "f16")
	require.ErrorContains(t, err, "beyond f16's range")
	_, statErr := os.Stat(filepath.Join(dir, "f16"))
	assert.True(t, os.IsNotExist(statErr), "nothing is written")
	_, _, err = runCLI(t, "model", "convert", "--model", big, "--out", filepath.Join(dir, "bf16"), "--dtype", "bf16")
	assert.NoError(t, err, "bf16 has float32's range")
}
