package nn

// Small vector helpers shared by the kernels. Where it pays, they hand the leading
// multiple of 8 elements to an AVX2 loop (vec_amd64.go, exp_amd64.s) and finish in Go.

// axpy computes y += a*x over len(x) elements.
func axpy(a float32, x, y []float32) {
	y = y[:len(x)]
	for i, v := range x {
		y[i] += a * v
	}
}

// dot returns sum x[i]*y[i] over len(x) elements, accumulated in float32 lanes.
func dot(x, y []float32) float32 {
	y = y[:len(x)]
	i, s0 := dotVec(x, y)
	var s1, s2, s3 float32
	for ; i+4 <= len(x); i += 4 {
		s0 += x[i] * y[i]
		s1 += x[i+1] * y[i+1]
		s2 += x[i+2] * y[i+2]
		s3 += x[i+3] * y[i+3]
	}
	for ; i < len(x); i++ {
		s0 += x[i] * y[i]
	}
	return (s0 + s1) + (s2 + s3)
}

// maxOf returns the largest element of x (-Inf for an empty slice); NaNs may be skipped.
// The scalar tail uses plain branches: the max builtin's NaN handling is several times
// slower on this hot path.
func maxOf(x []float32) float32 {
	i, m0 := maxVec(x)
	m1, m2, m3 := m0, m0, m0
	for ; i+4 <= len(x); i += 4 {
		if x[i] > m0 {
			m0 = x[i]
		}
		if x[i+1] > m1 {
			m1 = x[i+1]
		}
		if x[i+2] > m2 {
			m2 = x[i+2]
		}
		if x[i+3] > m3 {
			m3 = x[i+3]
		}
	}
	for ; i < len(x); i++ {
		if x[i] > m0 {
			m0 = x[i]
		}
	}
	if m1 > m0 {
		m0 = m1
	}
	if m3 > m2 {
		m2 = m3
	}
	if m2 > m0 {
		m0 = m2
	}
	return m0
}

// scale multiplies x by s in place.
func scale(x []float32, s float32) {
	for i := scaleVec(x, s); i < len(x); i++ {
		x[i] *= s
	}
}
