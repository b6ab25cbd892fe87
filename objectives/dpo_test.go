package objectives

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleDPOBatch makes n rows of plausible summed log-probs: the all-token
// chosen sum is the masked sum plus the formatting tokens' log-probs.
func sampleDPOBatch(seed uint64, n int) DPOBatch {
	rng := rand.New(rand.NewPCG(seed, 7))
	b := DPOBatch{}
	for range n {
		toks := 3 + rng.IntN(40)
		pc := -float64(toks) * (0.5 + rng.Float64())
		b.PolicyChosen = append(b.PolicyChosen, pc)
		b.PolicyRejected = append(b.PolicyRejected, -float64(3+rng.IntN(40))*(0.5+rng.Float64()))
		b.ReferenceChosen = append(b.ReferenceChosen, pc+rng.NormFloat64()*3)
		b.ReferenceRejected = append(b.ReferenceRejected, b.PolicyRejected[len(b.PolicyRejected)-1]+rng.NormFloat64()*3)
		b.PolicyChosenAll = append(b.PolicyChosenAll, pc-0.1*rng.Float64())
		b.ChosenTokens = append(b.ChosenTokens, toks+2)
	}
	return b
}

func cloneBatch(b DPOBatch) DPOBatch {
	return DPOBatch{
		PolicyChosen:      append([]float64{}, b.PolicyChosen...),
		PolicyRejected:    append([]float64{}, b.PolicyRejected...),
		ReferenceChosen:   append([]float64{}, b.ReferenceChosen...),
		ReferenceRejected: append([]float64{}, b.ReferenceRejected...),
		PolicyChosenAll:   append([]float64{}, b.PolicyChosenAll...),
		ChosenTokens:      append([]int{}, b.ChosenTokens...),
	}
}

func TestDPOAgainstReference(t *testing.T) {
	small := sampleDPOBatch(1, 5)
	one := sampleDPOBatch(2, 1)
	tests := []struct {
		name  string
		opts  DPOOptions
		batch DPOBatch
	}{
		{"defaults", DefaultDPOOptions(), small},
		{"empty norm means per-sequence-mean", DPOOptions{Beta: 0.1, NLLCoef: 0.2}, small},
		{"batch-token-mean", DPOOptions{Beta: 0.1, NLLCoef: 0.2, NLLNorm: NLLBatchTokenMean}, small},
		{"per-sequence-sum", DPOOptions{Beta: 0.1, NLLCoef: 0.2, NLLNorm: NLLPerSequenceSum}, small},
		{"beta 0.01", DPOOptions{Beta: 0.01, NLLCoef: 0.2}, small},
		{"beta 0.5", DPOOptions{Beta: 0.5, NLLCoef: 0.2, NLLNorm: NLLBatchTokenMean}, small},
		{"beta 5", DPOOptions{Beta: 5, NLLCoef: 1, NLLNorm: NLLPerSequenceSum}, small},
		{"no nll", DPOOptions{Beta: 0.1}, small},
		{"batch of one", DefaultDPOOptions(), one},
		{"batch of 64", DefaultDPOOptions(), sampleDPOBatch(3, 64)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, err := NewDPO(tc.opts)
			require.NoError(t, err)
			got, err := d.Eval(tc.batch)
			require.NoError(t, err)
			want := refDPO(tc.opts, tc.batch)
			// gorgonia's Softplus returns x above 16 and its Sigmoid 1 above 19:
			// a relative error below 1e-8 in far-tail rows (beta 5 here).
			const tol = 1e-12
			assertClose(t, want.loss, got.Loss, "loss")
			assertClose(t, want.dpo, got.DPOLoss, "dpo_loss")
			assert.InDelta(t, want.nll, got.NLLLoss, tol, "nll_loss")
			assert.InDelta(t, want.rewardsChosen, got.RewardsChosen, tol, "rewards_chosen")
			assert.InDelta(t, want.rewardsRejected, got.RewardsRejected, tol, "rewards_rejected")
			assert.InDelta(t, want.rewardsChosen-want.rewardsRejected, got.Margin, tol, "margin")
			assert.InDelta(t, want.acc, got.Accuracy, tol, "accuracy")
			assert.InDelta(t, want.logpsChosen, got.LogpsChosen, tol, "logps_chosen")
			assert.InDelta(t, want.logpsRejected, got.LogpsRejected, tol, "logps_rejected")
			assert.Equal(t, tc.batch.Len(), got.N)
			total := 0
			for _, c := range tc.batch.ChosenTokens {
				total += c
			}
			assert.Equal(t, total, got.ChosenTokens)
			for i := range tc.batch.PolicyChosen {
				assertClose(t, want.gradChosen[i], got.GradPolicyChosen[i], fmt.Sprintf("grad chosen %d", i))
				assertClose(t, want.gradRejected[i], got.GradPolicyRejected[i], fmt.Sprintf("grad rejected %d", i))
				assert.InDelta(t, want.gradAll[i], got.GradPolicyChosenAll[i], tol, "grad chosen all %d", i)
			}
		})
	}
}

