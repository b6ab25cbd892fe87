//go:build !amd64

package kernels

func dot(a, b []float32) float32         { return dotGo(a, b) }
func axpy(alpha float32, x, y []float32) { axpyGo(alpha, x, y) }
func scale(alpha float32, x []float32)   { scaleGo(alpha, x) }

// hasAVX2FMA is false: no assembly on this architecture.
const hasAVX2FMA = false
