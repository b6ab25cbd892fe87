package objectives

import (
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func mustRanked(t *testing.T, row int, margin float64, ranked ...int) []Pair {
	t.Helper()
	p, err := RankedPairs(row, margin, ranked...)
	require.NoError(t, err)
	return p
}

func TestBradleyTerryAgainstReference(t *testing.T) {
	sig, _ := Llama2Margin(RatingSignificantlyBetter)
	slight, _ := Llama2Margin(RatingSlightlyBetter)
	// rewards of 3 rows: a triple (0 edited, 1 chosen, 2 rejected), then plain
	// pairs (3 > 4) and (5 > 6); response 7 is in no pair.
	rewards := []float64{1.5, 0.25, -0.75, 0.1, 0.4, 2.0, -1.0, 9.0}
	triple := mustRanked(t, 0, 0, 0, 1, 2)
	mixed := append(append(append([]Pair{}, triple...), Pair{Better: 3, Worse: 4, Row: 1}), Pair{Better: 5, Worse: 6, Row: 2})

	tests := []struct {
		name    string
		rewards []float64
		pairs   []Pair
		opts    BTOptions
	}{
		{"one pair", []float64{1, 0}, []Pair{{Better: 0, Worse: 1}}, BTOptions{}},
		{"plain pairs no margin", rewards, []Pair{{Better: 3, Worse: 4}, {Better: 5, Worse: 6, Row: 1}}, BTOptions{}},
		{"plain pairs llama2 margins", rewards, []Pair{{Better: 3, Worse: 4, Margin: sig}, {Better: 5, Worse: 6, Margin: slight, Row: 1}}, BTOptions{}},
		{"ranked triple", rewards, triple, BTOptions{}},
		{"triple and plain pairs per-pair", rewards, mixed, BTOptions{Weighting: WeightPerPair}},
		{"triple and plain pairs per-row", rewards, mixed, BTOptions{Weighting: WeightPerRow}},
		{"centering eta 0.01", rewards, mixed, BTOptions{CenteringCoef: 0.01}},
		{"centering eta 0.5 per-row with margins", rewards, append(mustRanked(t, 0, 1.0/3, 0, 1, 2), Pair{Better: 5, Worse: 6, Margin: 1, Row: 1}), BTOptions{CenteringCoef: 0.5, Weighting: WeightPerRow}},
		{"wrong order pair", rewards, []Pair{{Better: 6, Worse: 5}}, BTOptions{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bt, err := NewBradleyTerry(tc.opts)
			require.NoError(t, err)
			got, err := bt.Eval(tc.rewards, tc.pairs)
			require.NoError(t, err)
			want := refBradleyTerry(tc.rewards, tc.pairs, tc.opts.CenteringCoef, tc.opts.Weighting == WeightPerRow)
			const tol = 1e-12
			assert.InDelta(t, want.loss, got.Loss, tol, "loss")
			assert.InDelta(t, want.bt, got.BTLoss, tol, "bt loss")
			assert.InDelta(t, want.center, got.Centering, tol, "centering")
			assert.InDelta(t, want.acc, got.Accuracy, tol, "accuracy")
			assert.InDelta(t, want.meanMargin, got.MeanMargin, tol, "mean margin")
			assert.Equal(t, len(tc.pairs), got.Pairs)
			require.Len(t, got.Grad, len(tc.rewards))
			for k := range want.grad {
				assert.InDelta(t, want.grad[k], got.Grad[k], tol, "grad[%d]", k)
			}
		})
	}
}

// Fixed numbers worked out by hand, as anchors independent of any code.
func TestBradleyTerryHandValues(t *testing.T) {
	bt, err := NewBradleyTerry(BTOptions{})
	require.NoError(t, err)
	// One pair, r = (1, 0): L = log(1 + e^-1); dL/dr0 = -1/(1+e) = -dL/dr1.
	got, err := bt.Eval([]float64{1, 0}, []Pair{{Better: 0, Worse: 1}})
	require.NoError(t, err)
	assert.InDelta(t, 0.31326168751822286, got.Loss, 1e-15)
	assert.InDelta(t, -0.2689414213699951, got.Grad[0], 1e-15)
	assert.InDelta(t, 0.2689414213699951, got.Grad[1], 1e-15)
	assert.Equal(t, 1.0, got.Accuracy)
	assert.Equal(t, 1.0, got.MeanMargin)

	// Margin 1 on the same pair: z = 0, L = log 2, dL/dr0 = -1/2.
	got, err = bt.Eval([]float64{1, 0}, []Pair{{Better: 0, Worse: 1, Margin: 1}})
	require.NoError(t, err)
	assert.InDelta(t, math.Ln2, got.Loss, 1e-15)
	assert.InDelta(t, -0.5, got.Grad[0], 1e-15)

	// Triple with equal rewards: 3 pairs, each log 2. Response 0 is better in
	// 2 pairs: grad -1/2 * 2/3; response 1 once better once worse: 0.
	got, err = bt.Eval([]float64{0, 0, 0}, mustRanked(t, 0, 0, 0, 1, 2))
	require.NoError(t, err)
	assert.InDelta(t, math.Ln2, got.Loss, 1e-15)
	assert.InDelta(t, -1.0/3, got.Grad[0], 1e-15)
	assert.InDelta(t, 0, got.Grad[1], 1e-15)
	assert.InDelta(t, 1.0/3, got.Grad[2], 1e-15)
	assert.Equal(t, 0.0, got.Accuracy, "ties are not correct")

	// Centering eta = 0.5, r = (1, 1): L = log 2 + 0.5 * 4; dL/dr0 = -1/2 + 0.5*2*2.
	btc, err := NewBradleyTerry(BTOptions{CenteringCoef: 0.5})
	require.NoError(t, err)
	got, err = btc.Eval([]float64{1, 1}, []Pair{{Better: 0, Worse: 1}})
	require.NoError(t, err)
	assert.InDelta(t, math.Ln2+2, got.Loss, 1e-15)
	assert.InDelta(t, 4.0, got.Centering, 1e-15)
	assert.InDelta(t, 1.5, got.Grad[0], 1e-15)
	assert.InDelta(t, 2.5, got.Grad[1], 1e-15)
}

func TestBradleyTerryWeightingOfTriples(t *testing.T) {
	// Row 0: triple with all pairs correct by 10 (near-zero loss); row 1: one
	// plain pair with zero difference (loss log 2).
	rewards := []float64{20, 10, 0, 0, 0}
	pairs := append(mustRanked(t, 0, 0, 0, 1, 2), Pair{Better: 3, Worse: 4, Row: 1})
	perPair, err := NewBradleyTerry(BTOptions{})
	require.NoError(t, err)
	perRow, err := NewBradleyTerry(BTOptions{Weighting: WeightPerRow})
	require.NoError(t, err)
	a, err := perPair.Eval(rewards, pairs)
	require.NoError(t, err)
	b, err := perRow.Eval(rewards, pairs)
	require.NoError(t, err)
	// Per pair: the plain pair is 1 of 4 pairs; per row: half the loss.
	assert.InDelta(t, math.Ln2/4, a.Loss, 1e-4)
	assert.InDelta(t, math.Ln2/2, b.Loss, 1e-4)
	assert.InDelta(t, -0.5/4, a.Grad[3], 1e-12)
	assert.InDelta(t, -0.5/2, b.Grad[3], 1e-12)
}

func TestBradleyTerryFiniteDifferences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	rewards := make([]float64, 10)
	for i := range rewards {
		rewards[i] = rng.NormFloat64() * 2
	}
	pairs := append(mustRanked(t, 0, 0, 0, 1, 2), mustRanked(t, 1, 2.0/3, 3, 4)...)
	pairs = append(pairs, mustRanked(t, 2, 0, 5, 6, 7)...)
	pairs = append(pairs, Pair{Better: 9, Worse: 8, Margin: 1, Row: 3})
	for _, opts := range []BTOptions{
		{},
		{CenteringCoef: 0.1},
		{CenteringCoef: 0.3, Weighting: WeightPerRow},
	} {
		t.Run(fmt.Sprintf("eta=%v,%s", opts.CenteringCoef, opts.Weighting), func(t *testing.T) {
			bt, err := NewBradleyTerry(opts)
			require.NoError(t, err)
			got, err := bt.Eval(rewards, pairs)
			require.NoError(t, err)
			const h = 1e-5
			for k := range rewards {
				x := append([]float64{}, rewards...)
				x[k] += h
				up, err := bt.Eval(x, pairs)
				require.NoError(t, err)
				x[k] -= 2 * h
				down, err := bt.Eval(x, pairs)
				require.NoError(t, err)
				fd := (up.Loss - down.Loss) / (2 * h)
				assert.InDelta(t, fd, got.Grad[k], 1e-8, "reward %d", k)
			}
		})
	}
}

