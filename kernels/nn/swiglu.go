package nn

// SwiGLUForward computes out = silu(gate) * up elementwise over len(gate) elements, where
// silu(g) = g * sigmoid(g). out may alias up but not gate.
func SwiGLUForward(gate, up, out []float32) {
	up = up[:len(gate)]
	out = out[:len(gate)]
	ExpShift(out, gate, -1, 0) // e^-g, vectorised, then silu(g) = g / (1 + e^-g)
	for i := swigluFwdVec(gate, up, out); i < len(gate); i++ {
		out[i] = gate[i] * up[i] / (1 + out[i])
	}
}

// SwiGLUBackward back-propagates dout through SwiGLUForward, overwriting dgate and dup.
// dgate must not alias gate, up or dout (it holds e^-gate first); dup may alias up.
func SwiGLUBackward(gate, up, dout, dgate, dup []float32) {
	n := len(gate)
	up, dout, dgate, dup = up[:n], dout[:n], dgate[:n], dup[:n]
	ExpShift(dgate, gate, -1, 0)
	for i := swigluBwdVec(gate, up, dout, dgate, dup); i < n; i++ {
		g := gate[i]
		s := 1 / (1 + dgate[i])
		u := up[i]
		d := dout[i]
		dup[i] = d * g * s
		dgate[i] = d * u * s * (1 + g*(1-s))
	}
}
