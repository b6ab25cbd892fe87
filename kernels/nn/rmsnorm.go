package nn

import "math"

// RMSNormForward normalises each row of x (rows of dim) as y = x / sqrt(mean(x^2) + eps) * w
// and stores 1/rms per row in rinv (which may be nil when no backward pass follows).
// y may alias x.
func RMSNormForward(x, w, y, rinv []float32, dim int, eps float32) {
	rows := len(x) / dim
	w = w[:dim]
	for r := 0; r < rows; r++ {
		xr := x[r*dim : (r+1)*dim]
		yr := y[r*dim : (r+1)*dim]
		ss := dot(xr, xr)
		inv := float32(1 / math.Sqrt(float64(ss)/float64(dim)+float64(eps)))
		if rinv != nil {
			rinv[r] = inv
		}
		for i, v := range xr {
			yr[i] = v * inv * w[i]
		}
	}
}

// RMSNormBackward back-propagates dy through RMSNormForward. It accumulates into dx
// (dx += dL/dx) and dw (dw += dL/dw), using the forward input x and the saved rinv.
// Accumulating lets the residual stream's gradient be updated in place; callers that split
// rows over workers give each worker its own dw and sum them afterwards.
func RMSNormBackward(x, w, rinv, dy, dx, dw []float32, dim int) {
	rows := len(x) / dim
	w = w[:dim]
	dw = dw[:dim]
	for r := 0; r < rows; r++ {
		xr := x[r*dim : (r+1)*dim]
		dyr := dy[r*dim : (r+1)*dim]
		dxr := dx[r*dim : (r+1)*dim]
		inv := rinv[r]
		// s = sum_j dy_j w_j x_j; dx_i = inv*w_i*dy_i - inv^3 * x_i * s / dim.
		var s float32
		for i, v := range xr {
			g := dyr[i] * w[i]
			s += g * v
			dw[i] += dyr[i] * v * inv
		}
		c := inv * inv * inv * s / float32(dim)
		for i, v := range xr {
			dxr[i] += inv*w[i]*dyr[i] - c*v
		}
	}
}
