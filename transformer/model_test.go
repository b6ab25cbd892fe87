package transformer

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPackingMatchesSeparateRows packs two examples in one row (segments, restarted
// positions) and checks every token's log-prob and the classifier reward equal running the
// examples on their own.
func TestPackingMatchesSeparateRows(t *testing.T) {
	for _, classifier := range []bool{false, true} {
		cfg := testConfig(classifier, false)
		m := newTestModel(t, cfg, 2, 21)
		const T, cut = 9, 4
		packed := randomBatch(cfg, 1, T, 4)
		packSegments(packed, cut)
		ws := m.NewWorkspace(1, T)
		require.NoError(t, m.Forward(ws, packed))
		gotLP := append([]float32(nil), ws.LogProbs...)
		for _, part := range []struct{ lo, hi int }{{0, cut}, {cut, T}} {
			n := part.hi - part.lo
			one := &Batch{B: 1, T: n, Tokens: packed.Tokens[part.lo:part.hi], Targets: packed.Targets[part.lo:part.hi], Last: []int32{int32(n - 1)}}
			ws1 := m.NewWorkspace(1, n)
			require.NoError(t, m.Forward(ws1, one))
			if classifier {
				packed.Last[0] = int32(part.hi - 1)
				require.NoError(t, m.Forward(ws, packed))
				assert.InDelta(t, ws1.Rewards[0], ws.Rewards[0], 1e-5)
				continue
			}
			for i := 0; i < n; i++ {
				assert.InDelta(t, ws1.LogProbs[i], gotLP[part.lo+i], 1e-5, "token %d", part.lo+i)
			}
		}
	}
}

// TestOverfitFixedSequence trains the tiny model with a minimal Adam on one short sequence
// until its next-token loss is near zero.
func TestOverfitFixedSequence(t *testing.T) {
	cfg := testConfig(false, true)
	cfg.InitializerRange = 0.02
	m := newTestModel(t, cfg, 2, 8)
	m.Init(8)
	seq := []int32{1, 5, 2, 9, 3, 3, 7, 12, 0, 4, 6, 11, 8, 2, 10}
	T := len(seq) - 1
	b := &Batch{B: 1, T: T, Tokens: seq[:T], Targets: seq[1:]}
	w := make([]float32, T)
	for i := range w {
		w[i] = 1
	}
	ws := m.NewWorkspace(1, T)
	g := m.NewGrads()
	mom, vel := make([]float64, len(g.Data)), make([]float64, len(g.Data))
	const lr, b1, b2 = 1e-2, 0.9, 0.999
	first, loss := 0.0, 0.0
	for step := 1; step <= 300; step++ {
		g.Zero()
		var err error
		loss, err = m.WeightedNLL(ws, b, w, g)
		require.NoError(t, err)
		if step == 1 {
			first = loss
		}
		for i, gi := range g.Data {
			mom[i] = b1*mom[i] + (1-b1)*float64(gi)
			vel[i] = b2*vel[i] + (1-b2)*float64(gi)*float64(gi)
			mh := mom[i] / (1 - math.Pow(b1, float64(step)))
			vh := vel[i] / (1 - math.Pow(b2, float64(step)))
			m.W.Data[i] -= float32(lr * mh / (math.Sqrt(vh) + 1e-8))
		}
	}
	assert.Greater(t, first, 2.0, "initial loss should be near log(vocab)")
	assert.Less(t, loss, 0.05, "final loss")
}

// TestZeroAllocsPerStep checks that a warm forward+backward allocates nothing, both on a
// tiny problem and on one big enough for the matmuls to split across the workers.
func TestZeroAllocsPerStep(t *testing.T) {
	cases := []struct {
		name       string
		classifier bool
		hidden, T  int
	}{
		{"lm tiny", false, 16, 8},
		{"classifier tiny", true, 16, 8},
		{"lm parallel matmuls", false, 64, 64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(tc.classifier, false)
			cfg.HiddenSize, cfg.IntermediateSize = tc.hidden, 3*tc.hidden/2
			m := newTestModel(t, cfg, 2, 1)
			const B = 2
			b := randomBatch(cfg, B, tc.T, 1)
			packSegments(b, 3)
			ws := m.NewWorkspace(B, tc.T)
			g := m.NewGrads()
			dOut := make([]float32, B*tc.T)
			for i := range dOut {
				dOut[i] = 0.1
			}
			if tc.classifier {
				dOut = dOut[:B]
			}
			step := func() {
				require.NoError(t, m.Forward(ws, b))
				require.NoError(t, m.Backward(ws, b, dOut, g))
			}
			step()
			step()
			assert.Zero(t, testing.AllocsPerRun(10, step))
		})
	}
}

