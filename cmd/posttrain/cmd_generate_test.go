package main

import (
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
	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

// genFixture saves a tiny random causal LM twice: with a trained tokenizer (withTok) and
// without one (idsOnly), plus a reward model directory.
func genFixture(t *testing.T) (withTok, idsOnly, reward string, tok *tokenizer.Tokenizer) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	texts := []string{"the cat sat on the mat", "a dog ran to the park", "hello world, hello cat"}
	tok, err := tokenizer.Train(ctx, slices.Values(texts), 300, tokenizer.TrainOptions{})
	require.NoError(t, err)
	tokDir := filepath.Join(dir, "tok")
	require.NoError(t, tok.SaveDir(tokDir))
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	cfg := transformer.Config{
		Architectures: []string{transformer.ArchCausalLM}, ModelType: "llama",
		VocabSize: tok.VocabSize(), HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2,
		NumAttentionHeads: 4, NumKeyValueHeads: 2, MaxPositionEmbeddings: 64,
		RMSNormEps: 1e-5, RopeTheta: 500000, HiddenAct: "silu", InitializerRange: 0.2,
	}
	m, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	m.Init(11)
	withTok, idsOnly, reward = filepath.Join(dir, "lm"), filepath.Join(dir, "lm-ids"), filepath.Join(dir, "rm")
	require.NoError(t, checkpoint.Save(ctx, withTok, m, checkpoint.SaveOptions{TokenizerFrom: tokDir}))
	require.NoError(t, checkpoint.Save(ctx, idsOnly, m, checkpoint.SaveOptions{}))
	rm, err := checkpoint.LoadAsClassifier(ctx, idsOnly, pool, checkpoint.ScoreInit{})
	require.NoError(t, err)
	require.NoError(t, checkpoint.Save(ctx, reward, rm, checkpoint.SaveOptions{}))
	return withTok, idsOnly, reward, tok
}

