package sampling

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTokenSampler(t *testing.T) {
	// Probabilities at temperature 1: token 3 0.5, token 1 0.3, token 0 0.15, token 2 0.05.
	logits := []float32{float32(math.Log(0.15)), float32(math.Log(0.3)), float32(math.Log(0.05)), float32(math.Log(0.5))}
	tests := []struct {
		name    string
		p       Params
		allowed map[int32]bool
	}{
		{"greedy", Params{Temperature: 0}, map[int32]bool{3: true}},
		{"top-k 1", Params{Temperature: 1, TopK: 1}, map[int32]bool{3: true}},
		{"top-k 2", Params{Temperature: 1, TopK: 2}, map[int32]bool{3: true, 1: true}},
		{"top-p 0.5 keeps one", Params{Temperature: 1, TopP: 0.5}, map[int32]bool{3: true}},
		{"top-p 0.7", Params{Temperature: 1, TopP: 0.7}, map[int32]bool{3: true, 1: true}},
		{"top-p 0.9", Params{Temperature: 1, TopP: 0.9}, map[int32]bool{3: true, 1: true, 0: true}},
		{"full", Params{Temperature: 1}, map[int32]bool{0: true, 1: true, 2: true, 3: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTokenSampler(len(logits))
			seen := map[int32]bool{}
			for i := range 200 {
				tok, err := ts.draw(logits, &tc.p, (float64(i)+0.5)/200)
				require.NoError(t, err)
				require.True(t, tc.allowed[tok], "token %d drawn outside %v", tok, tc.allowed)
				seen[tok] = true
			}
			assert.Equal(t, tc.allowed, seen, "every allowed token is drawn for some u")
		})
	}
}

func TestTokenSamplerFrequencies(t *testing.T) {
	// With u on a fine grid, the draw frequencies are the renormalised probabilities.
	logits := []float32{float32(math.Log(0.15)), float32(math.Log(0.3)), float32(math.Log(0.05)), float32(math.Log(0.5))}
	ts := newTokenSampler(len(logits))
	counts := make([]float64, 4)
	const n = 20000
	p := Params{Temperature: 1, TopP: 0.7} // nucleus {3, 1}: 0.5/0.8 and 0.3/0.8
	for i := range n {
		tok, err := ts.draw(logits, &p, (float64(i)+0.5)/n)
		require.NoError(t, err)
		counts[tok]++
	}
	assert.InDelta(t, 0.625, counts[3]/n, 1e-3)
	assert.InDelta(t, 0.375, counts[1]/n, 1e-3)
}

func TestTokenSamplerRejectsNonFinite(t *testing.T) {
	ts := newTokenSampler(3)
	for _, l := range [][]float32{
		{0, float32(math.NaN()), 1},
		{0, float32(math.Inf(1)), 1},
		{float32(math.Inf(-1)), float32(math.Inf(-1)), float32(math.Inf(-1))},
	} {
		_, err := ts.draw(l, &Params{Temperature: 1}, 0.5)
		assert.ErrorIs(t, err, errNonFinite)
	}
}

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		p    Params
		want string
	}{
		{Params{MaxNewTokens: 0}, "max_new_tokens"},
		{Params{MaxNewTokens: 4, Temperature: -1}, "temperature"},
		{Params{MaxNewTokens: 4, TopK: -2}, "top_k"},
		{Params{MaxNewTokens: 4, TopP: 1.5}, "top_p"},
		{Params{MaxNewTokens: 4, StopTokens: []int32{600}}, "stop token 600"},
	}
	for _, tc := range tests {
		err := tc.p.validate(512)
		require.Error(t, err)
		assert.Contains(t, err.Error(), tc.want)
	}
	assert.NoError(t, (&Params{MaxNewTokens: 4, Temperature: 0.7, TopP: 0.9, TopK: 40}).validate(512))
}
