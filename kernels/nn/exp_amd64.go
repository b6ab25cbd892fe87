package nn

import (
	"math"

	"golang.org/x/sys/cpu"
)

// hasAVX2FMA is fixed at start-up from the CPU's feature bits.
var hasAVX2FMA = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func expShiftAVX2(dst, src []float32, a, b float32) float32

// expShiftVec handles the leading multiple of 8 elements with AVX2 when available and
// returns how many it did and their sum.
func expShiftVec(dst, src []float32, a, b float32) (int, float32) {
	n := len(src) &^ 7
	if !hasAVX2FMA || n == 0 {
		return 0, 0
	}
	return n, expShiftAVX2(dst[:n], src[:n], a, b)
}

//go:noescape
func maxAVX2(x []float32) float32

//go:noescape
func scaleAVX2(x []float32, s float32)

// maxVec returns how many leading elements it covered and their max.
func maxVec(x []float32) (int, float32) {
	n := len(x) &^ 7
	if !hasAVX2FMA || n == 0 {
		return 0, float32(math.Inf(-1))
	}
	return n, maxAVX2(x[:n])
}

// scaleVec scales the leading multiple of 8 elements and returns how many it did.
func scaleVec(x []float32, s float32) int {
	n := len(x) &^ 7
	if !hasAVX2FMA || n == 0 {
		return 0
	}
	scaleAVX2(x[:n], s)
	return n
}
