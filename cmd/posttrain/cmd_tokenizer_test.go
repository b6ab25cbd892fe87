package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/tokenizer"
)

// tokenizerCorpus writes a text file and a JSONL file of chats.
func tokenizerCorpus(t *testing.T) (txt, jsonl string) {
	t.Helper()
	dir := t.TempDir()
	var text, rows strings.Builder
	animals := []string{"cat", "dog", "horse", "parrot", "rabbit"}
	for i := range 400 {
		a, b := animals[i%5], animals[(i*3+1)%5]
		fmt.Fprintf(&text, "The %s chased the %s around the garden %d times.\n", a, b, i%17)
		fmt.Fprintf(&rows, `{"messages": [{"role": "user", "content": "Where is the %s?"}, {"role": "assistant", "content": "The %s is in the garden."}]}`+"\n", a, a)
	}
	txt = filepath.Join(dir, "corpus.txt")
	jsonl = filepath.Join(dir, "chats.jsonl")
	require.NoError(t, os.WriteFile(txt, []byte(text.String()), 0o644))
	require.NoError(t, os.WriteFile(jsonl, []byte(rows.String()), 0o644))
	return txt, jsonl
}

func TestTokenizerTrainEncodeDecode(t *testing.T) {
	txt, jsonl := tokenizerCorpus(t)
	out := filepath.Join(t.TempDir(), "tok")

	stdout, _, err := runCLIWithInput(t, "", "tokenizer", "train", "--vocab", "320", "--out", out, "--json", txt, jsonl)
	require.NoError(t, err)
	var s tokenizerTrainSummary
	require.NoError(t, json.Unmarshal([]byte(stdout), &s))
	assert.Equal(t, 320, s.VocabSize)
	assert.Equal(t, 320-256-7, s.Merges)
	assert.Equal(t, 7, s.SpecialTokens)
	assert.Equal(t, 2, s.InputFiles)
	assert.Greater(t, s.BytesPerToken, 3.0, "a 320-id vocabulary compresses this repetitive text well")
	tok, err := tokenizer.LoadDir(out)
	require.NoError(t, err)
	assert.Equal(t, 320, tok.VocabSize())

	// Training again without --overwrite refuses; the table output names the file.
	_, _, err = runCLIWithInput(t, "", "tokenizer", "train", "--vocab", "320", "--out", out, txt)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--overwrite")
	stdout, _, err = runCLIWithInput(t, "", "tokenizer", "train", "--vocab", "320", "--out", out, "--overwrite", txt)
	require.NoError(t, err)
	assert.Contains(t, stdout, filepath.Join(out, "tokenizer.json"))
	assert.Contains(t, stdout, "bytes/token")

	text := "The parrot chased the rabbit <|eot_id|>"
	stdout, _, err = runCLIWithInput(t, "", "tokenizer", "encode", "--tokenizer", out, "--json", text)
	require.NoError(t, err)
	var enc struct {
		IDs    []int32  `json:"ids"`
		Tokens []string `json:"tokens"`
	}
	require.NoError(t, json.Unmarshal([]byte(stdout), &enc))
	tok, err = tokenizer.LoadDir(out)
	require.NoError(t, err)
	assert.Equal(t, tok.Encode(text), enc.IDs)
	assert.Len(t, enc.Tokens, len(enc.IDs))
	assert.NotContains(t, enc.IDs, tok.EOT(), "specials stay text without --specials")

	stdout, _, err = runCLIWithInput(t, text, "tokenizer", "encode", "--tokenizer", filepath.Join(out, "tokenizer.json"), "--specials", "--json", "-")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal([]byte(stdout), &enc))
	assert.Equal(t, tok.EOT(), enc.IDs[len(enc.IDs)-1])

	stdout, _, err = runCLIWithInput(t, "", "tokenizer", "encode", "--tokenizer", out, "hi there")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	ids, err := tokenizer.ParseIDs(lines[0])
	require.NoError(t, err)
	assert.Equal(t, tok.Encode("hi there"), ids)
	assert.Contains(t, lines[len(lines)-1], fmt.Sprintf("%d tokens, 8 bytes", len(ids)))

	idArg := strings.Trim(strings.Join(strings.Fields(fmt.Sprint(enc.IDs)), ","), "[]")
	stdout, _, err = runCLIWithInput(t, "", "tokenizer", "decode", "--tokenizer", out, idArg)
	require.NoError(t, err)
	assert.Equal(t, text+"\n", stdout)
	stdout, _, err = runCLIWithInput(t, "", "tokenizer", "decode", "--tokenizer", out, "--skip-special", "--json", idArg)
	require.NoError(t, err)
	var dec map[string]string
	require.NoError(t, json.Unmarshal([]byte(stdout), &dec))
	assert.Equal(t, "The parrot chased the rabbit ", dec["text"])
}

func TestTokenizerCLIErrors(t *testing.T) {
	txt, _ := tokenizerCorpus(t)
	dir := t.TempDir()
	badJSONL := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(badJSONL, []byte("{\"text\": \"ok\"}\n{\"ids\": [1]}\n"), 0o644))
	tokDir := filepath.Join(dir, "tok")
	_, _, err := runCLIWithInput(t, "", "tokenizer", "train", "--vocab", "300", "--out", tokDir, txt)
	require.NoError(t, err)
	brokenDir := filepath.Join(dir, "broken")
	require.NoError(t, os.MkdirAll(brokenDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(brokenDir, "tokenizer.json"), []byte(`{"pre_tokenizer": {"type": "ByteLevel"}}`), 0o644))

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no vocab", []string{"train", "--out", filepath.Join(dir, "x"), txt}, "--vocab is required"},
		{"no out", []string{"train", "--vocab", "300", txt}, "--out is required"},
		{"no files", []string{"train", "--vocab", "300", "--out", filepath.Join(dir, "x")}, "requires at least 1 arg"},
		{"missing file", []string{"train", "--vocab", "300", "--out", filepath.Join(dir, "x"), filepath.Join(dir, "nope.txt")}, "nope.txt"},
		{"directory as file", []string{"train", "--vocab", "300", "--out", filepath.Join(dir, "x"), dir}, "is a directory"},
		{"vocab too small", []string{"train", "--vocab", "100", "--out", filepath.Join(dir, "x"), txt}, "too small"},
		{"bad jsonl row", []string{"train", "--vocab", "300", "--out", filepath.Join(dir, "x"), badJSONL}, "bad.jsonl:2: no text field"},
		{"encode without tokenizer", []string{"encode", "hi"}, "--tokenizer is required"},
		{"encode missing tokenizer", []string{"encode", "--tokenizer", filepath.Join(dir, "none"), "hi"}, "none"},
		{"encode broken tokenizer", []string{"encode", "--tokenizer", brokenDir, "hi"}, "model: missing"},
		{"decode bad id", []string{"decode", "--tokenizer", tokDir, "1,two"}, `"two" is not a token id`},
		{"decode out of range", []string{"decode", "--tokenizer", tokDir, "1", "300"}, "ids[1] = 300 is outside the vocabulary"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := runCLIWithInput(t, "", append([]string{"tokenizer"}, c.args...)...)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	_, err = os.Stat(filepath.Join(dir, "x"))
	assert.True(t, os.IsNotExist(err), "failed runs write nothing")
}
