package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/sampling"
	"github.com/posttrain/posttrain/transformer"
)

// rsFixture saves a tiny random policy (with the tokenizer tests' tokenizer), a random
// reward model, and a prompts file mixing text, messages and ids rows.
func rsFixture(t *testing.T) (policy, rm, prompts string) {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	cfg, err := transformer.Preset("tiny")
	require.NoError(t, err)
	m, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	m.Init(3)
	policy, rm = filepath.Join(dir, "policy"), filepath.Join(dir, "rm")
	require.NoError(t, checkpoint.Save(ctx, policy, m, checkpoint.SaveOptions{TokenizerFrom: "../../tokenizer/testdata/tiny_llama3.json"}))
	rcfg := cfg
	rcfg.Architectures = []string{transformer.ArchSequenceClassifier}
	rcfg.NumLabels = 1
	r, err := transformer.New(rcfg, pool)
	require.NoError(t, err)
	r.Init(4)
	require.NoError(t, checkpoint.Save(ctx, rm, r, checkpoint.SaveOptions{}))
	prompts = filepath.Join(dir, "prompts.jsonl")
	require.NoError(t, os.WriteFile(prompts, []byte(`{"id": "q1", "prompt": "Name a prime."}
{"prompt": [{"role": "user", "content": "Add 2 and 3."}]}
{"messages": [{"role": "user", "content": "Say hi."}]}
{"id": "q4", "prompt_ids": [1, 2, 3, 4]}
`), 0o644))
	return policy, rm, prompts
}

func TestSampleCommand(t *testing.T) {
	policy, rm, prompts := rsFixture(t)
	dir := t.TempDir()
	out, all := filepath.Join(dir, "selected.jsonl"), filepath.Join(dir, "all.jsonl")
	stdout, stderr, err := runCLI(t, "sample", "--policy", policy, "--reward-model", rm, "--prompts", prompts,
		"--k", "4", "--max-new-tokens", "6", "--top-p", "0.9", "--keep-truncated", "--top-n", "2", "--dedup",
		"--system", "Be brief.", "--kv-budget", "1MiB", "--out", out, "--candidates", all, "--json", "--threads", "1")
	require.NoError(t, err, stderr)
	var sum sampleSummary
	require.NoError(t, json.Unmarshal([]byte(stdout), &sum), stdout)
	assert.Equal(t, 4, sum.Prompts)
	assert.Equal(t, 16, sum.Stats.Samples)
	assert.Equal(t, 3*sum.Stats.PrefillTokens, sum.Stats.PrefillTokensSaved, "K=4: each prompt prefilled once, saved 3 times")
	assert.LessOrEqual(t, sum.Stats.PeakKVBytes, int64(1<<20))
	assert.Positive(t, sum.Selected)
	assert.Contains(t, stderr, "sampling K=4")

	// The selected rows are SFT rows.
	rows, err := datasets.ReadSFTFile(out, datasets.ReadOptions{})
	require.NoError(t, err)
	assert.Len(t, rows, sum.Selected)
	// Every candidate is written.
	data, err := os.ReadFile(all)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Len(t, lines, 16)
	var c sampling.Candidate
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &c))
	assert.Equal(t, "q1", c.PromptID)
	assert.NotEmpty(t, c.Tokens)

	// Two shards give the unsharded run's candidates.
	var union []string
	for _, shard := range []string{"0", "1"} {
		part := filepath.Join(dir, "all-"+shard+".jsonl")
		_, stderr, err := runCLI(t, "sample", "--policy", policy, "--reward-model", rm, "--prompts", prompts,
			"--k", "4", "--max-new-tokens", "6", "--top-p", "0.9", "--keep-truncated", "--top-n", "2", "--dedup",
			"--system", "Be brief.", "--kv-budget", "1MiB", "--out", filepath.Join(dir, "sel-"+shard+".jsonl"),
			"--candidates", part, "--shards", "2", "--shard", shard, "--threads", "1")
		require.NoError(t, err, stderr)
		b, err := os.ReadFile(part)
		require.NoError(t, err)
		union = append(union, strings.Split(strings.TrimSpace(string(b)), "\n")...)
	}
	assert.Equal(t, lines, union)

	// Scoring without the reward model's cache gives the same samples and rewards
	// (to float32 rounding).
	plain := filepath.Join(dir, "all-plain.jsonl")
	_, stderr, err = runCLI(t, "sample", "--policy", policy, "--reward-model", rm, "--prompts", prompts,
		"--k", "4", "--max-new-tokens", "6", "--top-p", "0.9", "--keep-truncated", "--top-n", "2", "--dedup",
		"--system", "Be brief.", "--kv-budget", "1MiB", "--out", filepath.Join(dir, "sel-plain.jsonl"),
		"--candidates", plain, "--rm-kv-cache=false", "--threads", "1")
	require.NoError(t, err, stderr)
	b, err := os.ReadFile(plain)
	require.NoError(t, err)
	plainLines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, plainLines, len(lines))
	for i := range lines {
		var x, y sampling.Candidate
		require.NoError(t, json.Unmarshal([]byte(lines[i]), &x))
		require.NoError(t, json.Unmarshal([]byte(plainLines[i]), &y))
		assert.Equal(t, x.Tokens, y.Tokens)
		assert.InDelta(t, x.Reward, y.Reward, 1e-4)
	}
}

