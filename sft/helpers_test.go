package sft

import (
	"math"
	"testing"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/require"
)

// testTokenizer is the small Llama-3-style tokenizer shipped with the tokenizer tests.
func testTokenizer(t *testing.T) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.LoadFile("../tokenizer/testdata/tiny_llama3.json")
	require.NoError(t, err)
	return tok
}

// demoRows renders n conversations of the bundled task with the chat template: real
// text, real tokens, assistant answers (and their end-of-turn) as targets.
func demoRows(t *testing.T, tok *tokenizer.Tokenizer, seed uint64, n int) []datasets.EncodedSFT {
	t.Helper()
	enc := &datasets.Encoder{Tok: tok, MaxLen: 256}
	var rows []datasets.EncodedSFT
	for i, conv := range demotask.CuratedSFT(seed, n) {
		msgs := make([]tokenizer.Message, len(conv))
		for j, m := range conv {
			msgs[j] = tokenizer.Message{Role: m.Role, Content: m.Content}
		}
		r, err := enc.EncodeSFT(datasets.SFTExample{Messages: msgs, Line: i + 1}, datasets.SFTOptions{})
		require.NoError(t, err)
		rows = append(rows, r)
	}
	return rows
}

// tinyModel is the tiny preset with seeded random weights.
func tinyModel(t testing.TB, pool *kernels.Pool, seed uint64) *transformer.Model {
	t.Helper()
	cfg, err := transformer.Preset("tiny")
	require.NoError(t, err)
	m, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	m.Init(seed)
	return m
}

func bits(x []float32) []uint32 {
	out := make([]uint32, len(x))
	for i, v := range x {
		out[i] = math.Float32bits(v)
	}
	return out
}
