//go:build !amd64

package trainer

// haveSIMD is false where no vector kernel is written.
func haveSIMD() bool { return false }

// adamwVector is never called without SIMD support.
func adamwVector(p, g, m, v []float32, k *coeffs) int { return 0 }