func TestSampleCommandHumanSummary(t *testing.T) {
	policy, rm, prompts := rsFixture(t)
	out := filepath.Join(t.TempDir(), "selected.jsonl")
	stdout, stderr, err := runCLI(t, "sample", "--policy", policy, "--reward-model", rm, "--prompts", prompts,
		"--k", "2", "--max-new-tokens", "4", "--out", out, "--threads", "1")
	require.NoError(t, err, stderr)
	for _, want := range []string{"prompts", "samples", "prefill tokens", "peak KV cache", "samples/s"} {
		assert.Contains(t, stdout, want)
	}
}

func TestSampleCommandErrors(t *testing.T) {
	policy, rm, prompts := rsFixture(t)
	out := filepath.Join(t.TempDir(), "selected.jsonl")
	base := []string{"sample", "--policy", policy, "--reward-model", rm, "--prompts", prompts, "--out", out, "--threads", "1"}
	tests := []struct {
		name  string
		extra []string
		want  string
	}{
		{"budget too small", []string{"--kv-budget", "4KiB"}, `prompt "q1" (line 1) can never be admitted`},
		{"bad budget", []string{"--kv-budget", "lots"}, "--kv-budget"},
		{"reward model is a causal LM", []string{"--reward-model", policy}, "not a reward model"},
		{"policy is a reward model", []string{"--policy", rm}, "needs a causal LM"},
		{"bad shard", []string{"--shards", "2", "--shard", "2"}, "--shards/--shard"},
		{"bad k", []string{"--k", "0"}, "--k must be"},
		{"too long", []string{"--max-new-tokens", "1000"}, "max_position_embeddings"},
		{"bad verify", []string{"--verify", "exact"}, `--verify must be none or answer, got "exact"`},
		{"bad verify from the config", []string{"--set", "sampling.verify=exact"}, "sampling.verify"},
		{"verify without answers", []string{"--verify", "answer"}, prompts + `: --verify answer needs rows with an "answer" field; none has one`},
		{"verify without answers, from the config", []string{"--set", "sampling.verify=answer"}, `needs rows with an "answer" field`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := runCLI(t, append(append([]string{}, base...), tc.extra...)...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			_, statErr := os.Stat(out)
			assert.True(t, os.IsNotExist(statErr), "no output on error")
		})
	}
}

func TestSampleCommandReadsPipelineConfig(t *testing.T) {
	policy, rm, prompts := rsFixture(t)
	out := filepath.Join(t.TempDir(), "selected.jsonl")
	stdout, stderr, err := runCLI(t, "sample", "--policy", policy, "--reward-model", rm, "--prompts", prompts, "--out", out,
		"--threads", "1", "--max-new-tokens", "4", "--keep-truncated", "--json",
		"--set", "sampling.k=3", "--set", "sampling.min_reward=100", "--set", "sampling.kv_budget_bytes=0")
	require.NoError(t, err, stderr)
	var sum sampleSummary
	require.NoError(t, json.Unmarshal([]byte(stdout), &sum), stdout)
	assert.Equal(t, 4*3, sum.Stats.Samples, "k from the config")
	assert.Zero(t, sum.Selected, "min_reward from the config drops everything")
	assert.Equal(t, 4, sum.Stats.PeakPromptsInFlight, "kv_budget_bytes 0: no limit, all prompts at once")

	// A flag wins over the config.
	stdout, stderr, err = runCLI(t, "sample", "--policy", policy, "--reward-model", rm, "--prompts", prompts, "--out", out,
		"--threads", "1", "--max-new-tokens", "4", "--keep-truncated", "--json", "--k", "2", "--min-reward", "-100",
		"--set", "sampling.k=3", "--set", "sampling.min_reward=100")
	require.NoError(t, err, stderr)
	require.NoError(t, json.Unmarshal([]byte(stdout), &sum), stdout)
	assert.Equal(t, 4*2, sum.Stats.Samples)
	assert.Positive(t, sum.Selected)
}