// Two rows worked out by hand for each NLL normalisation.
func TestDPOHandValues(t *testing.T) {
	// Row 0: logr_c = -10 - (-12) = 2, logr_r = -20 - (-19) = -1, beta*diff = 0.3.
	// Row 1: logr_c = -5 - (-5) = 0, logr_r = -8 - (-8) = 0, beta*diff = 0.
	batch := DPOBatch{
		PolicyChosen:      []float64{-10, -5},
		PolicyRejected:    []float64{-20, -8},
		ReferenceChosen:   []float64{-12, -5},
		ReferenceRejected: []float64{-19, -8},
		PolicyChosenAll:   []float64{-12, -6},
		ChosenTokens:      []int{4, 2},
	}
	dpo := (math.Log1p(math.Exp(-0.3)) + math.Ln2) / 2
	tests := []struct {
		norm NLLNorm
		nll  float64
	}{
		{NLLPerSequenceMean, (12.0/4 + 6.0/2) / 2}, // 3
		{NLLBatchTokenMean, (12.0 + 6) / 6},        // 3
		{NLLPerSequenceSum, (12.0 + 6) / 2},        // 9
	}
	for _, tc := range tests {
		t.Run(string(tc.norm), func(t *testing.T) {
			d, err := NewDPO(DPOOptions{Beta: 0.1, NLLCoef: 0.2, NLLNorm: tc.norm})
			require.NoError(t, err)
			got, err := d.Eval(batch)
			require.NoError(t, err)
			assert.InDelta(t, dpo, got.DPOLoss, 1e-15)
			assert.InDelta(t, tc.nll, got.NLLLoss, 1e-15)
			assert.InDelta(t, dpo+0.2*tc.nll, got.Loss, 1e-15)
			assert.InDelta(t, 0.1, got.RewardsChosen, 1e-15)     // (0.2 + 0) / 2
			assert.InDelta(t, -0.05, got.RewardsRejected, 1e-15) // (-0.1 + 0) / 2
			assert.InDelta(t, 0.15, got.Margin, 1e-15)
			assert.InDelta(t, 0.5, got.Accuracy, 1e-15, "row 1 is a tie")
			assert.InDelta(t, -7.5, got.LogpsChosen, 1e-15)
			assert.InDelta(t, -14.0, got.LogpsRejected, 1e-15)
			// Row 1: dL/dpc = -beta * sigmoid(0) / 2.
			assert.InDelta(t, -0.025, got.GradPolicyChosen[1], 1e-15)
			assert.InDelta(t, 0.025, got.GradPolicyRejected[1], 1e-15)
		})
	}
}

