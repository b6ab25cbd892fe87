package kernels

import "golang.org/x/sys/cpu"

// hasAVX2FMA is fixed at start-up from the CPU's features; it never changes.
var hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// vecBlock is the assembly loops' unit; the remainder runs in Go.
const vecBlock = 32

//go:noescape
func dotAVX2(a, b *float32, n int) float32

//go:noescape
func axpyAVX2(alpha float32, x, y *float32, n int)

//go:noescape
func scaleAVX2(alpha float32, x *float32, n int)

func dot(a, b []float32) float32 {
	n := len(a) &^ (vecBlock - 1)
	if !hasAVX2FMA || n == 0 {
		return dotGo(a, b)
	}
	return dotAVX2(&a[0], &b[0], n) + dotGo(a[n:], b[n:len(a)])
}

func axpy(alpha float32, x, y []float32) {
	n := len(x) &^ (vecBlock - 1)
	if !hasAVX2FMA || n == 0 {
		axpyGo(alpha, x, y)
		return
	}
	axpyAVX2(alpha, &x[0], &y[0], n)
	axpyGo(alpha, x[n:], y[n:len(x)])
}

func scale(alpha float32, x []float32) {
	n := len(x) &^ (vecBlock - 1)
	if !hasAVX2FMA || n == 0 {
		scaleGo(alpha, x)
		return
	}
	scaleAVX2(alpha, &x[0], n)
	scaleGo(alpha, x[n:])
}
