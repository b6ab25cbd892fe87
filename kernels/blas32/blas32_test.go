package blas32

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	"gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/posttrain/posttrain/kernels"
)

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

func TestSgemmMatchesGonum(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	impl := New(pool)
	r := rand.New(rand.NewPCG(3, 4))
	tests := []struct {
		name        string
		tA, tB      blas.Transpose
		m, n, k     int
		alpha, beta float32
	}{
		{"NN", blas.NoTrans, blas.NoTrans, 37, 41, 29, 1, 0},
		{"NT", blas.NoTrans, blas.Trans, 64, 33, 70, 0.5, 1},
		{"TN", blas.Trans, blas.NoTrans, 9, 130, 17, -1, 0.25},
		{"CC", blas.ConjTrans, blas.ConjTrans, 50, 20, 40, 2, -0.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lda, ldb := tt.k, tt.n
			if tt.tA != blas.NoTrans {
				lda = tt.m
			}
			if tt.tB != blas.NoTrans {
				ldb = tt.k
			}
			a := randSlice(r, tt.m*tt.k)
			b := randSlice(r, tt.k*tt.n)
			c := randSlice(r, tt.m*tt.n)
			want := append([]float32(nil), c...)
			gonum.Implementation{}.Sgemm(tt.tA, tt.tB, tt.m, tt.n, tt.k, tt.alpha, a, lda, b, ldb, tt.beta, want, tt.n)
			impl.Sgemm(tt.tA, tt.tB, tt.m, tt.n, tt.k, tt.alpha, a, lda, b, ldb, tt.beta, c, tt.n)
			for i := range c {
				require.InDelta(t, want[i], c[i], 1e-4*(1+math.Abs(float64(want[i]))), "element %d", i)
			}
		})
	}
}

func TestSgemmBadTransposePanicsLikeGonum(t *testing.T) {
	pool := kernels.NewPool(1)
	defer pool.Close()
	c := make([]float32, 1)
	assert.PanicsWithValue(t, "blas: illegal transpose", func() {
		New(pool).Sgemm('x', blas.NoTrans, 1, 1, 1, 1, []float32{1}, 1, []float32{1}, 1, 0, c, 1)
	})
}

// countingBLAS records that gorgonia really routed its matmuls through our Sgemm.
type countingBLAS struct {
	*BLAS
	calls int
}

func (c *countingBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, cc []float32, ldc int) {
	c.calls++
	c.BLAS.Sgemm(tA, tB, m, n, k, alpha, a, lda, b, ldb, beta, cc, ldc)
}

// TestGorgoniaMatMulThroughPool runs a float32 matmul and its gradient in gorgonia with
// the pool plugged in, and restores gorgonia's previous BLAS afterwards.
func TestGorgoniaMatMulThroughPool(t *testing.T) {
	pool := kernels.NewPool(2)
	defer pool.Close()
	impl := &countingBLAS{BLAS: New(pool)}
	prev := gorgonia.WhichBLAS()
	gorgonia.Use(impl)
	t.Cleanup(func() { gorgonia.Use(prev) })

	const m, k, n = 5, 7, 3
	r := rand.New(rand.NewPCG(5, 6))
	xv, wv := randSlice(r, m*k), randSlice(r, k*n)
	g := gorgonia.NewGraph()
	x := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(m, k), gorgonia.WithName("x"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(m, k), tensor.WithBacking(xv))))
	w := gorgonia.NewMatrix(g, tensor.Float32, gorgonia.WithShape(k, n), gorgonia.WithName("w"),
		gorgonia.WithValue(tensor.New(tensor.WithShape(k, n), tensor.WithBacking(wv))))
	y, err := gorgonia.Mul(x, w)
	require.NoError(t, err)
	cost, err := gorgonia.Sum(y)
	require.NoError(t, err)
	grads, err := gorgonia.Grad(cost, w)
	require.NoError(t, err)
	vm := gorgonia.NewTapeMachine(g)
	defer vm.Close()
	require.NoError(t, vm.RunAll())

	got := y.Value().Data().([]float32)
	for i := range m {
		for j := range n {
			var s float64
			for l := range k {
				s += float64(xv[i*k+l]) * float64(wv[l*n+j])
			}
			assert.InDelta(t, s, got[i*n+j], 1e-4, "y[%d,%d]", i, j)
		}
	}
	// d(sum(x*w))/dw[l,j] = sum_i x[i,l]: a transposed product in the backward pass.
	gw := grads[0].Value().Data().([]float32)
	for l := range k {
		var s float64
		for i := range m {
			s += float64(xv[i*k+l])
		}
		for j := range n {
			assert.InDelta(t, s, gw[l*n+j], 1e-4, "dw[%d,%d]", l, j)
		}
	}
	assert.GreaterOrEqual(t, impl.calls, 2, "forward and backward matmuls use the plugged-in Sgemm")
}
