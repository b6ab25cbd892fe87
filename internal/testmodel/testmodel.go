// Package testmodel holds the fixtures the training stages' tests share: the tiny
// Llama-3-style tokenizer, the tiny preset with seeded weights, the demo task's prompts
// as chat messages and a bitwise view of weights. It is for tests only.
package testmodel

import (
	"math"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

// TokenizerPath is the small Llama-3-style tokenizer shipped with the tokenizer tests,
// found from this file so that any package's tests can load it.
func TokenizerPath() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "tokenizer", "testdata", "tiny_llama3.json")
}

// Tokenizer loads the tokenizer at TokenizerPath.
func Tokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tok, err := tokenizer.LoadFile(TokenizerPath())
	require.NoError(t, err)
	return tok
}

// Tiny is the tiny preset causal LM on pool with weights initialised from seed.
func Tiny(t testing.TB, pool *kernels.Pool, seed uint64) *transformer.Model {
	t.Helper()
	return Preset(t, pool, "tiny", seed)
}

// Preset is the named preset's causal LM on pool with weights initialised from seed.
func Preset(t testing.TB, pool *kernels.Pool, name string, seed uint64) *transformer.Model {
	t.Helper()
	cfg, err := transformer.Preset(name)
	require.NoError(t, err)
	m, err := transformer.New(cfg, pool)
	require.NoError(t, err)
	m.Init(seed)
	return m
}

// Messages converts demo-task messages into the tokenizer's chat messages.
func Messages(conv []demotask.Message) []tokenizer.Message {
	msgs := make([]tokenizer.Message, len(conv))
	for i, m := range conv {
		msgs[i] = tokenizer.Message{Role: m.Role, Content: m.Content}
	}
	return msgs
}

// Bits is x's float32 bit patterns, for comparing weights exactly (NaN included).
func Bits(x []float32) []uint32 {
	out := make([]uint32, len(x))
	for i, v := range x {
		out[i] = math.Float32bits(v)
	}
	return out
}
