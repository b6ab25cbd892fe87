package nn

//go:noescape
func dotAVX2(x, y []float32) float32

//go:noescape
func softmaxGradAVX2(p, dp []float32, d, scale float32)

//go:noescape
func swigluFwdAVX2(gate, up, out []float32)

//go:noescape
func swigluBwdAVX2(gate, up, dout, dgate, dup []float32)

// vecLen is the leading multiple of 8 of n that the AVX2 loops handle (0 without AVX2).
func vecLen(n int) int {
	if !hasAVX2FMA {
		return 0
	}
	return n &^ 7
}

func dotVec(x, y []float32) (int, float32) {
	n := vecLen(len(x))
	if n == 0 {
		return 0, 0
	}
	return n, dotAVX2(x[:n], y[:n])
}

func softmaxGradVec(p, dp []float32, d, scale float32) int {
	n := vecLen(len(p))
	if n > 0 {
		softmaxGradAVX2(p[:n], dp[:n], d, scale)
	}
	return n
}

func swigluFwdVec(gate, up, out []float32) int {
	n := vecLen(len(gate))
	if n > 0 {
		swigluFwdAVX2(gate[:n], up[:n], out[:n])
	}
	return n
}

func swigluBwdVec(gate, up, dout, dgate, dup []float32) int {
	n := vecLen(len(gate))
	if n > 0 {
		swigluBwdAVX2(gate[:n], up[:n], dout[:n], dgate[:n], dup[:n])
	}
	return n
}
