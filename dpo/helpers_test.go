package dpo

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/stretchr/testify/require"
)

// demoPairs are preferences of the bundled task rendered with the chat template: the
// correct answer is chosen over a plausible mistake. Responses end with the end-of-turn
// token, which the tokenizer's formatting set masks.
func demoPairs(t testing.TB, tok *tokenizer.Tokenizer, seed uint64, n int) []Pair {
	t.Helper()
	enc := &datasets.Encoder{Tok: tok, MaxLen: 256}
	rng := rand.New(rand.NewPCG(seed, 7))
	var rows []datasets.EncodedPreference
	for i, it := range demotask.Generate(seed, demotask.Train, n) {
		msgs := testmodel.Messages(it.Prompt)
		bad := demotask.Mistake(rng, it)
		if bad == it.Answer {
			bad = it.Answer + " maybe"
		}
		p := datasets.Preference{
			Prompt:   datasets.Text{Form: datasets.FormMessages, Messages: msgs},
			Chosen:   datasets.Text{Form: datasets.FormString, String: it.Answer},
			Rejected: datasets.Text{Form: datasets.FormString, String: bad},
			Line:     i + 1,
		}
		e, err := enc.EncodePreference(p)
		require.NoError(t, err)
		rows = append(rows, e)
	}
	pairs, err := Pairs(rows, "")
	require.NoError(t, err)
	return pairs
}

// softplus is log(1 + e^x), written stably.
func softplus(x float64) float64 {
	if x > 0 {
		return x + math.Log1p(math.Exp(-x))
	}
	return math.Log1p(math.Exp(x))
}