func TestDPOFiniteDifferences(t *testing.T) {
	batch := sampleDPOBatch(11, 6)
	fields := []struct {
		name string
		get  func(*DPOBatch) []float64
		grad func(DPOResult) []float64
	}{
		{"PolicyChosen", func(b *DPOBatch) []float64 { return b.PolicyChosen }, func(r DPOResult) []float64 { return r.GradPolicyChosen }},
		{"PolicyRejected", func(b *DPOBatch) []float64 { return b.PolicyRejected }, func(r DPOResult) []float64 { return r.GradPolicyRejected }},
		{"PolicyChosenAll", func(b *DPOBatch) []float64 { return b.PolicyChosenAll }, func(r DPOResult) []float64 { return r.GradPolicyChosenAll }},
	}
	for _, norm := range NLLNorms() {
		for _, beta := range []float64{0.1, 1} {
			t.Run(fmt.Sprintf("%s/beta=%v", norm, beta), func(t *testing.T) {
				d, err := NewDPO(DPOOptions{Beta: beta, NLLCoef: 0.2, NLLNorm: norm})
				require.NoError(t, err)
				got, err := d.Eval(batch)
				require.NoError(t, err)
				const h = 1e-4
				for _, f := range fields {
					for i := range batch.PolicyChosen {
						x := cloneBatch(batch)
						f.get(&x)[i] += h
						up, err := d.Eval(x)
						require.NoError(t, err)
						f.get(&x)[i] -= 2 * h
						down, err := d.Eval(x)
						require.NoError(t, err)
						fd := (up.Loss - down.Loss) / (2 * h)
						assert.InDelta(t, fd, f.grad(got)[i], 1e-8, "%s[%d]", f.name, i)
					}
				}
			})
		}
	}
}

// The Softplus-based log-sigmoid must give finite, correct values and
// gradients far out in both tails.
func TestDPOLargeLogits(t *testing.T) {
	for _, x := range []float64{100, -100, 1000, -1000} {
		t.Run(fmt.Sprintf("x=%v", x), func(t *testing.T) {
			d, err := NewDPO(DPOOptions{Beta: 1})
			require.NoError(t, err)
			// beta * ((pc - rc) - (pr - rr)) = x
			got, err := d.Eval(DPOBatch{
				PolicyChosen: []float64{x / 2}, PolicyRejected: []float64{-x / 2},
				ReferenceChosen: []float64{0}, ReferenceRejected: []float64{0},
				PolicyChosenAll: []float64{-1}, ChosenTokens: []int{1},
			})
			require.NoError(t, err)
			assert.False(t, math.IsNaN(got.DPOLoss) || math.IsInf(got.DPOLoss, 0))
			assert.InDelta(t, refNegLogSigmoid(x), got.DPOLoss, 1e-12*math.Max(1, math.Abs(x)))
			assert.InDelta(t, -refSigmoid(-x), got.GradPolicyChosen[0], 1e-12)
			assert.InDelta(t, refSigmoid(-x), got.GradPolicyRejected[0], 1e-12)
			if x > 0 {
				assert.Equal(t, 1.0, got.Accuracy)
			} else {
				assert.Equal(t, 0.0, got.Accuracy)
			}
		})
	}
}

// The reference log-probs shift the loss but get no gradient, and the
// masked-sum inputs are all the DPO term sees: moving PolicyChosenAll (which
// carries the formatting tokens) changes only the NLL term.
func TestDPOTermsSeparate(t *testing.T) {
	d, err := NewDPO(DefaultDPOOptions())
	require.NoError(t, err)
	base := sampleDPOBatch(5, 4)
	a, err := d.Eval(base)
	require.NoError(t, err)
	moved := cloneBatch(base)
	moved.PolicyChosenAll[2] -= 3
	b, err := d.Eval(moved)
	require.NoError(t, err)
	assert.Equal(t, a.DPOLoss, b.DPOLoss, "DPO term ignores all-token sum")
	assert.Equal(t, a.GradPolicyChosen, b.GradPolicyChosen)
	assert.InDelta(t, a.NLLLoss+3.0/float64(base.ChosenTokens[2])/4, b.NLLLoss, 1e-12)
}

func TestDPOReusesGraph(t *testing.T) {
	d, err := NewDPO(DefaultDPOOptions())
	require.NoError(t, err)
	for step, n := range []int{8, 3, 8, 8, 3} {
		batch := sampleDPOBatch(uint64(100+step), n)
		got, err := d.Eval(batch)
		require.NoError(t, err)
		want := refDPO(d.Options(), batch)
		assert.InDelta(t, want.loss, got.Loss, 1e-12, "step %d", step)
		for i := range want.gradChosen {
			assert.InDelta(t, want.gradChosen[i], got.GradPolicyChosen[i], 1e-12, "step %d row %d", step, i)
		}
	}
	assert.Len(t, d.progs, 2, "one graph per batch size")
}