// TestBatchValidation checks that bad batches get clear errors instead of panics.
func TestBatchValidation(t *testing.T) {
	cfg := testConfig(false, false)
	m := newTestModel(t, cfg, 1, 1)
	ws := m.NewWorkspace(2, 8)
	cls := newTestModel(t, testConfig(true, false), 1, 1)
	wsc := cls.NewWorkspace(2, 8)
	good := func() *Batch { return randomBatch(cfg, 2, 8, 3) }
	cases := []struct {
		name  string
		m     *Model
		ws    *Workspace
		batch func() *Batch
		want  string
	}{
		{"token out of vocab", m, ws, func() *Batch { b := good(); b.Tokens[5] = 13; return b }, "Tokens[5]=13"},
		{"negative token", m, ws, func() *Batch { b := good(); b.Tokens[0] = -1; return b }, "Tokens[0]=-1"},
		{"B over MaxB", m, ws, func() *Batch { return randomBatch(cfg, 3, 8, 3) }, "MaxB"},
		{"T over MaxT", m, ws, func() *Batch { return randomBatch(cfg, 1, 9, 3) }, "MaxT"},
		{"T over context", m, m.NewWorkspace(1, 256), func() *Batch { return randomBatch(cfg, 1, 129, 3) }, "max_position_embeddings"},
		{"short tokens", m, ws, func() *Batch { b := good(); b.Tokens = b.Tokens[:3]; return b }, "len(Tokens)"},
		{"short targets", m, ws, func() *Batch { b := good(); b.Targets = b.Targets[:3]; return b }, "len(Targets)"},
		{"target out of vocab", m, ws, func() *Batch { b := good(); b.Targets[2] = 99; return b }, "Targets[2]=99"},
		{"bad position", m, ws, func() *Batch { b := good(); packSegments(b, 2); b.Positions[1] = 128; return b }, "Positions[1]=128"},
		{"short segments", m, ws, func() *Batch { b := good(); packSegments(b, 2); b.Segments = b.Segments[:1]; return b }, "len(Segments)"},
		{"last out of range", cls, wsc, func() *Batch { b := good(); b.Last[1] = 8; return b }, "Last[1]=8"},
		{"missing last", cls, wsc, func() *Batch { b := good(); b.Last = nil; return b }, "len(Last)"},
		{"zero rows", m, ws, func() *Batch { return &Batch{} }, "must be positive"},
		{"valid batch on a second workspace", m, m.NewWorkspace(2, 8), good, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.Forward(tc.ws, tc.batch())
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	require.ErrorContains(t, m.Backward(ws, b0(t, m, ws), make([]float32, 16), &Params{}), "grads are not laid out")
	bare := &Model{Config: cfg, W: &Params{}, Pool: m.Pool}
	require.ErrorContains(t, bare.Forward(bare.NewWorkspace(2, 8), good()), "weights are not laid out")
	other := newTestModel(t, testConfig(false, true), 1, 1)
	other.Config.HiddenSize = 32
	require.ErrorContains(t, other.Forward(ws, good()), "different model configuration")
	b := good()
	require.NoError(t, m.Forward(ws, b))
	require.ErrorContains(t, m.Backward(ws, b, make([]float32, 3), m.NewGrads()), "len(dOut)")
	require.ErrorContains(t, m.Backward(ws, good(), make([]float32, 16), m.NewGrads()), "must follow a Forward")
	_, err := cls.WeightedNLL(wsc, good(), make([]float32, 16), nil)
	require.ErrorContains(t, err, "causal LM")
	_, err = m.WeightedNLL(ws, good(), make([]float32, 16), nil)
	require.ErrorContains(t, err, "positive weight")
}

// TestBackwardAccumulatesAndWorkspaceReuse checks that Backward adds into grads (two calls
// give twice the gradient) and that a workspace used for a large batch gives identical
// results on a smaller one as a fresh workspace.
func TestBackwardAccumulatesAndWorkspaceReuse(t *testing.T) {
	cfg := testConfig(false, false)
	m := newTestModel(t, cfg, 2, 5)
	small := randomBatch(cfg, 1, 5, 6)
	dOut := make([]float32, 5)
	for i := range dOut {
		dOut[i] = float32(i) - 2
	}
	fresh := m.NewWorkspace(1, 5)
	require.NoError(t, m.Forward(fresh, small))
	once := m.NewGrads()
	require.NoError(t, m.Backward(fresh, small, dOut, once))
	twice := m.NewGrads()
	require.NoError(t, m.Backward(fresh, small, dOut, twice))
	require.NoError(t, m.Backward(fresh, small, dOut, twice))
	for i := range once.Data {
		require.InDelta(t, 2*once.Data[i], twice.Data[i], 1e-6*(1+math.Abs(float64(once.Data[i]))))
	}

	big := m.NewWorkspace(3, 12)
	require.NoError(t, m.Forward(big, randomBatch(cfg, 3, 12, 7)))
	require.NoError(t, m.Forward(big, small))
	reused := m.NewGrads()
	require.NoError(t, m.Backward(big, small, dOut, reused))
	assert.Equal(t, fresh.LogProbs[:5], big.LogProbs[:5])
	assert.Equal(t, once.Data, reused.Data)
}

// TestChunkedHeadBackward checks that the LM-head backward gives the same gradients when it
// processes the tokens in several chunks.
func TestChunkedHeadBackward(t *testing.T) {
	cfg := testConfig(false, true)
	m := newTestModel(t, cfg, 2, 9)
	b := randomBatch(cfg, 3, 9, 10)
	dOut := make([]float32, 27)
	for i := range dOut {
		dOut[i] = float32(i%5) - 2
	}
	grads := func(rows int) []float32 {
		ws := m.NewWorkspace(3, 9)
		ws.headRows = rows
		require.NoError(t, m.Forward(ws, b))
		g := m.NewGrads()
		require.NoError(t, m.Backward(ws, b, dOut, g))
		return g.Data
	}
	whole, chunked := grads(27), grads(4)
	for i := range whole {
		require.InDelta(t, whole[i], chunked[i], 1e-5*(1+math.Abs(float64(whole[i]))), "param %d (%s)", i, tensorOf(m.W, i))
	}
}

// b0 runs a valid forward on ws and returns its batch, for tests of Backward's checks.
func b0(t *testing.T, m *Model, ws *Workspace) *Batch {
	t.Helper()
	b := randomBatch(m.Config, 2, 8, 3)
	require.NoError(t, m.Forward(ws, b))
	return b
}

// TestDeterministic checks that repeated forward+backward passes give bit-identical
// log-probs and gradients (the trainer's same-seed, same-weights guarantee rests on it).
func TestDeterministic(t *testing.T) {
	cfg := testConfig(false, false)
	m := newTestModel(t, cfg, 2, 12)
	b := randomBatch(cfg, 4, 70, 13)
	packSegments(b, 30)
	w := make([]float32, len(b.Tokens))
	for i := range w {
		w[i] = 1
	}
	run := func() (float64, []float32) {
		ws := m.NewWorkspace(4, 70)
		g := m.NewGrads()
		loss, err := m.WeightedNLL(ws, b, w, g)
		require.NoError(t, err)
		return loss, g.Data
	}
	l1, g1 := run()
	l2, g2 := run()
	assert.Equal(t, l1, l2)
	assert.Equal(t, g1, g2)
}
