package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/kernels"
)

func randVec(rng *rand.Rand, n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * scale)
	}
	return v
}

// dotF64 is sum c*y in float64: the scalar objective whose gradient w.r.t. y is c.
func dotF64(c, y []float32) float64 {
	var s float64
	for i := range c {
		s += float64(c[i]) * float64(y[i])
	}
	return s
}

// checkGrad compares an analytic gradient with central differences of f at x, perturbing
// every element of x (restored afterwards).
func checkGrad(t *testing.T, name string, x []float32, analytic []float32, f func() float64) {
	t.Helper()
	const h = 1e-2
	var scale float64
	for _, g := range analytic {
		scale = max(scale, math.Abs(float64(g)))
	}
	require.Greater(t, scale, 1e-4, "%s: gradient is all zero", name)
	for i := range x {
		old := x[i]
		x[i] = old + h
		fp := f()
		x[i] = old - h
		fm := f()
		x[i] = old
		fd := (fp - fm) / (2 * h)
		require.InDelta(t, fd, analytic[i], 1e-4+2e-3*scale+1e-2*math.Abs(fd), "%s[%d]", name, i)
	}
}

func TestExpf(t *testing.T) {
	for x := -87.0; x < 88.5; x += 0.01234 {
		got := float64(expf(float32(x)))
		// float32(x) itself is rounded, so compare with e^float32(x).
		want := math.Exp(float64(float32(x)))
		require.InEpsilon(t, want, got, 4e-7, "x=%g", x)
	}
	assert.Equal(t, float32(0), expf(-100))
	assert.True(t, math.IsInf(float64(expf(100)), 1))
	assert.True(t, math.IsNaN(float64(expf(float32(math.NaN())))))
}

func TestEmbedding(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const vocab, dim = 5, 3
	table := randVec(rng, vocab*dim, 1)
	ids := []int32{4, 0, 4, 2}
	out := make([]float32, len(ids)*dim)
	EmbeddingForward(table, dim, ids, out)
	for i, id := range ids {
		assert.Equal(t, table[int(id)*dim:int(id+1)*dim], out[i*dim:(i+1)*dim])
	}
	dOut := randVec(rng, len(out), 1)
	dTable := make([]float32, len(table))
	EmbeddingBackward(dTable, dim, ids, dOut)
	checkGrad(t, "dTable", table, dTable, func() float64 {
		EmbeddingForward(table, dim, ids, out)
		return dotF64(dOut, out)
	})
}

func TestRMSNorm(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 2))
	for _, dim := range []int{1, 7, 16} {
		const rows = 3
		x := randVec(rng, rows*dim, 1)
		w := randVec(rng, dim, 1)
		c := randVec(rng, rows*dim, 1)
		y := make([]float32, rows*dim)
		rinv := make([]float32, rows)
		const eps = 1e-5
		RMSNormForward(x, w, y, rinv, dim, eps)
		for r := 0; r < rows; r++ {
			var ss float64
			for i := 0; i < dim; i++ {
				ss += float64(x[r*dim+i]) * float64(x[r*dim+i])
			}
			inv := 1 / math.Sqrt(ss/float64(dim)+eps)
			assert.InEpsilon(t, inv, float64(rinv[r]), 1e-5)
			for i := 0; i < dim; i++ {
				assert.InDelta(t, float64(x[r*dim+i])*inv*float64(w[i]), y[r*dim+i], 1e-5)
			}
		}
		dx := randVec(rng, rows*dim, 1) // accumulates onto existing values
		dx0 := append([]float32(nil), dx...)
		dw := make([]float32, dim)
		RMSNormBackward(x, w, rinv, c, dx, dw, dim)
		for i := range dx {
			dx[i] -= dx0[i]
		}
		f := func() float64 { RMSNormForward(x, w, y, nil, dim, eps); return dotF64(c, y) }
		checkGrad(t, "dx", x, dx, f)
		checkGrad(t, "dw", w, dw, f)
	}
}