// rsCandidates reads a --candidates file.
func rsCandidates(t *testing.T, path string) []sampling.Candidate {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var cands []sampling.Candidate
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var c sampling.Candidate
		require.NoError(t, json.Unmarshal([]byte(line), &c), line)
		cands = append(cands, c)
	}
	return cands
}

// rsRun runs `posttrain sample` on prompts with fixed sampling flags plus extra, and
// returns its summary and candidates.
func rsRun(t *testing.T, policy, rm, prompts string, extra ...string) (sampleSummary, []sampling.Candidate) {
	t.Helper()
	dir := t.TempDir()
	all := filepath.Join(dir, "all.jsonl")
	args := append([]string{"sample", "--policy", policy, "--reward-model", rm, "--prompts", prompts,
		"--k", "4", "--max-new-tokens", "6", "--keep-truncated", "--top-n", "2", "--kv-budget", "1MiB",
		"--out", filepath.Join(dir, "selected.jsonl"), "--candidates", all, "--json", "--threads", "1"}, extra...)
	stdout, stderr, err := runCLI(t, args...)
	require.NoError(t, err, stderr)
	var sum sampleSummary
	require.NoError(t, json.Unmarshal([]byte(stdout), &sum), stdout)
	return sum, rsCandidates(t, all)
}

func TestSampleCommandVerifyAnswer(t *testing.T) {
	policy, rm, _ := rsFixture(t)
	dir := t.TempDir()
	// q1 and q2 have answers no sample can be; q3 has none and so is not checked.
	prompts := filepath.Join(dir, "answers.jsonl")
	require.NoError(t, os.WriteFile(prompts, []byte(`{"id": "q1", "prompt": "Name a prime.", "answer": "ZZZZ-no-model-says-this"}
{"id": "q2", "prompt": [{"role": "user", "content": "Add 2 and 3."}], "answer": "ZZZZ-no-model-says-this"}
{"id": "q3", "prompt": "Say hi."}
`), 0o644))

	// --verify none (the default): the answers change nothing.
	base, baseCands := rsRun(t, policy, rm, prompts)
	assert.Equal(t, "none", base.Verify)
	none, noneCands := rsRun(t, policy, rm, prompts, "--verify", "none")
	assert.Equal(t, baseCands, noneCands)
	assert.Equal(t, base.Selected, none.Selected)
	assert.Equal(t, 3*2, none.Selected, "top-n 2 of every prompt")
	assert.Zero(t, none.Stats.VerifiedSamples+none.Stats.RejectedSamples)
	for _, c := range noneCands {
		assert.Nil(t, c.Verified, "nothing is checked")
	}

	// --verify answer: the same samples, but none of q1 and q2 can be selected.
	sum, cands := rsRun(t, policy, rm, prompts, "--verify", "answer")
	assert.Equal(t, "answer", sum.Verify)
	require.Len(t, cands, len(noneCands))
	assert.Equal(t, 2*4, sum.Stats.RejectedSamples)
	assert.Zero(t, sum.Stats.VerifiedSamples)
	assert.Equal(t, 2, sum.Selected, "only q3's samples, which have no answer to check")
	for i, c := range cands {
		assert.Equal(t, noneCands[i].Tokens, c.Tokens, "verifying does not change sampling")
		if c.PromptID == "q3" {
			assert.Nil(t, c.Verified, "a row without an answer is not checked")
			continue
		}
		require.NotNil(t, c.Verified, "candidate %d of %s", c.SampleIndex, c.PromptID)
		assert.False(t, *c.Verified)
		assert.False(t, c.Selected)
	}

	// When no row's answer can match, nothing at all is selected.
	impossible := filepath.Join(dir, "impossible.jsonl")
	require.NoError(t, os.WriteFile(impossible, []byte(`{"id": "q1", "prompt": "Name a prime.", "answer": "ZZZZ-no-model-says-this"}
{"id": "q4", "prompt_ids": [1, 2, 3, 4], "answer": "ZZZZ-no-model-says-this"}
`), 0o644))
	sum, cands = rsRun(t, policy, rm, impossible, "--verify", "answer")
	assert.Zero(t, sum.Selected)
	assert.Equal(t, 2*4, sum.Stats.RejectedSamples)
	require.Len(t, cands, 2*4)
	for _, c := range cands {
		require.NotNil(t, c.Verified)
		assert.False(t, *c.Verified)
		assert.False(t, c.Selected)
	}

	// The config's sampling.verify is the default, and the flag wins over it.
	sum, _ = rsRun(t, policy, rm, prompts, "--set", "sampling.verify=answer")
	assert.Equal(t, "answer", sum.Verify)
	assert.Equal(t, 2*4, sum.Stats.RejectedSamples)
	sum, _ = rsRun(t, policy, rm, prompts, "--set", "sampling.verify=answer", "--verify", "none")
	assert.Equal(t, "none", sum.Verify)
	assert.Equal(t, 3*2, sum.Selected)

	// An answer equal to a sample's text (white space aside) verifies that sample, and
	// only passing samples are selected.
	var right sampling.Candidate
	for _, c := range noneCands {
		if c.PromptID == "q1" && strings.TrimSpace(c.Text) != "" {
			right = c
			break
		}
	}
	require.NotEmpty(t, right.Text, "some sample of q1 has text")
	answer, err := json.Marshal("  " + right.Text + "\n")
	require.NoError(t, err)
	matching := filepath.Join(dir, "matching.jsonl")
	require.NoError(t, os.WriteFile(matching, []byte(`{"id": "q1", "prompt": "Name a prime.", "answer": `+string(answer)+`}
`), 0o644))
	sum, cands = rsRun(t, policy, rm, matching, "--verify", "answer")
	require.Len(t, cands, 4)
	assert.Positive(t, sum.Stats.VerifiedSamples)
	assert.Equal(t, 4, sum.Stats.VerifiedSamples+sum.Stats.RejectedSamples)
	assert.Equal(t, min(sum.Stats.VerifiedSamples, 2), sum.Selected, "top-n 2 picks among the passing samples only")
	for _, c := range cands {
		require.NotNil(t, c.Verified)
		assert.Equal(t, strings.TrimSpace(c.Text) == strings.TrimSpace(right.Text), *c.Verified)
		if c.Selected {
			assert.True(t, *c.Verified, "a failing sample is never selected")
		}
	}
}

