package reward

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/internal/testmodel"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/require"
)

// newPool is a kernel pool closed with the test.
func newPool(t testing.TB, n int) *kernels.Pool {
	t.Helper()
	p := kernels.NewPool(n)
	t.Cleanup(p.Close)
	return p
}

// tinyRM is a reward model on the tiny preset's random backbone, with a random score
// head so that rewards differ from the start.
func tinyRM(t testing.TB, pool *kernels.Pool, seed uint64) *transformer.Model {
	t.Helper()
	m, err := FromCausalLM(testmodel.Tiny(t, pool, seed), seed, 0.5)
	require.NoError(t, err)
	return m
}

// formatMistake is a deterministic format violation of a correct answer: a chatty
// prefix, tail repetition, lower case with a trailing period, or echoing the question's
// first word. These are the synthetic rule's rejected responses.
func formatMistake(it demotask.Item, k int) string {
	switch k % 4 {
	case 0:
		return "The answer is " + it.Answer
	case 1:
		return it.Answer + " " + it.Answer + " " + it.Answer
	case 2:
		return strings.ToLower(it.Answer) + "."
	}
	return strings.Fields(it.UserText())[0]
}

// demoPreferences renders n preference rows of the bundled task: the correct,
// well-formatted answer is chosen over a format violation. Real text, real tokens.
func demoPreferences(t testing.TB, tok *tokenizer.Tokenizer, seed uint64, split demotask.Split, n int) []datasets.EncodedPreference {
	t.Helper()
	enc := &datasets.Encoder{Tok: tok, MaxLen: 256}
	var rows []datasets.EncodedPreference
	for i, it := range demotask.Generate(seed, split, n) {
		rej := formatMistake(it, i)
		if rej == it.Answer {
			rej = "The answer is " + it.Answer
		}
		msgs := testmodel.Messages(it.Prompt)
		p := datasets.Preference{
			Prompt:   datasets.Text{Messages: msgs, Form: datasets.FormMessages},
			Chosen:   datasets.Text{String: it.Answer, Form: datasets.FormString},
			Rejected: datasets.Text{String: rej, Form: datasets.FormString},
			Line:     i + 1,
		}
		r, err := enc.EncodePreference(p)
		require.NoError(t, err)
		rows = append(rows, r)
	}
	return rows
}

// randomIDs are k token ids drawn from rng in 1..vocab-1.
func randomIDs(rng *rand.Rand, k, vocab int) []int32 {
	out := make([]int32, k)
	for i := range out {
		out[i] = int32(1 + rng.IntN(vocab-1))
	}
	return out
}

// randomRows are pre-tokenized rows with random ids (1..vocab-1) of random lengths; with
// edited, each row also has an edited response.
func randomRows(seed uint64, n, vocab int, edited bool) []datasets.EncodedPreference {
	rng := rand.New(rand.NewPCG(seed, 7))
	ids := func(k int) []int32 { return randomIDs(rng, k, vocab) }
	rows := make([]datasets.EncodedPreference, n)
	for i := range rows {
		r := datasets.EncodedPreference{Prompt: ids(3 + rng.IntN(6)), Line: i + 1}
		k := 2
		if edited {
			k, r.HasEdited = 3, true
		}
		for j := 0; j < k; j++ {
			r.Responses = append(r.Responses, ids(2+rng.IntN(8)))
		}
		rows[i] = r
	}
	return rows
}

// rewardOf runs one forward pass of a single sequence and returns its reward.
func rewardOf(t testing.TB, m *transformer.Model, seq []int32) float64 {
	t.Helper()
	ws := m.NewWorkspace(1, len(seq))
	b := &transformer.Batch{B: 1, T: len(seq), Tokens: seq, Last: []int32{int32(len(seq) - 1)}}
	require.NoError(t, m.Forward(ws, b))
	return float64(ws.Rewards[0])
}

func concat(a, b []int32) []int32 { return append(append([]int32{}, a...), b...) }

// negLogSigmoid is -log sigmoid(x) in float64.
func negLogSigmoid(x float64) float64 { return math.Log1p(math.Exp(-x)) }