func TestRoPE(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	const hd, heads, stride = 8, 2, 20 // stride > heads*hd: the tail of each row is untouched
	r, err := NewRoPE(hd, 64, 500000)
	require.NoError(t, err)
	pos := []int32{0, 5, 63}
	x := randVec(rng, len(pos)*stride, 1)
	orig := append([]float32(nil), x...)
	r.Forward(x, stride, heads, pos)
	for ti, p := range pos {
		for h := 0; h < heads; h++ {
			for i := 0; i < hd/2; i++ {
				ang := float64(p) * math.Pow(500000, -float64(2*i)/hd)
				a, b := float64(orig[ti*stride+h*hd+i]), float64(orig[ti*stride+h*hd+i+hd/2])
				assert.InDelta(t, a*math.Cos(ang)-b*math.Sin(ang), x[ti*stride+h*hd+i], 1e-5)
				assert.InDelta(t, b*math.Cos(ang)+a*math.Sin(ang), x[ti*stride+h*hd+i+hd/2], 1e-5)
			}
		}
		assert.Equal(t, orig[ti*stride+heads*hd:(ti+1)*stride], x[ti*stride+heads*hd:(ti+1)*stride])
	}
	// Backward is the transpose (inverse) rotation: check against finite differences.
	c := randVec(rng, len(x), 1)
	dx := append([]float32(nil), c...)
	r.Backward(dx, stride, heads, pos)
	in := append([]float32(nil), orig...)
	checkGrad(t, "dx", in, dx, func() float64 {
		y := append(x[:0:0], in...)
		r.Forward(y, stride, heads, pos)
		return dotF64(c, y)
	})
	_, err = NewRoPE(7, 4, 1e4)
	assert.ErrorContains(t, err, "even")
	_, err = NewRoPE(8, 4, 0)
	assert.ErrorContains(t, err, "theta")
}

func TestSwiGLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	const n = 11
	g := randVec(rng, n, 2)
	g[0] = 30 // saturated sigmoid stays finite
	g[1] = -30
	u := randVec(rng, n, 1)
	c := randVec(rng, n, 1)
	out := make([]float32, n)
	SwiGLUForward(g, u, out)
	for i := range g {
		gg := float64(g[i])
		assert.InDelta(t, gg/(1+math.Exp(-gg))*float64(u[i]), out[i], 1e-5)
	}
	dg, du := make([]float32, n), make([]float32, n)
	SwiGLUBackward(g, u, c, dg, du)
	f := func() float64 { SwiGLUForward(g, u, out); return dotF64(c, out) }
	checkGrad(t, "dgate", g, dg, f)
	checkGrad(t, "dup", u, du, f)
}

func TestLogProb(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	const vocab = 9
	targets := []int32{3, -1, 0, 8}
	rows := len(targets)
	logits := randVec(rng, rows*vocab, 3)
	logits[2*vocab+1] = 200 // a huge logit must not overflow
	logp, lse := make([]float32, rows), make([]float32, rows)
	LogProbForward(logits, vocab, targets, logp, lse)
	for r, tg := range targets {
		if tg < 0 {
			assert.Zero(t, logp[r])
			continue
		}
		var s float64
		for j := 0; j < vocab; j++ {
			s += math.Exp(float64(logits[r*vocab+j]) - 200)
		}
		want := float64(logits[r*vocab+int(tg)]) - (200 + math.Log(s))
		assert.InDelta(t, want, logp[r], 1e-4*math.Max(1, math.Abs(want)))
	}
	coef := randVec(rng, rows, 1)
	dl := make([]float32, len(logits))
	LogProbBackward(logits, vocab, targets, lse, coef, dl)
	assert.Equal(t, make([]float32, vocab), dl[vocab:2*vocab], "unscored row gets no gradient")
	checkGrad(t, "dlogits", logits, dl, func() float64 {
		LogProbForward(logits, vocab, targets, logp, lse)
		return dotF64(coef, logp)
	})
	// In place: dlogits may alias logits.
	in := append([]float32(nil), logits...)
	LogProbForward(in, vocab, targets, logp, lse)
	LogProbBackward(in, vocab, targets, lse, coef, in)
	assert.InDeltaSlice(t, dl, in, 1e-6)
}

