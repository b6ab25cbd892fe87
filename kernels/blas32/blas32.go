// Package blas32 plugs the project's sgemm (kernels.Pool) into gonum's BLAS interface so
// that gorgonia's float32 matrix products run on it:
//
//	gorgonia.Use(blas32.New(pool))
//
// gorgonia.Use sets a package-level variable inside gorgonia (and gorgonia/tensor); that
// global is the one piece of shared state the project accepts, because gorgonia offers no
// other way to choose its BLAS. Call it once at start-up, before building graphs.
package blas32

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/posttrain/posttrain/kernels"
)

// BLAS is gonum's pure-Go BLAS with Sgemm replaced by kernels.Pool.Sgemm. Every other
// routine (float64, complex, level 1 and 2) is gonum's.
type BLAS struct {
	gonum.Implementation
	pool *kernels.Pool
}

// New returns a BLAS whose Sgemm runs on pool. The pool must outlive every use.
func New(pool *kernels.Pool) *BLAS { return &BLAS{pool: pool} }

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, as gonum's
// blas.Float32 defines it. Invalid transpose values get gonum's own panic.
func (b *BLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, bm []float32, ldb int, beta float32, c []float32, ldc int) {
	transA, okA := isTrans(tA)
	transB, okB := isTrans(tB)
	if !okA || !okB {
		b.Implementation.Sgemm(tA, tB, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc)
		return
	}
	b.pool.Sgemm(transA, transB, m, n, k, alpha, a, lda, bm, ldb, beta, c, ldc)
}

// isTrans maps a gonum transpose flag to a bool; for real matrices the conjugate
// transpose is the transpose.
func isTrans(t blas.Transpose) (trans, ok bool) {
	switch t {
	case blas.NoTrans:
		return false, true
	case blas.Trans, blas.ConjTrans:
		return true, true
	}
	return false, false
}
