//go:build !amd64

package nn

import "math"

// Without amd64 there are no vector loops: every helper reports 0 elements done.

// expShiftVec has no vector path on this architecture.
func expShiftVec(dst, src []float32, a, b float32) (int, float32) { return 0, 0 }

// maxVec has no vector path on this architecture.
func maxVec(x []float32) (int, float32) { return 0, float32(math.Inf(-1)) }

// scaleVec has no vector path on this architecture.
func scaleVec(x []float32, s float32) int { return 0 }

func dotVec(x, y []float32) (int, float32)                  { return 0, 0 }
func softmaxGradVec(p, dp []float32, d, scale float32) int  { return 0 }
func swigluFwdVec(gate, up, out []float32) int              { return 0 }
func swigluBwdVec(gate, up, dout, dgate, dup []float32) int { return 0 }
