package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAddFile(t *testing.T) {
	dir := t.TempDir()
	txt := filepath.Join(dir, "a.txt")
	require.NoError(t, os.WriteFile(txt, []byte("hello world\nhello there\n"), 0o644))
	jsonl := filepath.Join(dir, "b.jsonl")
	require.NoError(t, os.WriteFile(jsonl, []byte(`{"text": "plain row"}

{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
{"prompt": "p", "completion": "c", "id": 7}
{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}], "rejected": [{"role": "assistant", "content": "bad"}]}
`), 0o644))
	tr := NewTrainer(TrainOptions{})
	var read int64
	for _, p := range []string{txt, jsonl} {
		require.NoError(t, tr.AddFile(t.Context(), p, func(n int64) { read += n }))
	}
	st1, _ := os.Stat(txt)
	st2, _ := os.Stat(jsonl)
	assert.Equal(t, st1.Size()+st2.Size(), read)
	for _, piece := range []string{"hello", " world", "plain", " row", "hi", "yo", "p", "c", "q", "good", "bad", "user", "assistant", "\n\n"} {
		assert.Positive(t, tr.counts[piece], "piece %q", piece)
	}
	assert.Zero(t, tr.counts["7"], "non-text fields are ignored")
}

func TestAddJSONLErrors(t *testing.T) {
	cases := []struct{ name, body, want string }{
		{"not json", "{\"text\": \"ok\"}\n{oops\n", "b.jsonl:2: not a JSON object"},
		{"array row", "[1]\n", "b.jsonl:1: not a JSON object"},
		{"no text", "{\"prompt_ids\": [1, 2]}\n", "b.jsonl:1: no text field"},
		{"bad field type", "{\"text\": 5}\n", `b.jsonl:1: field "text": want a string`},
		{"bad role", "\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"bot\", \"content\": \"b\"}]}\n", `b.jsonl:3: field "messages": chat: message 1: unknown role "bot"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := NewTrainer(TrainOptions{}).AddJSONL(t.Context(), strings.NewReader(c.body), "b.jsonl")
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
	err := NewTrainer(TrainOptions{}).AddFile(t.Context(), filepath.Join(t.TempDir(), "missing.txt"), nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing.txt")
}

func TestParseIDs(t *testing.T) {
	cases := []struct {
		in   string
		want []int32
		err  string
	}{
		{"1,2,3", []int32{1, 2, 3}, ""},
		{" 1 2\t3 ", []int32{1, 2, 3}, ""},
		{"[10, 20]", []int32{10, 20}, ""},
		{"", []int32{}, ""},
		{"1,x", nil, `ids[1]: "x" is not a token id`},
		{"99999999999", nil, "ids[0]"},
	}
	for _, c := range cases {
		got, err := ParseIDs(c.in)
		if c.err != "" {
			require.Error(t, err, c.in)
			assert.Contains(t, err.Error(), c.err)
			continue
		}
		require.NoError(t, err, c.in)
		assert.Equal(t, c.want, got)
	}
}