func TestGenerateCLI(t *testing.T) {
	withTok, idsOnly, reward, tok := genFixture(t)
	ctx := context.Background()

	// --prompt-ids on a directory without tokenizer.json, greedy: the engine's output.
	stdout, _, err := runCLI(t, "generate", "--model", idsOnly, "--prompt-ids", "1,2,3", "--greedy", "--max-new-tokens", "9", "--json")
	require.NoError(t, err)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &res))
	assert.NotContains(t, res, "text", "no tokenizer, no text")
	pool := kernels.NewPool(1)
	defer pool.Close()
	m, err := checkpoint.Load(ctx, idsOnly, pool)
	require.NoError(t, err)
	eng, err := inference.NewEngine(m, inference.Options{})
	require.NoError(t, err)
	want, err := eng.Generate(ctx, inference.Request{Prompt: []int32{1, 2, 3}, Samples: 1, Params: inference.Params{MaxNewTokens: 9, Greedy: true}})
	require.NoError(t, err)
	var ids []int32
	for _, v := range res["completion_ids"].([]any) {
		ids = append(ids, int32(v.(float64)))
	}
	assert.Equal(t, want[0].Tokens, ids)
	assert.Equal(t, want[0].FinishReason, res["finish_reason"])

	// Plain output without a tokenizer is the ids.
	stdout, _, err = runCLI(t, "generate", "--model", idsOnly, "--prompt-ids", "[1, 2, 3]", "--greedy", "--max-new-tokens", "9")
	require.NoError(t, err)
	assert.Equal(t, strings.Trim(strings.Join(strings.Fields(fmt.Sprint(want[0].Tokens)), ","), "[]")+"\n", stdout)

	// --prompt with the chat template: seeded, reproducible, and the text decodes the ids.
	gen := func(args ...string) generateResult {
		t.Helper()
		out, _, err := runCLI(t, append([]string{"generate", "--model", withTok, "--max-new-tokens", "12", "--json"}, args...)...)
		require.NoError(t, err)
		var r generateResult
		require.NoError(t, json.Unmarshal([]byte(out), &r))
		require.NotNil(t, r.Text)
		// JSON carries the decoded text with invalid UTF-8 bytes replaced.
		enc, err := json.Marshal(tok.DecodeWithoutSpecials(r.CompletionIDs))
		require.NoError(t, err)
		var wantText string
		require.NoError(t, json.Unmarshal(enc, &wantText))
		assert.Equal(t, wantText, *r.Text)
		return r
	}
	a := gen("--prompt", "hello cat", "--seed", "3", "--top-p", "0.95", "--top-k", "50")
	b := gen("--prompt", "hello cat", "--seed", "3", "--top-p", "0.95", "--top-k", "50")
	c := gen("--prompt", "hello cat", "--seed", "4", "--temperature", "1.5")
	assert.Equal(t, a, b, "same seed, same output")
	assert.NotEqual(t, a.CompletionIDs, c.CompletionIDs)

	// --messages renders the same prompt as --prompt for one user message.
	msgFile := filepath.Join(t.TempDir(), "chat.json")
	require.NoError(t, os.WriteFile(msgFile, []byte(`[{"role": "user", "content": "hello cat"}]`), 0o644))
	assert.Equal(t, a, gen("--messages", msgFile, "--seed", "3", "--top-p", "0.95", "--top-k", "50"))
	// --raw gives a different prompt, hence (almost surely) a different greedy output than
	// the template; both run.
	raw := gen("--prompt", "hello cat", "--raw", "--greedy")
	tmpl := gen("--prompt", "hello cat", "--greedy")
	assert.NotEmpty(t, raw.CompletionIDs)
	assert.NotEmpty(t, tmpl.CompletionIDs)

	// Several samples: one JSON line each, and a plain-text listing.
	stdout, _, err = runCLI(t, "generate", "--model", withTok, "--prompt", "hi", "--samples", "3", "--max-new-tokens", "5", "--json")
	require.NoError(t, err)
	assert.Len(t, strings.Split(strings.TrimSpace(stdout), "\n"), 3)
	stdout, _, err = runCLI(t, "generate", "--model", withTok, "--prompt", "hi", "--samples", "2", "--max-new-tokens", "5")
	require.NoError(t, err)
	assert.Contains(t, stdout, "--- sample 2")

	bad := []struct {
		name string
		args []string
		want string
	}{
		{"no prompt", []string{"--model", withTok}, "at least one of the flags"},
		{"two prompts", []string{"--model", withTok, "--prompt", "x", "--prompt-ids", "1"}, "none of the others can be"},
		{"no model", []string{"--prompt-ids", "1"}, "--model is required"},
		{"text without tokenizer", []string{"--model", idsOnly, "--prompt", "x"}, "no tokenizer.json"},
		{"bad ids", []string{"--model", idsOnly, "--prompt-ids", "1,x"}, `--prompt-ids: ids[1]: "x" is not a token id`},
		{"id outside vocab", []string{"--model", idsOnly, "--prompt-ids", "1,100000"}, "prompt token 100000 at index 1 is outside the vocabulary"},
		{"prompt fills the context", []string{"--model", idsOnly, "--prompt-ids", strings.Repeat("1,", 64) + "1"}, "prompt of 65 tokens"},
		{"context", []string{"--model", idsOnly, "--prompt-ids", "1,2,3", "--max-new-tokens", "62"}, "exceeds max_position_embeddings=64"},
		{"reward model", []string{"--model", reward, "--prompt-ids", "1"}, "reward model"},
		{"raw without prompt", []string{"--model", idsOnly, "--prompt-ids", "1", "--raw"}, "--raw applies to --prompt only"},
		{"top-p", []string{"--model", idsOnly, "--prompt-ids", "1", "--top-p", "2"}, "top_p must be in [0, 1]"},
		{"missing dir", []string{"--model", filepath.Join(t.TempDir(), "nope"), "--prompt-ids", "1"}, "config.json"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := runCLI(t, append([]string{"generate"}, c.args...)...)
			require.ErrorContains(t, err, c.want)
		})
	}
}

