package trainer

import (
	"fmt"
	"math"

	"github.com/posttrain/posttrain/kernels"
)

// chunkSize is how many elements one unit of optimizer work covers. The partition depends
// only on the segments, never on the worker count, so the gradient norm (summed per chunk,
// then over chunks in order) is the same float64 on 1 or N workers.
const chunkSize = 1 << 15

// Segment is a contiguous range of the flat parameter buffer with one weight-decay rule.
type Segment struct {
	Name   string
	Offset int
	Size   int
	// Decay says whether decoupled weight decay applies (2-D weights yes, RMSNorm gains no).
	Decay bool
}

// LayoutSegments lays tensors out back to back in the given order, as the engine's flat
// parameter buffer does, with weight decay on every tensor of two or more dimensions
// (linear and embedding weights) and none on 1-D tensors (the RMSNorm gains), the usual
// Llama recipe. It returns the segments and the total element count.
func LayoutSegments(names []string, shapes [][]int) ([]Segment, int, error) {
	if len(names) != len(shapes) {
		return nil, 0, fmt.Errorf("layout: %d names but %d shapes", len(names), len(shapes))
	}
	segs := make([]Segment, 0, len(names))
	off := 0
	for i, shape := range shapes {
		n := 1
		for _, d := range shape {
			if d < 0 {
				return nil, 0, fmt.Errorf("layout: tensor %s has negative dimension in shape %v", names[i], shape)
			}
			n *= d
		}
		segs = append(segs, Segment{Name: names[i], Offset: off, Size: n, Decay: len(shape) >= 2})
		off += n
	}
	return segs, off, nil
}

// AdamWConfig holds the optimizer hyper-parameters.
type AdamWConfig struct {
	Beta1       float64 `json:"beta1"`
	Beta2       float64 `json:"beta2"`
	Eps         float64 `json:"eps"`
	WeightDecay float64 `json:"weight_decay"`
	// ClipNorm is the global gradient-norm limit; 0 disables clipping.
	ClipNorm float64 `json:"clip_norm"`
}

// DefaultAdamW is the Llama 3 recipe: betas (0.9, 0.95), eps 1e-8, weight decay 0.1,
// gradients clipped to global norm 1.
func DefaultAdamW() AdamWConfig {
	return AdamWConfig{Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1, ClipNorm: 1}
}

// Validate rejects hyper-parameters outside their ranges, naming the field.
func (c AdamWConfig) Validate() error {
	switch {
	case !(c.Beta1 >= 0 && c.Beta1 < 1):
		return fmt.Errorf("adamw: beta1 must be in [0,1), got %g", c.Beta1)
	case !(c.Beta2 >= 0 && c.Beta2 < 1):
		return fmt.Errorf("adamw: beta2 must be in [0,1), got %g", c.Beta2)
	case !(c.Eps > 0) || math.IsInf(c.Eps, 0):
		return fmt.Errorf("adamw: eps must be > 0, got %g", c.Eps)
	case !(c.WeightDecay >= 0) || math.IsInf(c.WeightDecay, 0):
		return fmt.Errorf("adamw: weight_decay must be >= 0, got %g", c.WeightDecay)
	case !(c.ClipNorm >= 0) || math.IsInf(c.ClipNorm, 0):
		return fmt.Errorf("adamw: clip_norm must be >= 0, got %g", c.ClipNorm)
	}
	return nil
}

// chunk is one unit of optimizer work: [lo,hi) of the flat buffers, inside one segment.
type chunk struct {
	lo, hi int
	seg    int32
	decay  bool
}

// coeffs are one update's per-element constants, computed once per step in float64.
type coeffs struct {
	gradScale float32 // 1/micro-batches times the clipping factor
	beta1     float32
	oneMinus1 float32
	beta2     float32
	oneMinus2 float32
	stepSize  float32 // lr / (1 - beta1^t)
	invSqrtB2 float32 // 1 / sqrt(1 - beta2^t)
	eps       float32
	decayMul  float32 // 1 - lr*weight_decay
}

// AdamW is decoupled-weight-decay Adam (Loshchilov & Hutter) with bias correction over
// flat float32 buffers: parameters, gradients and both moments share one layout. It holds
// no per-run state (the moments live in State), only the work partition and scratch, so
// its steps allocate nothing.
type AdamW struct {
	cfg     AdamWConfig
	pool    *kernels.Pool
	segs    []Segment
	n       int
	chunks  []chunk
	partial []float64 // per-chunk sums of squares

	// Operands of the current pass, set before pool.Parallel and read by the workers.
	p, g, m, v  []float32
	k, kNoDecay coeffs
	normFn      func(lo, hi int)
	updateFn    func(lo, hi int)
	// simd selects the AVX2 update (bit-identical to the Go loop, about 4x faster).
	simd bool
}

// NewAdamW prepares an optimizer for a flat buffer of n elements covered by segs (which
// must tile [0,n) in order), running on pool (nil means one worker).
func NewAdamW(cfg AdamWConfig, n int, segs []Segment, pool *kernels.Pool) (*AdamW, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		pool = kernels.NewPool(1)
	}
	a := &AdamW{cfg: cfg, pool: pool, segs: segs, n: n, simd: haveSIMD()}
	off := 0
	for i, s := range segs {
		if s.Offset != off || s.Size < 0 {
			return nil, fmt.Errorf("adamw: segment %d (%s) starts at %d, want %d", i, s.Name, s.Offset, off)
		}
		for lo := s.Offset; lo < s.Offset+s.Size; lo += chunkSize {
			a.chunks = append(a.chunks, chunk{lo: lo, hi: min(lo+chunkSize, s.Offset+s.Size), seg: int32(i), decay: s.Decay})
		}
		off += s.Size
	}
	if off != n {
		return nil, fmt.Errorf("adamw: segments cover %d elements, buffer has %d", off, n)
	}
	a.partial = make([]float64, len(a.chunks))
	a.normFn = a.normChunks
	a.updateFn = a.updateChunks
	return a, nil
}