// attnRef is a float64 reference of one head of causal attention with segments.
func attnRef(sh AttnShape, q, k, v []float32, segQ, segK []int32) []float64 {
	out := make([]float64, sh.Tq*sh.HeadDim)
	past := sh.S - sh.Tq
	for i := 0; i < sh.Tq; i++ {
		s := make([]float64, sh.S)
		mx := math.Inf(-1)
		for j := 0; j <= past+i; j++ {
			if segK != nil && segK[j] != segQ[i] {
				continue
			}
			var d float64
			for e := 0; e < sh.HeadDim; e++ {
				d += float64(q[i*sh.QStride+e]) * float64(k[j*sh.KStride+e])
			}
			s[j] = d * float64(sh.Scale)
			mx = max(mx, s[j])
		}
		var z float64
		p := make([]float64, sh.S)
		for j := 0; j <= past+i; j++ {
			if segK != nil && segK[j] != segQ[i] {
				continue
			}
			p[j] = math.Exp(s[j] - mx)
			z += p[j]
		}
		for j := range p {
			for e := 0; e < sh.HeadDim; e++ {
				out[i*sh.HeadDim+e] += p[j] / z * float64(v[j*sh.VStride+e])
			}
		}
	}
	return out
}

func TestAttentionHead(t *testing.T) {
	pool := kernels.NewPool(1)
	t.Cleanup(pool.Close)
	cases := []struct {
		name   string
		tq, s  int
		hd     int
		seg    []int32
		stride int
	}{
		{"training square", 6, 6, 4, nil, 8},
		{"packed segments", 7, 7, 4, []int32{0, 0, 0, 1, 1, 2, 2}, 4},
		{"decode one query", 1, 5, 4, nil, 8},
		{"prefill with past", 3, 8, 2, nil, 6},
		{"more rows than a block", 70, 70, 2, nil, 2},
		{"past longer than a block", 66, 140, 2, nil, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(6, uint64(tc.tq)))
			sh := AttnShape{Tq: tc.tq, S: tc.s, HeadDim: tc.hd, QStride: tc.stride, KStride: tc.stride, VStride: tc.stride, OStride: tc.stride, Scale: float32(1 / math.Sqrt(float64(tc.hd)))}
			q := randVec(rng, tc.tq*tc.stride, 1.5)
			k := randVec(rng, tc.s*tc.stride, 1.5)
			v := randVec(rng, tc.s*tc.stride, 1)
			var segQ []int32
			if tc.seg != nil {
				segQ = tc.seg[tc.s-tc.tq:]
			}
			probs := make([]float32, tc.tq*tc.s)
			out := make([]float32, tc.tq*tc.stride)
			AttentionHeadForward(pool, sh, q, k, v, segQ, tc.seg, probs, out)
			out2, lse := make([]float32, len(out)), make([]float32, tc.tq)
			AttentionHeadForwardLSE(pool, sh, q, k, v, segQ, tc.seg, probs, lse, out2)
			require.Equal(t, out, out2)
			ref := attnRef(sh, q, k, v, segQ, tc.seg)
			for i := 0; i < tc.tq; i++ {
				for e := 0; e < tc.hd; e++ {
					require.InDelta(t, ref[i*tc.hd+e], out[i*tc.stride+e], 1e-5, "row %d col %d", i, e)
				}
			}
			c := randVec(rng, len(out), 1)
			for i := range c {
				if i%tc.stride >= tc.hd {
					c[i] = 0 // only the head's own columns are outputs
				}
			}
			dq := make([]float32, len(q))
			dk, dv := make([]float32, len(k)), make([]float32, len(v))
			AttentionHeadBackward(pool, sh, q, k, v, segQ, tc.seg, lse, c, dq, dk, dv, make([]float32, AttentionBackwardScratch(tc.tq, tc.s)))
			f := func() float64 {
				AttentionHeadForward(pool, sh, q, k, v, segQ, tc.seg, probs, out)
				return dotF64(c, out)
			}
			checkGrad(t, "dq", q, dq, f)
			checkGrad(t, "dk", k, dk, f)
			checkGrad(t, "dv", v, dv, f)
		})
	}
}

func TestExpShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for _, n := range []int{0, 3, 8, 37} {
		src := randVec(rng, n, 30)
		if n > 8 {
			src[1] = -200 // underflows to 0
			src[2] = 200  // overflows to +Inf
			src[3] = float32(math.NaN())
			src[4] = 88.7 // largest finite results
			src[5] = -87.3
		}
		dst := make([]float32, n)
		for _, ab := range [][2]float32{{1, 0}, {-1, 0.5}} {
			sum := ExpShift(dst, src, ab[0], ab[1])
			var want float64
			for i, x := range src {
				e := expf(ab[0]*x + ab[1])
				if math.IsNaN(float64(e)) {
					require.True(t, math.IsNaN(float64(dst[i])), "i=%d", i)
					continue
				}
				want += float64(e)
				if math.IsInf(float64(e), 0) || e == 0 {
					require.Equal(t, e, dst[i], "x=%g", ab[0]*x+ab[1])
					continue
				}
				require.InEpsilon(t, float64(e), float64(dst[i]), 2e-7, "x=%g", ab[0]*x+ab[1])
			}
			if n > 8 {
				continue // the sum holds Inf and NaN
			}
			assert.InEpsilon(t, want+1e-30, float64(sum)+1e-30, 1e-6)
		}
	}
}

func TestMaxAndScale(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	for _, n := range []int{0, 1, 7, 8, 9, 40} {
		x := randVec(rng, n, 5)
		want := float32(math.Inf(-1))
		for _, v := range x {
			if v > want {
				want = v
			}
		}
		assert.Equal(t, want, maxOf(x), "n=%d", n)
		y := append([]float32(nil), x...)
		scale(y, -0.5)
		for i := range x {
			assert.Equal(t, x[i]*-0.5, y[i])
		}
	}
}

// TestPortableFallbackMatchesVector runs the helpers with the AVX2 loops switched off, as
// on CPUs without them, and compares with the vector results.
func TestPortableFallbackMatchesVector(t *testing.T) {
	if !hasAVX2FMA {
		t.Skip("no AVX2/FMA on this CPU: the portable path is the only one and the other tests cover it")
	}
	rng := rand.New(rand.NewPCG(9, 9))
	const n = 45
	g, u, d := randVec(rng, n, 3), randVec(rng, n, 1), randVec(rng, n, 1)
	type result struct {
		exp, dg, du, sw []float32
		sum, dt, mx     float32
	}
	run := func() result {
		var r result
		r.exp = make([]float32, n)
		r.sum = ExpShift(r.exp, g, -0.7, 0.2)
		r.dt = dot(g, u)
		r.mx = maxOf(g)
		r.sw = make([]float32, n)
		SwiGLUForward(g, u, r.sw)
		r.dg, r.du = make([]float32, n), make([]float32, n)
		SwiGLUBackward(g, u, d, r.dg, r.du)
		scale(r.sw, 0.5)
		return r
	}
	vec := run()
	hasAVX2FMA = false
	t.Cleanup(func() { hasAVX2FMA = true })
	scalar := run()
	near := func(name string, a, b []float32) {
		for i := range a {
			assert.InDelta(t, a[i], b[i], 1e-5*(1+math.Abs(float64(a[i]))), "%s[%d]", name, i)
		}
	}
	near("exp", vec.exp, scalar.exp)
	near("sum", []float32{vec.sum, vec.dt}, []float32{scalar.sum, scalar.dt})
	assert.Equal(t, vec.mx, scalar.mx)
	near("swiglu", vec.sw, scalar.sw)
	near("dgate", vec.dg, scalar.dg)
	near("dup", vec.du, scalar.du)
}