func TestSampleCommandVerifyNeedsTokenizer(t *testing.T) {
	policy, rm, _ := rsFixture(t)
	dir := t.TempDir()
	// The policy without its tokenizer: pre-tokenized prompts still sample, but have no text.
	bare := filepath.Join(dir, "bare")
	require.NoError(t, os.Mkdir(bare, 0o755))
	entries, err := os.ReadDir(policy)
	require.NoError(t, err)
	for _, e := range entries {
		if e.IsDir() || e.Name() == checkpoint.TokenizerFile {
			continue
		}
		b, err := os.ReadFile(filepath.Join(policy, e.Name()))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(bare, e.Name()), b, 0o644))
	}
	prompts := filepath.Join(dir, "ids.jsonl")
	require.NoError(t, os.WriteFile(prompts, []byte(`{"id": "q4", "prompt_ids": [1, 2, 3, 4], "answer": "4"}
`), 0o644))
	out := filepath.Join(dir, "selected.jsonl")
	base := []string{"sample", "--policy", bare, "--reward-model", rm, "--prompts", prompts, "--k", "2",
		"--max-new-tokens", "4", "--out", out, "--threads", "1"}
	_, stderr, err := runCLI(t, base...)
	require.NoError(t, err, stderr)
	_, _, err = runCLI(t, append(base, "--verify", "answer")...)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--verify answer compares sample text, but --policy "+bare+" has no tokenizer.json")
}

func TestSampleCommandVerifySummary(t *testing.T) {
	policy, rm, _ := rsFixture(t)
	prompts := filepath.Join(t.TempDir(), "answers.jsonl")
	require.NoError(t, os.WriteFile(prompts, []byte(`{"prompt": "Name a prime.", "answer": "ZZZZ-no-model-says-this"}
{"prompt": "Say hi."}
`), 0o644))
	out := filepath.Join(t.TempDir(), "selected.jsonl")
	stdout, stderr, err := runCLI(t, "sample", "--policy", policy, "--reward-model", rm, "--prompts", prompts,
		"--k", "2", "--max-new-tokens", "4", "--out", out, "--threads", "1", "--verify", "answer")
	require.NoError(t, err, stderr)
	assert.Contains(t, stdout, "0 right, 2 wrong (never selected), 2 unchecked")
}
