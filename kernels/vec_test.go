package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestVectorHelpers(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 9))
	impls := []struct {
		name  string
		dot   func(a, b []float32) float32
		axpy  func(alpha float32, x, y []float32)
		scale func(alpha float32, x []float32)
	}{
		{"dispatch", Dot, Axpy, Scale},
		{"go", dotGo, axpyGo, scaleGo},
	}
	for _, im := range impls {
		for _, n := range []int{0, 1, 7, 31, 32, 33, 64, 100, 1000} {
			t.Run(fmt.Sprintf("%s/n=%d", im.name, n), func(t *testing.T) {
				a, b := randSlice(r, n), randSlice(r, n)
				var want, abs float64
				for i := range a {
					want += float64(a[i]) * float64(b[i])
					abs += math.Abs(float64(a[i]) * float64(b[i]))
				}
				assert.InDelta(t, want, im.dot(a, b), 1e-6*float64(n+1)*(abs+1), "dot")

				y := append([]float32(nil), b...)
				im.axpy(-1.5, a, y)
				for i := range y {
					require.InDelta(t, float64(b[i])-1.5*float64(a[i]), y[i], 1e-5*(1+math.Abs(float64(y[i]))), "axpy[%d]", i)
				}

				x := append([]float32(nil), a...)
				im.scale(0.25, x)
				for i := range x {
					require.Equal(t, a[i]*0.25, x[i], "scale[%d] (exact: power of two)", i)
				}
			})
		}
	}
}

func TestVectorHelpersRejectLengthMismatch(t *testing.T) {
	assert.PanicsWithValue(t, "kernels: Dot: lengths 2 and 3 differ", func() { Dot(make([]float32, 2), make([]float32, 3)) })
	assert.PanicsWithValue(t, "kernels: Axpy: lengths 3 and 2 differ", func() { Axpy(1, make([]float32, 3), make([]float32, 2)) })
}

func BenchmarkDot(b *testing.B) {
	x, y := make([]float32, 4096), make([]float32, 4096)
	var s float32
	for b.Loop() {
		s += Dot(x, y)
	}
	b.ReportMetric(2*4096*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
	_ = s
}