func TestDPOConcurrent(t *testing.T) {
	d, err := NewDPO(DefaultDPOOptions())
	require.NoError(t, err)
	var wg sync.WaitGroup
	batches := make([]DPOBatch, 8)
	results := make([]DPOResult, 8)
	errs := make([]error, 8)
	for g := range 8 {
		batches[g] = sampleDPOBatch(uint64(200+g), 4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[g], errs[g] = d.Eval(batches[g])
		}()
	}
	wg.Wait()
	for g := range 8 {
		require.NoError(t, errs[g])
		assert.InDelta(t, refDPO(d.Options(), batches[g]).loss, results[g].Loss, 1e-12, "goroutine %d", g)
	}
}

func TestDPOBatchErrors(t *testing.T) {
	good := sampleDPOBatch(9, 3)
	tests := []struct {
		name   string
		modify func(*DPOBatch)
		want   string
	}{
		{"empty", func(b *DPOBatch) { *b = DPOBatch{} }, "PolicyChosen is empty"},
		{"short rejected", func(b *DPOBatch) { b.PolicyRejected = b.PolicyRejected[:2] }, "PolicyRejected has 2 rows, PolicyChosen has 3"},
		{"long reference", func(b *DPOBatch) { b.ReferenceChosen = append(b.ReferenceChosen, -1) }, "ReferenceChosen has 4 rows"},
		{"missing tokens", func(b *DPOBatch) { b.ChosenTokens = nil }, "ChosenTokens has 0 rows"},
		{"nan policy", func(b *DPOBatch) { b.PolicyChosen[1] = math.NaN() }, "PolicyChosen[1] = NaN: must be finite"},
		{"inf reference", func(b *DPOBatch) { b.ReferenceRejected[2] = math.Inf(-1) }, "ReferenceRejected[2] = -Inf"},
		{"inf all", func(b *DPOBatch) { b.PolicyChosenAll[0] = math.Inf(1) }, "PolicyChosenAll[0] = +Inf"},
		{"zero tokens", func(b *DPOBatch) { b.ChosenTokens[2] = 0 }, "ChosenTokens[2] = 0"},
		{"negative tokens", func(b *DPOBatch) { b.ChosenTokens[0] = -4 }, "ChosenTokens[0] = -4"},
	}
	d, err := NewDPO(DefaultDPOOptions())
	require.NoError(t, err)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := cloneBatch(good)
			tc.modify(&b)
			_, err := d.Eval(b)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestDPOOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		opts DPOOptions
		want string
	}{
		{"zero beta", DPOOptions{NLLCoef: 0.2}, "dpo beta = 0: must be > 0"},
		{"negative beta", DPOOptions{Beta: -0.1}, "dpo beta = -0.1: must be > 0"},
		{"nan beta", DPOOptions{Beta: math.NaN()}, "dpo beta = NaN: must be finite"},
		{"negative coef", DPOOptions{Beta: 0.1, NLLCoef: -1}, "nll coefficient = -1: must be >= 0"},
		{"inf coef", DPOOptions{Beta: 0.1, NLLCoef: math.Inf(1)}, "nll coefficient = +Inf"},
		{"bad norm", DPOOptions{Beta: 0.1, NLLNorm: "token-sum"}, `unknown NLL normalisation "token-sum"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewDPO(tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseNLLNorm(t *testing.T) {
	for _, n := range NLLNorms() {
		got, err := ParseNLLNorm(strings.ToUpper(string(n)))
		require.NoError(t, err)
		assert.Equal(t, n, got)
		assert.Equal(t, string(n), got.String())
	}
	_, err := ParseNLLNorm("mean")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "per-sequence-mean, batch-token-mean, per-sequence-sum")
	assert.Equal(t, NLLPerSequenceMean, DefaultDPOOptions().NLLNorm)
	assert.Equal(t, 0.1, DefaultDPOOptions().Beta)
	assert.Equal(t, 0.2, DefaultDPOOptions().NLLCoef)
}

// assertClose allows gorgonia's documented tail approximations (Softplus(x) =
// x above 16, Sigmoid(x) = 1 above 19): relative 1e-8 plus absolute 1e-12.
func assertClose(t *testing.T, want, got float64, msg string) {
	t.Helper()
	assert.InDelta(t, want, got, 1e-12+1e-8*math.Abs(want), msg)
}

func TestDPOCombineEqualsOneBatch(t *testing.T) {
	batch := sampleDPOBatch(21, 10)
	slice := func(lo, hi int) DPOBatch {
		return DPOBatch{
			PolicyChosen: batch.PolicyChosen[lo:hi], PolicyRejected: batch.PolicyRejected[lo:hi],
			ReferenceChosen: batch.ReferenceChosen[lo:hi], ReferenceRejected: batch.ReferenceRejected[lo:hi],
			PolicyChosenAll: batch.PolicyChosenAll[lo:hi], ChosenTokens: batch.ChosenTokens[lo:hi],
		}
	}
	for _, norm := range NLLNorms() {
		t.Run(string(norm), func(t *testing.T) {
			d, err := NewDPO(DPOOptions{Beta: 0.2, NLLCoef: 0.3, NLLNorm: norm})
			require.NoError(t, err)
			whole, err := d.Eval(batch)
			require.NoError(t, err)
			var parts []DPOMetrics
			for _, r := range [][2]int{{0, 3}, {3, 4}, {4, 10}} {
				res, err := d.Eval(slice(r[0], r[1]))
				require.NoError(t, err)
				parts = append(parts, res.DPOMetrics)
			}
			got := d.Combine(parts...)
			want := whole.DPOMetrics
			assert.Equal(t, want.N, got.N)
			assert.Equal(t, want.ChosenTokens, got.ChosenTokens)
			for _, f := range []struct {
				name      string
				want, got float64
			}{
				{"loss", want.Loss, got.Loss}, {"dpo_loss", want.DPOLoss, got.DPOLoss},
				{"nll_loss", want.NLLLoss, got.NLLLoss}, {"rewards_chosen", want.RewardsChosen, got.RewardsChosen},
				{"rewards_rejected", want.RewardsRejected, got.RewardsRejected}, {"margin", want.Margin, got.Margin},
				{"accuracy", want.Accuracy, got.Accuracy}, {"logps_chosen", want.LogpsChosen, got.LogpsChosen},
				{"logps_rejected", want.LogpsRejected, got.LogpsRejected},
			} {
				assert.InDelta(t, f.want, f.got, 1e-12, f.name)
			}
		})
	}
	d, err := NewDPO(DefaultDPOOptions())
	require.NoError(t, err)
	assert.Equal(t, DPOMetrics{}, d.Combine(), "no batches")
}

// dpo eval --json prints DPOMetrics: the key names are part of the contract.
func TestDPOMetricsJSONKeys(t *testing.T) {
	raw, err := json.Marshal(DPOMetrics{N: 2, Loss: 1, Accuracy: 0.5})
	require.NoError(t, err)
	var m map[string]float64
	require.NoError(t, json.Unmarshal(raw, &m))
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	assert.ElementsMatch(t, []string{"n", "loss", "dpo_loss", "nll_loss", "rewards_chosen", "rewards_rejected",
		"margin", "accuracy", "logps_chosen", "logps_rejected", "chosen_tokens"}, keys)
	assert.Equal(t, 0.5, m["accuracy"])

	raw, err = json.Marshal(BTResult{Pairs: 3, Grad: []float64{1}})
	require.NoError(t, err)
	m = nil
	require.NoError(t, json.Unmarshal(raw, &m))
	assert.Contains(t, m, "mean_margin")
	assert.NotContains(t, m, "Grad", "gradients are not metrics")
	assert.Equal(t, 3.0, m["pairs"])
}