func TestEvalLogprobsCLI(t *testing.T) {
	withTok, idsOnly, _, tok := genFixture(t)
	dir := t.TempDir()
	in := filepath.Join(dir, "in.jsonl")
	out := filepath.Join(dir, "out.jsonl")
	chat, err := tok.RenderChat([]tokenizer.Message{{Role: "user", Content: "the cat"}, {Role: "assistant", Content: "sat on the mat"}}, tokenizer.RenderOptions{})
	require.NoError(t, err)
	last := chat.Turns[1]
	idsRow, err := json.Marshal(map[string]any{"prompt_ids": chat.IDs[:last.ContentStart], "completion_ids": chat.IDs[last.ContentStart:last.End], "k": "ids"})
	require.NoError(t, err)
	rows := string(idsRow) + "\n" +
		`{"prompt": "the cat", "completion": "sat on the mat", "k": "text"}` + "\n" +
		`{"messages": [{"role": "user", "content": "the cat"}, {"role": "assistant", "content": "sat on the mat"}], "k": "messages"}` + "\n"
	require.NoError(t, os.WriteFile(in, []byte(rows), 0o644))
	stdout, stderr, err := runCLI(t, "eval", "logprobs", "--model", withTok, "--input", in, "--output", out, "--json")
	require.NoError(t, err)
	assert.Contains(t, stderr, "scoring", "progress bar on stderr")
	var sum map[string]any
	require.NoError(t, json.Unmarshal([]byte(stdout), &sum))
	assert.EqualValues(t, 3, sum["rows"])

	raw, err := os.ReadFile(out)
	require.NoError(t, err)
	var got []struct {
		K             string    `json:"k"`
		LogProb       float64   `json:"logprob"`
		TokenLogProbs []float32 `json:"token_logprobs"`
	}
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var r struct {
			K             string    `json:"k"`
			LogProb       float64   `json:"logprob"`
			TokenLogProbs []float32 `json:"token_logprobs"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		got = append(got, r)
	}
	require.Len(t, got, 3)
	assert.Equal(t, []string{"ids", "text", "messages"}, []string{got[0].K, got[1].K, got[2].K})
	assert.Len(t, got[0].TokenLogProbs, last.End-last.ContentStart)
	assert.Equal(t, got[0].TokenLogProbs, got[1].TokenLogProbs)
	assert.Equal(t, got[0].TokenLogProbs, got[2].TokenLogProbs)
	assert.Less(t, got[0].LogProb, 0.0)

	// Pre-tokenized rows work on a directory without tokenizer.json and match a direct
	// scorer run; text rows there are rejected naming file:line.
	require.NoError(t, os.WriteFile(in, []byte(string(idsRow)+"\n"), 0o644))
	stdout, _, err = runCLI(t, "eval", "logprobs", "--model", idsOnly, "--input", in, "--output", out)
	require.NoError(t, err)
	assert.Contains(t, stdout, "scored 1 rows")
	raw, err = os.ReadFile(out)
	require.NoError(t, err)
	var one struct {
		LogProb float64 `json:"logprob"`
	}
	require.NoError(t, json.Unmarshal(raw, &one))
	assert.InDelta(t, got[0].LogProb, one.LogProb, 1e-6)

	require.NoError(t, os.WriteFile(in, []byte(string(idsRow)+"\n"+`{"prompt": "a", "completion": "b"}`+"\n"), 0o644))
	_, _, err = runCLI(t, "eval", "logprobs", "--model", idsOnly, "--input", in, "--output", out)
	require.ErrorContains(t, err, in+":2: a prompt/completion row needs a tokenizer")

	require.NoError(t, os.WriteFile(in, []byte(`{"prompt_ids": [1], "completion_ids": [1, 2, 99999]}`+"\n"), 0o644))
	_, _, err = runCLI(t, "eval", "logprobs", "--model", idsOnly, "--input", in, "--output", out)
	require.ErrorContains(t, err, in+":1: completion token 99999 at index 2 is outside the vocabulary")

	_, _, err = runCLI(t, "eval", "logprobs", "--model", idsOnly, "--input", filepath.Join(dir, "missing.jsonl"), "--output", out)
	require.ErrorContains(t, err, "missing.jsonl")
	_, _, err = runCLI(t, "eval", "logprobs", "--model", idsOnly, "--output", out)
	require.ErrorContains(t, err, "--input and --output are required")
}
