package trainer

import "golang.org/x/sys/cpu"

// adamwAVX2 is implemented in adamw_amd64.s; n must be a multiple of 8.
//
//go:noescape
func adamwAVX2(p, grad, m, v *float32, n int, k *coeffs)

// haveSIMD reports whether the AVX2 update can run on this CPU.
func haveSIMD() bool { return cpu.X86.HasAVX2 && cpu.X86.HasAVX }

// adamwVector runs the vector kernel over the longest multiple-of-8 prefix and returns
// how many elements it handled.
func adamwVector(p, g, m, v []float32, k *coeffs) int {
	n := len(p) &^ 7
	if n == 0 {
		return 0
	}
	_, _, _ = g[n-1], m[n-1], v[n-1]
	adamwAVX2(&p[0], &g[0], &m[0], &v[0], n, k)
	return n
}
