package nn

// SwiGLUForward computes out = silu(gate) * up elementwise over len(gate) elements, where
// silu(g) = g * sigmoid(g).
func SwiGLUForward(gate, up, out []float32) {
	up = up[:len(gate)]
	out = out[:len(gate)]
	for i, g := range gate {
		out[i] = g * sigmoid(g) * up[i]
	}
}

// SwiGLUBackward back-propagates dout through SwiGLUForward, overwriting dgate and dup.
// dgate may alias gate and dup may alias up only if the caller no longer needs them; they
// are read before being written at each index.
func SwiGLUBackward(gate, up, dout, dgate, dup []float32) {
	n := len(gate)
	up, dout, dgate, dup = up[:n], dout[:n], dgate[:n], dup[:n]
	for i, g := range gate {
		s := sigmoid(g)
		u := up[i]
		d := dout[i]
		dup[i] = d * g * s
		dgate[i] = d * u * s * (1 + g*(1-s))
	}
}

// sigmoid is 1/(1+e^-x), stable for large |x| (expf saturates to 0 or +Inf).
func sigmoid(x float32) float32 {
	return 1 / (1 + expf(-x))
}
