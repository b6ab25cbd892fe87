package transformer

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

// objective is L = sum_i c_i * out_i over the model's outputs (log-probs or rewards),
// accumulated in float64.
func objective(t *testing.T, m *Model, ws *Workspace, b *Batch, c []float32) float64 {
	t.Helper()
	require.NoError(t, m.Forward(ws, b))
	out := ws.LogProbs
	if m.Config.IsSequenceClassifier() {
		out = ws.Rewards
	}
	var s float64
	for i, ci := range c {
		s += float64(ci) * float64(out[i])
	}
	return s
}

// TestModelGradientFiniteDifferences checks Backward against central differences of the
// float32 forward on the parameters with the largest gradients and on random ones.
func TestModelGradientFiniteDifferences(t *testing.T) {
	cases := []struct {
		name       string
		classifier bool
		tied       bool
		packed     bool
		B, T       int
	}{
		{"lm untied", false, false, false, 2, 7},
		{"lm tied packed", false, true, true, 2, 7},
		{"classifier", true, false, false, 2, 7},
		{"classifier packed", true, false, true, 2, 7},
		{"lm rows longer than an attention block", false, false, true, 1, 70},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.classifier, tc.tied)
			m := newTestModel(t, cfg, 2, 3)
			B, T := tc.B, tc.T
			b := randomBatch(cfg, B, T, 5)
			if tc.packed {
				packSegments(b, 3)
			}
			ws := m.NewWorkspace(B, T)
			n := B * T
			if tc.classifier {
				n = B
			}
			rng := rand.New(rand.NewPCG(9, 9))
			c := make([]float32, n)
			for i := range c {
				c[i] = float32(rng.NormFloat64())
			}
			objective(t, m, ws, b, c)
			g := m.NewGrads()
			require.NoError(t, m.Backward(ws, b, c, g))

			idx := make([]int, len(g.Data))
			for i := range idx {
				idx[i] = i
			}
			sort.Slice(idx, func(a, b int) bool { return math.Abs(float64(g.Data[idx[a]])) > math.Abs(float64(g.Data[idx[b]])) })
			check := append([]int{}, idx[:40]...)
			for range 40 {
				check = append(check, rng.IntN(len(g.Data)))
			}
			gmax := math.Abs(float64(g.Data[idx[0]]))
			require.Greater(t, gmax, 1e-3)
			const h = 1e-2
			for _, i := range check {
				old := m.W.Data[i]
				m.W.Data[i] = old + h
				lp := objective(t, m, ws, b, c)
				m.W.Data[i] = old - h
				lm := objective(t, m, ws, b, c)
				m.W.Data[i] = old
				fd := (lp - lm) / (2 * h)
				an := float64(g.Data[i])
				require.InDelta(t, fd, an, 2e-3*gmax+0.02*math.Abs(fd), "param %d (%s): fd %g analytic %g", i, tensorOf(m.W, i), fd, an)
			}
		})
	}
}

// tensorOf names the tensor holding flat parameter index i.
func tensorOf(p *Params, i int) string {
	off := 0
	for _, t := range p.Tensors {
		if i < off+len(t.Data) {
			return t.Name
		}
		off += len(t.Data)
	}
	return "?"
}
