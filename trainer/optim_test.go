package trainer

import (
	"math"
	"strings"
	"testing"

	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refAdamW is an independent float64 AdamW (the PyTorch formula) for one element.
func refAdamW(p, g, m, v float64, t int, lr, b1, b2, eps, wd float64) (float64, float64, float64) {
	m = b1*m + (1-b1)*g
	v = b2*v + (1-b2)*g*g
	mHat := m / (1 - math.Pow(b1, float64(t)))
	vHat := v / (1 - math.Pow(b2, float64(t)))
	p = p*(1-lr*wd) - lr*mHat/(math.Sqrt(vHat)+eps)
	return p, m, v
}

func TestAdamWHandComputed(t *testing.T) {
	cfg := AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
	segs := []Segment{{Name: "w", Offset: 0, Size: 2, Decay: true}, {Name: "gain", Offset: 2, Size: 1, Decay: false}}
	opt, err := NewAdamW(cfg, 3, segs, nil)
	require.NoError(t, err)
	p := []float32{1, -2, 1}
	m, v := make([]float32, 3), make([]float32, 3)

	// Step 1: bias correction makes m_hat = g and v_hat = g^2, so the Adam part is
	// lr*g/(|g|+eps) ~= lr*sign(g); decay multiplies by (1 - lr*wd) only on "w".
	g := []float32{0.5, 0.5, 0.5}
	require.NoError(t, opt.Update(p, g, m, v, 1, 0.1, 1))
	assert.InDelta(t, 1*0.99-0.1, p[0], 1e-6, "decayed weight")
	assert.InDelta(t, -2*0.99-0.1, p[1], 1e-6, "decayed weight, negative")
	assert.InDelta(t, 1-0.1, p[2], 1e-6, "gain: no decay")
	assert.InDelta(t, 0.05, m[0], 1e-7)
	assert.InDelta(t, 0.0125, v[0], 1e-8)
	assert.Equal(t, []float32{0, 0, 0}, g, "Update zeroes the gradients")

	// Step 2 by hand for p[0]: m = 0.9*0.05 + 0.1*(-0.25) = 0.02,
	// v = 0.95*0.0125 + 0.05*0.0625 = 0.015, m_hat = 0.02/0.19, v_hat = 0.015/0.0975,
	// p = 0.89*0.99 - 0.1*m_hat/sqrt(v_hat) = 0.854263...
	g = []float32{-0.25, -0.25, -0.25}
	require.NoError(t, opt.Update(p, g, m, v, 2, 0.1, 1))
	assert.InDelta(t, 0.02, m[0], 1e-7)
	assert.InDelta(t, 0.015, v[0], 1e-8)
	want := 0.89*0.99 - 0.1*(0.02/0.19)/math.Sqrt(0.015/0.0975)
	assert.InDelta(t, want, p[0], 1e-6)
}

func TestAdamWMatchesReferenceOverManySteps(t *testing.T) {
	cfg := AdamWConfig{Beta1: 0.9, Beta2: 0.999, Eps: 1e-6, WeightDecay: 0.05}
	const n = 5
	segs := []Segment{{Name: "a", Offset: 0, Size: 3, Decay: true}, {Name: "b", Offset: 3, Size: 2}}
	opt, err := NewAdamW(cfg, n, segs, nil)
	require.NoError(t, err)
	p := []float32{0.3, -0.7, 1.1, 0.9, -0.05}
	m, v := make([]float32, n), make([]float32, n)
	rp, rm, rv := make([]float64, n), make([]float64, n), make([]float64, n)
	for i := range p {
		rp[i] = float64(p[i])
	}
	for step := 1; step <= 20; step++ {
		lr := 0.01 * float64(step%7+1)
		const scale = 0.5
		g := make([]float32, n)
		for i := range g {
			g[i] = float32(math.Sin(float64(step*(i+1)))) * 2
		}
		for i := range g {
			wd := 0.0
			if i < 3 {
				wd = cfg.WeightDecay
			}
			rp[i], rm[i], rv[i] = refAdamW(rp[i], float64(g[i])*scale, rm[i], rv[i], step, lr, cfg.Beta1, cfg.Beta2, cfg.Eps, wd)
		}
		require.NoError(t, opt.Update(p, g, m, v, step, lr, scale))
	}
	for i := range p {
		assert.InDelta(t, rp[i], p[i], 1e-5, "param %d", i)
		assert.InDelta(t, rm[i], m[i], 1e-6, "m %d", i)
		assert.InDelta(t, rv[i], v[i], 1e-6, "v %d", i)
	}
}

func TestAdamWRejectsBadInput(t *testing.T) {
	segs := []Segment{{Name: "a", Offset: 0, Size: 2}}
	tests := []struct {
		name string
		cfg  AdamWConfig
		segs []Segment
		n    int
		want string
	}{
		{"beta1", AdamWConfig{Beta1: 1, Beta2: 0.9, Eps: 1e-8}, segs, 2, "beta1"},
		{"beta2", AdamWConfig{Beta1: 0.9, Beta2: -0.1, Eps: 1e-8}, segs, 2, "beta2"},
		{"eps", AdamWConfig{Beta1: 0.9, Beta2: 0.9}, segs, 2, "eps"},
		{"decay", AdamWConfig{Beta1: 0.9, Beta2: 0.9, Eps: 1e-8, WeightDecay: math.NaN()}, segs, 2, "weight_decay"},
		{"clip", AdamWConfig{Beta1: 0.9, Beta2: 0.9, Eps: 1e-8, ClipNorm: -1}, segs, 2, "clip_norm"},
		{"gap", DefaultAdamW(), []Segment{{Name: "a", Offset: 1, Size: 1}}, 2, "segment 0 (a) starts at 1"},
		{"short", DefaultAdamW(), segs, 3, "cover 2 elements, buffer has 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewAdamW(tc.cfg, tc.n, tc.segs, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	opt, err := NewAdamW(DefaultAdamW(), 2, segs, nil)
	require.NoError(t, err)
	err = opt.Update(make([]float32, 2), make([]float32, 1), make([]float32, 2), make([]float32, 2), 1, 0.1, 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "g=1")
	err = opt.Update(make([]float32, 2), make([]float32, 2), make([]float32, 2), make([]float32, 2), 0, 0.1, 1)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "step count 0")
}

// TestOptimizerIndependentOfWorkers: the norm and the update are bit-identical on 1 and
// 3 workers, because the work partition does not depend on the worker count.
func TestOptimizerIndependentOfWorkers(t *testing.T) {
	const n = 3*chunkSize + 123
	segs := []Segment{{Name: "a", Offset: 0, Size: chunkSize + 7, Decay: true}, {Name: "b", Offset: chunkSize + 7, Size: n - chunkSize - 7}}
	run := func(workers int) (float64, []float32) {
		opt, err := NewAdamW(DefaultAdamW(), n, segs, kernels.NewPool(workers))
		require.NoError(t, err)
		p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range g {
			g[i] = float32(math.Sin(float64(i))) * 1e-2
			p[i] = float32(math.Cos(float64(i)))
		}
		norm := opt.GradNorm(g)
		require.NoError(t, opt.Update(p, g, m, v, 1, 1e-3, 0.5))
		return norm, p
	}
	n1, p1 := run(1)
	n3, p3 := run(3)
	assert.Equal(t, n1, n3)
	assert.Equal(t, p1, p3)
	var ref float64
	for i := 0; i < n; i++ {
		x := float64(float32(math.Sin(float64(i))) * 1e-2)
		ref += x * x
	}
	assert.InDelta(t, math.Sqrt(ref), n1, 1e-9)
}

func TestLayoutSegments(t *testing.T) {
	segs, n, err := LayoutSegments([]string{"emb", "norm", "proj"}, [][]int{{4, 3}, {3}, {2, 3}})
	require.NoError(t, err)
	assert.Equal(t, 21, n)
	assert.Equal(t, []Segment{
		{Name: "emb", Offset: 0, Size: 12, Decay: true},
		{Name: "norm", Offset: 12, Size: 3, Decay: false},
		{Name: "proj", Offset: 15, Size: 6, Decay: true},
	}, segs)
	_, _, err = LayoutSegments([]string{"a"}, [][]int{{2, -1}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "tensor a")
	_, _, err = LayoutSegments([]string{"a"}, nil)
	require.Error(t, err)
}

func TestScheduleValues(t *testing.T) {
	cos := Schedule{PeakLR: 1e-3, WarmupSteps: 10, TotalSteps: 110, MinLRRatio: 0.1}
	lin := cos
	lin.Decay = DecayLinear
	cst := cos
	cst.Decay = DecayConstant
	tests := []struct {
		name string
		s    Schedule
		step int
		want float64
	}{
		{"warmup start", cos, 0, 1e-4},
		{"warmup middle", cos, 4, 5e-4},
		{"warmup end", cos, 9, 1e-3},
		{"decay start", cos, 10, 1e-3},
		{"mid cosine", cos, 60, 1e-4 + (1e-3-1e-4)*0.5},
		{"quarter cosine", cos, 35, 1e-4 + (1e-3-1e-4)*0.5*(1+math.Cos(math.Pi/4))},
		{"floor at total", cos, 110, 1e-4},
		{"floor after total", cos, 500, 1e-4},
		{"mid linear", lin, 60, 5.5e-4},
		{"floor linear", lin, 110, 1e-4},
		{"constant", cst, 100, 1e-3},
		{"constant warmup", cst, 0, 1e-4},
		{"no warmup", Schedule{PeakLR: 2, TotalSteps: 4, MinLRRatio: 0}, 0, 2},
		{"zero floor end", Schedule{PeakLR: 2, TotalSteps: 4, MinLRRatio: 0}, 4, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.s.Validate())
			assert.InDelta(t, tc.want, tc.s.LR(tc.step), 1e-12)
		})
	}
}

func TestScheduleValidate(t *testing.T) {
	ok := Schedule{PeakLR: 1, TotalSteps: 1}
	tests := []struct {
		name string
		edit func(*Schedule)
		want string
	}{
		{"lr", func(s *Schedule) { s.PeakLR = 0 }, "peak_lr"},
		{"lr nan", func(s *Schedule) { s.PeakLR = math.NaN() }, "peak_lr"},
		{"warmup", func(s *Schedule) { s.WarmupSteps = -1 }, "warmup_steps"},
		{"total", func(s *Schedule) { s.TotalSteps = 0 }, "total_steps"},
		{"ratio", func(s *Schedule) { s.MinLRRatio = 1.5 }, "min_lr_ratio"},
		{"decay", func(s *Schedule) { s.Decay = "step" }, `decay "step"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := ok
			tc.edit(&s)
			err := s.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestShuffler(t *testing.T) {
	s := NewShuffler(7, 42)
	first := make([]int, 7)
	require.NoError(t, s.Fill(first))
	assert.ElementsMatch(t, []int{0, 1, 2, 3, 4, 5, 6}, first, "an epoch is a permutation")
	second := make([]int, 7)
	require.NoError(t, s.Fill(second))
	assert.ElementsMatch(t, first, second)
	assert.NotEqual(t, first, second, "each epoch reshuffles")
	assert.Equal(t, 1, s.Epoch)

	// A copy of the exported fields continues identically (resume).
	s2 := NewShuffler(7, 42)
	require.NoError(t, s2.Fill(make([]int, 10)))
	resumed := &Shuffler{N: s2.N, Seed: s2.Seed, Epoch: s2.Epoch, Pos: s2.Pos}
	a, b := make([]int, 12), make([]int, 12)
	require.NoError(t, s2.Fill(a))
	require.NoError(t, resumed.Fill(b))
	assert.Equal(t, a, b)

	other := NewShuffler(7, 43)
	o := make([]int, 7)
	require.NoError(t, other.Fill(o))
	assert.NotEqual(t, first, o, "the seed changes the order")

	_, err := NewShuffler(0, 1).Next()
	require.Error(t, err)
}

// BenchmarkAdamWStep times one optimizer update (norm + fused AdamW pass) on the bench
// preset's parameter count and reports ns per parameter.
func BenchmarkAdamWStep(b *testing.B) {
	const n = 4_999_424 // transformer bench preset: vocab 4096, hidden 256, 4 layers, untied head
	for _, workers := range []int{1, 2} {
		b.Run(map[int]string{1: "workers=1", 2: "workers=2"}[workers], func(b *testing.B) {
			segs := []Segment{{Name: "w", Offset: 0, Size: n - 2048, Decay: true}, {Name: "norm", Offset: n - 2048, Size: 2048}}
			opt, err := NewAdamW(DefaultAdamW(), n, segs, kernels.NewPool(workers))
			require.NoError(b, err)
			p, g, m, v := make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
			for i := range p {
				p[i] = float32(i%97) * 1e-3
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				norm := opt.GradNorm(g)
				if err := opt.Update(p, g, m, v, i+1, 1e-3, 1/(1+norm)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/param")
		})
	}
}

// TestVectorKernelMatchesGo: the AVX2 update is bit-identical to the pure-Go loop (same
// operations, same order), so results do not depend on which one ran.
func TestVectorKernelMatchesGo(t *testing.T) {
	if !haveSIMD() {
		t.Skip("no vector kernel on this CPU")
	}
	const n = 203 // not a multiple of 8: the Go loop finishes the tail
	rng := func(i int) float32 { return float32(math.Sin(float64(i)*1.7)) * float32(i%5+1) }
	mk := func() (p, g, m, v []float32) {
		p, g, m, v = make([]float32, n), make([]float32, n), make([]float32, n), make([]float32, n)
		for i := range p {
			p[i], g[i], m[i], v[i] = rng(i), rng(i+1000)*1e-2, rng(i+2000)*1e-3, float32(math.Abs(float64(rng(i+3000))))*1e-5
		}
		return
	}
	k := coeffs{gradScale: 0.7, beta1: 0.9, oneMinus1: 0.1, beta2: 0.95, oneMinus2: 0.05, stepSize: 3e-4, invSqrtB2: 4.5, eps: 1e-8, decayMul: 0.99997}
	p1, g1, m1, v1 := mk()
	adamwKernel(p1, g1, m1, v1, &k)
	p2, g2, m2, v2 := mk()
	done := adamwVector(p2, g2, m2, v2, &k)
	assert.Equal(t, 200, done)
	adamwKernel(p2[done:], g2[done:], m2[done:], v2[done:], &k)
	assert.Equal(t, bits(p1), bits(p2))
	assert.Equal(t, bits(m1), bits(m2))
	assert.Equal(t, bits(v1), bits(v2))
	assert.Equal(t, make([]float32, n), g2, "gradients zeroed")
}

func TestParamSegments(t *testing.T) {
	cfg, err := transformer.Preset("tiny")
	require.NoError(t, err)
	p := transformer.NewParams(cfg)
	segs, err := ParamSegments(p)
	require.NoError(t, err)
	require.Len(t, segs, len(p.Tensors))
	total, decayed := 0, 0
	for i, s := range segs {
		assert.Equal(t, p.Tensors[i].Name, s.Name)
		assert.Equal(t, total, s.Offset)
		total += s.Size
		if s.Decay {
			decayed += s.Size
		}
		isNorm := strings.HasSuffix(s.Name, "layernorm.weight") || s.Name == "model.norm.weight"
		assert.Equal(t, !isNorm, s.Decay, s.Name)
	}
	assert.Equal(t, len(p.Data), total)
	assert.Equal(t, len(p.Data)-cfg.HiddenSize*(2*cfg.NumHiddenLayers+1), decayed)

	// A view that does not sit in the flat buffer is caught.
	p.Tensors[1].Data = make([]float32, p.Tensors[1].Size())
	_, err = ParamSegments(p)
	require.Error(t, err)
	assert.Contains(t, err.Error(), p.Tensors[1].Name)
}