func TestBradleyTerryLargeDifferences(t *testing.T) {
	bt, err := NewBradleyTerry(BTOptions{})
	require.NoError(t, err)
	for _, d := range []float64{100, -100, 800, -800} {
		t.Run(fmt.Sprintf("d=%v", d), func(t *testing.T) {
			got, err := bt.Eval([]float64{d, 0}, []Pair{{Better: 0, Worse: 1}})
			require.NoError(t, err)
			assert.False(t, math.IsNaN(got.Loss) || math.IsInf(got.Loss, 0))
			assert.InDelta(t, refNegLogSigmoid(d), got.Loss, 1e-12*math.Max(1, math.Abs(d)))
			assert.InDelta(t, -refSigmoid(-d), got.Grad[0], 1e-12)
			assert.InDelta(t, refSigmoid(-d), got.Grad[1], 1e-12)
		})
	}
}

func TestBradleyTerryReusesGraph(t *testing.T) {
	bt, err := NewBradleyTerry(BTOptions{})
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(3, 4))
	shapes := [][2]int{{4, 2}, {6, 3}, {4, 2}, {6, 3}, {4, 2}}
	for step, s := range shapes {
		rewards := make([]float64, s[0])
		for i := range rewards {
			rewards[i] = rng.NormFloat64()
		}
		// Pairs change with the step, the shape does not.
		pairs := make([]Pair, s[1])
		for i := range pairs {
			pairs[i] = Pair{Better: (2*i + step) % s[0], Worse: (2*i + 1 + step) % s[0], Row: i}
		}
		got, err := bt.Eval(rewards, pairs)
		require.NoError(t, err)
		want := refBradleyTerry(rewards, pairs, 0, false)
		assert.InDelta(t, want.loss, got.Loss, 1e-12, "step %d", step)
		for k := range want.grad {
			assert.InDelta(t, want.grad[k], got.Grad[k], 1e-12, "step %d grad %d", step, k)
		}
	}
	assert.Len(t, bt.progs, 2, "one graph per number of pairs")
}

