// Package kernels owns the numeric hot loops of the engine: the one sgemm routine (Go
// assembly AVX2/FMA micro-kernel with packing, pure-Go fallback) and the worker pool that
// runs kernels in parallel over the cores.
package kernels

import "sync"

// Pool runs kernel work on a fixed number of workers. It is created once per engine and
// passed down, so nothing here is package-level state.
type Pool struct {
	workers int
}

// NewPool returns a pool of n workers (n < 1 means 1).
func NewPool(n int) *Pool {
	if n < 1 {
		n = 1
	}
	return &Pool{workers: n}
}

// Workers is the number of workers.
func (p *Pool) Workers() int { return p.workers }

// Parallel splits [0,n) into contiguous chunks and runs fn on each, one per worker, and
// waits for all of them.
func (p *Pool) Parallel(n int, fn func(lo, hi int)) {
	w := min(p.workers, n)
	if w <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	chunk := (n + w - 1) / w
	for lo := 0; lo < n; lo += chunk {
		hi := min(lo+chunk, n)
		wg.Add(1)
		go func() { defer wg.Done(); fn(lo, hi) }()
	}
	wg.Wait()
}

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, where op(A) is
// m x k (A is k x m when transA), op(B) is k x n (B is n x k when transB), and lda, ldb,
// ldc are the row strides.
func (p *Pool) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	at := func(i, l int) float32 {
		if transA {
			return a[l*lda+i]
		}
		return a[i*lda+l]
	}
	bt := func(l, j int) float32 {
		if transB {
			return b[j*ldb+l]
		}
		return b[l*ldb+j]
	}
	p.Parallel(m, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			for j := 0; j < n; j++ {
				var s float32
				for l := 0; l < k; l++ {
					s += at(i, l) * bt(l, j)
				}
				if beta == 0 {
					c[i*ldc+j] = alpha * s
				} else {
					c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]
				}
			}
		}
	})
}
