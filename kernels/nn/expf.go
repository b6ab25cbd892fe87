package nn

import "math"

// expf is a float32 e^x accurate to a few ulp, several times faster than math.Exp; the
// softmaxes and SiLU call it once per element, so it sits on the hot path.
func expf(x float32) float32 {
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693145751953125
		ln2lo = 1.428606765330187045e-06
	)
	if x > 88.72283 {
		return float32(math.Inf(1))
	}
	if x < -87.33654 {
		return 0
	}
	if x != x {
		return x
	}
	// x = n*ln2 + r with |r| <= ln2/2, then e^x = 2^n * e^r.
	fn := x * log2e
	var n int32
	if fn >= 0 {
		n = int32(fn + 0.5)
	} else {
		n = int32(fn - 0.5)
	}
	nf := float32(n)
	r := x - nf*ln2hi - nf*ln2lo
	// Taylor series of e^r to degree 7: error < 1e-8 relative on |r| <= 0.347.
	p := float32(1.0 / 5040)
	p = p*r + 1.0/720
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	// Scale by 2^n in two steps so that n = -126..-127 and n = 128 stay representable.
	h := n / 2
	s1 := math.Float32frombits(uint32(h+127) << 23)
	s2 := math.Float32frombits(uint32(n-h+127) << 23)
	return p * s1 * s2
}

// Exp32 is the package's fast float32 e^x, exported for other kernels (samplers, losses)
// that need the same numerics as the softmaxes here.
func Exp32(x float32) float32 { return expf(x) }

// ExpShift sets dst[i] = e^(a*src[i]+b) for every i < len(src) and returns the sum of the
// results. dst may alias src. On amd64 with AVX2 and FMA, eight lanes run at a time.
func ExpShift(dst, src []float32, a, b float32) float32 {
	dst = dst[:len(src)]
	n, s := expShiftVec(dst, src, a, b)
	for i := n; i < len(src); i++ {
		e := expf(a*src[i] + b)
		dst[i] = e
		s += e
	}
	return s
}