func TestBradleyTerryConcurrent(t *testing.T) {
	bt, err := NewBradleyTerry(BTOptions{CenteringCoef: 0.01})
	require.NoError(t, err)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	losses := make([]float64, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := bt.Eval([]float64{float64(g), 0}, []Pair{{Better: 0, Worse: 1}})
			errs[g], losses[g] = err, res.Loss
		}()
	}
	wg.Wait()
	for g := range 8 {
		require.NoError(t, errs[g])
		want := refBradleyTerry([]float64{float64(g), 0}, []Pair{{Better: 0, Worse: 1}}, 0.01, false)
		assert.InDelta(t, want.loss, losses[g], 1e-12, "goroutine %d", g)
	}
}

func TestBradleyTerryErrors(t *testing.T) {
	tests := []struct {
		name    string
		rewards []float64
		pairs   []Pair
		want    string
	}{
		{"no rewards", nil, []Pair{{Better: 0, Worse: 1}}, "rewards is empty"},
		{"no pairs", []float64{1, 2}, nil, "pairs is empty"},
		{"nan reward", []float64{1, math.NaN()}, []Pair{{Better: 0, Worse: 1}}, "rewards[1] = NaN"},
		{"inf reward", []float64{math.Inf(1), 0}, []Pair{{Better: 0, Worse: 1}}, "rewards[0] = +Inf"},
		{"better out of range", []float64{1, 2}, []Pair{{Better: 0, Worse: 1}, {Better: 2, Worse: 1}}, "pairs[1].Better = 2: out of range"},
		{"worse negative", []float64{1, 2}, []Pair{{Better: 0, Worse: -1}}, "pairs[0].Worse = -1"},
		{"self pair", []float64{1, 2}, []Pair{{Better: 1, Worse: 1}}, "pairs[0] compares response 1 with itself"},
		{"nan margin", []float64{1, 2}, []Pair{{Better: 0, Worse: 1, Margin: math.NaN()}}, "pairs[0].Margin = NaN"},
		{"negative row", []float64{1, 2}, []Pair{{Better: 0, Worse: 1, Row: -2}}, "pairs[0].Row = -2"},
	}
	bt, err := NewBradleyTerry(BTOptions{})
	require.NoError(t, err)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bt.Eval(tc.rewards, tc.pairs)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestBTOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		opts BTOptions
		want string
	}{
		{"negative eta", BTOptions{CenteringCoef: -0.1}, "centering coefficient = -0.1: must be >= 0"},
		{"nan eta", BTOptions{CenteringCoef: math.NaN()}, "must be finite"},
		{"bad weighting", BTOptions{Weighting: "per-prompt"}, `weighting "per-prompt"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewBradleyTerry(tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	bt, err := NewBradleyTerry(BTOptions{})
	require.NoError(t, err)
	assert.Equal(t, WeightPerPair, bt.Options().Weighting, "default weighting")
}

func TestRankedPairs(t *testing.T) {
	tests := []struct {
		name   string
		ranked []int
		want   []Pair
		errStr string
	}{
		{"plain pair", []int{4, 7}, []Pair{{Better: 4, Worse: 7, Margin: 0.5, Row: 3}}, ""},
		{"triple", []int{2, 0, 1}, []Pair{
			{Better: 2, Worse: 0, Margin: 0.5, Row: 3},
			{Better: 2, Worse: 1, Margin: 0.5, Row: 3},
			{Better: 0, Worse: 1, Margin: 0.5, Row: 3},
		}, ""},
		{"one response", []int{1}, nil, "need at least 2 responses"},
		{"duplicate", []int{1, 2, 1}, nil, "response index 1 listed twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := RankedPairs(3, 0.5, tc.ranked...)
			if tc.errStr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.errStr)
				assert.Contains(t, err.Error(), "row 3")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestLlama2MarginTables(t *testing.T) {
	tests := []struct {
		in           string
		small, large float64
	}{
		{"significantly better", 1, 3},
		{"Better", 2.0 / 3, 2},
		{"slightly_better", 1.0 / 3, 1},
		{"negligibly-better", 0, 0},
		{"Negligibly better / unsure", 0, 0},
		{"unsure", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			r, err := ParseRating(tc.in)
			require.NoError(t, err)
			s, err := Llama2Margin(r)
			require.NoError(t, err)
			l, err := Llama2MarginLarge(r)
			require.NoError(t, err)
			assert.InDelta(t, tc.small, s, 1e-15)
			assert.InDelta(t, tc.large, l, 1e-15)
		})
	}
	_, err := ParseRating("much better")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"much better"`)
	_, err = Llama2Margin(Rating("way better"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "way better")
}

func TestBradleyTerryCombineEqualsOneBatch(t *testing.T) {
	rewards := []float64{0.3, -0.2, 1.1, 0.9, -0.4, 2.0, 0.1, -1.5, 0.7}
	var all, first, second []Pair
	first = append(mustRanked(t, 0, 0, 0, 1, 2), mustRanked(t, 1, 0.5, 3, 4)...)
	second = append(mustRanked(t, 2, 0, 5, 6), mustRanked(t, 3, 0, 8, 7, 6)...)
	all = append(append(all, first...), second...)
	for _, opts := range []BTOptions{{}, {CenteringCoef: 0.2, Weighting: WeightPerRow}} {
		t.Run(string(opts.Weighting), func(t *testing.T) {
			bt, err := NewBradleyTerry(opts)
			require.NoError(t, err)
			whole, err := bt.Eval(rewards, all)
			require.NoError(t, err)
			a, err := bt.Eval(rewards, first)
			require.NoError(t, err)
			b, err := bt.Eval(rewards, second)
			require.NoError(t, err)
			got := bt.Combine(a, b)
			assert.Equal(t, whole.Pairs, got.Pairs)
			assert.Equal(t, 4, got.Rows)
			assert.InDelta(t, whole.Loss, got.Loss, 1e-12)
			assert.InDelta(t, whole.BTLoss, got.BTLoss, 1e-12)
			assert.InDelta(t, whole.Centering, got.Centering, 1e-12)
			assert.InDelta(t, whole.Accuracy, got.Accuracy, 1e-12)
			assert.InDelta(t, whole.MeanMargin, got.MeanMargin, 1e-12)
		})
	}
}
