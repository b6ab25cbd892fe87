package sft

import (
	"testing"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/stretchr/testify/require"
)

// demoRows renders n conversations of the bundled task with the chat template: real
// text, real tokens, assistant answers (and their end-of-turn) as targets.
func demoRows(t *testing.T, tok *tokenizer.Tokenizer, seed uint64, n int) []datasets.EncodedSFT {
	t.Helper()
	enc := &datasets.Encoder{Tok: tok, MaxLen: 256}
	var rows []datasets.EncodedSFT
	for i, conv := range demotask.CuratedSFT(seed, n) {
		msgs := testmodel.Messages(conv)
		r, err := enc.EncodeSFT(datasets.SFTExample{Messages: msgs, Line: i + 1}, datasets.SFTOptions{})
		require.NoError(t, err)
		rows = append(rows, r)
	}
	return rows
}
