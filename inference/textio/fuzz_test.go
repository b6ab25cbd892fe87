package textio

import (
	"bytes"
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/tokenizer"
)

// FuzzParseRows feeds arbitrary JSONL to the row parser, with and without a tokenizer: it
// must never panic, and an accepted row always has ids to score.
func FuzzParseRows(f *testing.F) {
	for _, s := range []string{
		`{"prompt_ids": [1, 2], "completion_ids": [3]}`,
		`{"prompt": "the cat", "completion": "sat"}`,
		`{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}`,
		`{"messages": [{"role": "system"}]}` + "\n\n" + `{"prompt_ids": []}`,
		`{"prompt_ids": [99999999999], "completion_ids": [-1]}`,
	} {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	tok, err := tokenizer.Train(context.Background(), slices.Values([]string{"the cat sat on the mat"}), 280, tokenizer.TrainOptions{})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		for _, tk := range []*tokenizer.Tokenizer{nil, tok} {
			rows, err := ParseRows(bytes.NewReader(data), "fuzz.jsonl", RowOptions{Tokenizer: tk, Raw: raw})
			if err != nil {
				require.Nil(t, rows)
				continue
			}
			for _, r := range rows {
				require.Positive(t, r.Line)
				require.NotNil(t, r.Fields)
			}
		}
	})
}