// Config returns the hyper-parameters.
func (a *AdamW) Config() AdamWConfig { return a.cfg }

// GradNorm returns the global L2 norm of g, accumulated in float64 in a fixed order.
func (a *AdamW) GradNorm(g []float32) float64 {
	a.g = g
	a.pool.Parallel(len(a.chunks), a.normFn)
	a.g = nil
	var s float64
	for _, v := range a.partial {
		s += v
	}
	return math.Sqrt(s)
}

func (a *AdamW) normChunks(lo, hi int) {
	for c := lo; c < hi; c++ {
		ch := a.chunks[c]
		a.partial[c] = sumSquares(a.g[ch.lo:ch.hi])
	}
}

// sumSquares is the float64 sum of x[i]^2, four accumulators for instruction parallelism.
func sumSquares(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		v := x[i : i+4 : i+4]
		a, b, c, d := float64(v[0]), float64(v[1]), float64(v[2]), float64(v[3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(x); i++ {
		v := float64(x[i])
		s0 += v * v
	}
	return (s0 + s1) + (s2 + s3)
}

// FirstNonFinite names the segment holding the first NaN or Inf in x, or "" if all are finite.
func (a *AdamW) FirstNonFinite(x []float32) string {
	for _, s := range a.segs {
		for _, v := range x[s.Offset : s.Offset+s.Size] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return s.Name
			}
		}
	}
	return ""
}

// Update applies one AdamW step in a single fused pass: with g' = g*gradScale,
//
//	m = beta1*m + (1-beta1)*g'
//	v = beta2*v + (1-beta2)*g'^2
//	p = p*(1 - lr*wd) - lr/(1-beta1^t) * m / (sqrt(v)/sqrt(1-beta2^t) + eps)
//
// where t >= 1 counts updates including this one and wd is 0 on segments without decay.
// It also zeroes g, ready for the next step's accumulation.
func (a *AdamW) Update(p, g, m, v []float32, t int, lr, gradScale float64) error {
	if len(p) != a.n || len(g) != a.n || len(m) != a.n || len(v) != a.n {
		return fmt.Errorf("adamw: buffer sizes p=%d g=%d m=%d v=%d, want %d", len(p), len(g), len(m), len(v), a.n)
	}
	if t < 1 {
		return fmt.Errorf("adamw: step count %d must be >= 1", t)
	}
	bc1 := 1 - math.Pow(a.cfg.Beta1, float64(t))
	bc2 := 1 - math.Pow(a.cfg.Beta2, float64(t))
	a.k = coeffs{
		gradScale: float32(gradScale),
		beta1:     float32(a.cfg.Beta1), oneMinus1: float32(1 - a.cfg.Beta1),
		beta2: float32(a.cfg.Beta2), oneMinus2: float32(1 - a.cfg.Beta2),
		stepSize:  float32(lr / bc1),
		invSqrtB2: float32(1 / math.Sqrt(bc2)),
		eps:       float32(a.cfg.Eps),
		decayMul:  float32(1 - lr*a.cfg.WeightDecay),
	}
	a.kNoDecay = a.k
	a.kNoDecay.decayMul = 1
	a.p, a.g, a.m, a.v = p, g, m, v
	a.pool.Parallel(len(a.chunks), a.updateFn)
	a.p, a.g, a.m, a.v = nil, nil, nil, nil
	return nil
}

func (a *AdamW) updateChunks(lo, hi int) {
	for c := lo; c < hi; c++ {
		ch := a.chunks[c]
		k := &a.kNoDecay
		if ch.decay {
			k = &a.k
		}
		p, g, m, v := a.p[ch.lo:ch.hi], a.g[ch.lo:ch.hi], a.m[ch.lo:ch.hi], a.v[ch.lo:ch.hi]
		if a.simd {
			done := adamwVector(p, g, m, v, k)
			p, g, m, v = p[done:], g[done:], m[done:], v[done:]
		}
		adamwKernel(p, g, m, v, k)
	}
}

// adamwKernel is the fused per-element update; see Update.
func adamwKernel(p, g, m, v []float32, k *coeffs) {
	n := len(p)
	g, m, v = g[:n], m[:n], v[:n]
	gs, b1, o1, b2, o2 := k.gradScale, k.beta1, k.oneMinus1, k.beta2, k.oneMinus2
	step, ib2, eps, dm := k.stepSize, k.invSqrtB2, k.eps, k.decayMul
	// The explicit float32 conversions forbid fused multiply-adds (Go may fuse otherwise,
	// e.g. with GOAMD64=v3), keeping this loop bit-identical to the vector kernel.
	for i := range p {
		gi := g[i] * gs
		mi := float32(b1*m[i]) + float32(o1*gi)
		vi := float32(b2*v[i]) + float32(o2*float32(gi*gi))
		m[i], v[i] = mi, vi
		den := float32(float32(math.Sqrt(float64(vi)))*ib2) + eps
		p[i] = float32(p[i]*dm) - float32(step*mi)/den
		g[i] = 0
	}
}
