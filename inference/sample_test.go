package inference

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// frequencies samples logits at n evenly spaced u values, so each token's count is its
// probability under the sampler times n, up to rounding.
func frequencies(t *testing.T, logits []float32, p Params, n int) []float64 {
	t.Helper()
	ts := NewTokenSampler(len(logits))
	freq := make([]float64, len(logits))
	for i := range n {
		tok, err := ts.Sample(logits, &p, (float64(i)+0.5)/float64(n))
		require.NoError(t, err)
		freq[tok]++
	}
	for i := range freq {
		freq[i] /= float64(n)
	}
	return freq
}

func logs(p ...float64) []float32 {
	out := make([]float32, len(p))
	for i, v := range p {
		out[i] = float32(math.Log(v))
	}
	return out
}

func TestSamplerDistributions(t *testing.T) {
	// Shuffled order so selection cannot rely on sorted input.
	base := logs(0.05, 0.5, 0.15, 0.3)
	cases := []struct {
		name string
		p    Params
		want []float64
	}{
		{"plain", Params{Temperature: 1}, []float64{0.05, 0.5, 0.15, 0.3}},
		{"top-k 2", Params{Temperature: 1, TopK: 2}, []float64{0, 0.5 / 0.8, 0, 0.3 / 0.8}},
		{"top-k 3", Params{Temperature: 1, TopK: 3}, []float64{0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95}},
		{"top-k beyond vocab", Params{Temperature: 1, TopK: 10}, []float64{0.05, 0.5, 0.15, 0.3}},
		{"top-p 0.5 keeps the top token", Params{Temperature: 1, TopP: 0.5}, []float64{0, 1, 0, 0}},
		{"top-p 0.1 keeps at least one", Params{Temperature: 1, TopP: 0.1}, []float64{0, 1, 0, 0}},
		{"top-p 0.75", Params{Temperature: 1, TopP: 0.75}, []float64{0, 0.5 / 0.8, 0, 0.3 / 0.8}},
		{"top-p 0.9", Params{Temperature: 1, TopP: 0.9}, []float64{0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95}},
		{"top-k 3 then top-p 0.75", Params{Temperature: 1, TopK: 3, TopP: 0.75}, []float64{0, 0.5 / 0.8, 0, 0.3 / 0.8}},
		{"greedy", Params{Greedy: true, Temperature: 1}, []float64{0, 1, 0, 0}},
		{"temperature 0 is greedy", Params{}, []float64{0, 1, 0, 0}},
		{"top-k 1 is greedy", Params{Temperature: 5, TopK: 1}, []float64{0, 1, 0, 0}},
	}
	// Temperature 2 flattens p to sqrt(p), renormalised.
	sq := []float64{math.Sqrt(0.05), math.Sqrt(0.5), math.Sqrt(0.15), math.Sqrt(0.3)}
	var s float64
	for _, v := range sq {
		s += v
	}
	for i := range sq {
		sq[i] /= s
	}
	cases = append(cases, struct {
		name string
		p    Params
		want []float64
	}{"temperature 2", Params{Temperature: 2}, sq})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := frequencies(t, base, c.p, 20000)
			for i := range c.want {
				assert.InDelta(t, c.want[i], got[i], 2e-4, "token %d: %v", i, got)
			}
		})
	}
}

func TestSamplerRejectsNonFinite(t *testing.T) {
	for _, bad := range []float32{float32(math.NaN()), float32(math.Inf(1))} {
		logits := []float32{0, 1, bad}
		_, err := sampleToken(logits, &Params{Temperature: 1}, 0.5, make([]float32, 3), make([]int32, 3))
		require.ErrorIs(t, err, errNonFinite)
	}
	_, err := NewTokenSampler(4).Sample([]float32{1, 2}, &Params{Temperature: 1}, 0.5)
	require.ErrorContains(t, err, "2 logits for a vocabulary of 4")
	// -Inf logits are masked tokens, not an error.
	logits := []float32{float32(math.Inf(-1)), 0, float32(math.Inf(-1))}
	tok, err := sampleToken(logits, &Params{Temperature: 1}, 0.99, make([]float32, 3), make([]int32, 3))
	require.NoError(t, err)
	assert.Equal(t, int32(1), tok)
}

// TestSelectionAgainstSort checks top-k selection and the nucleus size against sorting,
// on random inputs with ties.
func TestSelectionAgainstSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	for trial := range 300 {
		n := 1 + rng.IntN(200)
		key := make([]float32, n)
		for i := range key {
			key[i] = float32(rng.IntN(20)) / 7 // many ties
		}
		sorted := append([]float32(nil), key...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] > sorted[j] })

		k := 1 + rng.IntN(n)
		idx := make([]int32, n)
		for i := range idx {
			idx[i] = int32(i)
		}
		selectTop(idx, key, k)
		top := make([]float32, k)
		for i := range k {
			top[i] = key[idx[i]]
		}
		sort.Slice(top, func(i, j int) bool { return top[i] > top[j] })
		require.Equal(t, sorted[:k], top, "trial %d top-%d", trial, k)

		var total float64
		for _, v := range key {
			total += float64(v)
		}
		target := rng.Float64() * total
		for i := range idx {
			idx[i] = int32(i)
		}
		m := nucleus(idx, key, target)
		var acc float64
		want := n
		for i, v := range sorted {
			acc += float64(v)
			if acc >= target {
				want = i + 1
				break
			}
		}
		require.Equal(t, max(want, 1), m, "trial %d nucleus of target %g", trial, target)
		got := make([]float32, m)
		for i := range m {
			got[i] = key[idx[i]]
		}
		sort.Slice(got, func(i, j int) bool { return got[i] > got[j] })
		require.Equal(t, sorted[:m], got)
	}
}
