package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// rowBlock computes rows [i0,i1) of C = alpha*op(A)*op(B) + beta*C0 with one Sgemm call
// of i1-i0 rows on p and returns them (row stride n).
func rowBlock(p *Pool, gc gemmCase, a, b, c0 []float32, i0, i1 int) []float32 {
	m, n, k := i1-i0, gc.n, gc.k
	lda, ldb := k, n
	as := a[i0*k:]
	if gc.transA {
		lda, as = gc.m, a[i0:]
	}
	if gc.transB {
		ldb = k
	}
	c := append([]float32(nil), c0[i0*n:i1*n]...)
	p.Sgemm(gc.transA, gc.transB, m, n, k, gc.alpha, as, lda, b, ldb, gc.beta, c, n)
	return c
}

// requireSameBits fails at the first element whose bits differ.
func requireSameBits(t *testing.T, want, got []float32, n int, what string) {
	t.Helper()
	require.Len(t, got, len(want), what)
	for i := range want {
		if math.Float32bits(want[i]) != math.Float32bits(got[i]) {
			require.Failf(t, "bits differ", "%s: C[%d][%d] = %v (%08x), want %v (%08x) as in the full call",
				what, i/n, i%n, got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// TestSgemmRowsIndependentOfBatch checks the property batched decoding and sharded
// sampling rely on: a row of C gets the same bits whether it is computed alone (m=1),
// in any contiguous block of rows, or in the full call, on one worker or two. The shapes
// reach every path: one row, the in-place B of <= directRows rows, packed B, edge tiles in
// both directions, several K blocks, row splits with B packed once and shared, column
// splits; with beta 0, 1 and a general beta.
func TestSgemmRowsIndependentOfBatch(t *testing.T) {
	shapes := []struct {
		name    string
		m, n, k int
	}{
		{"few rows, edge columns", 7, 45, 33},
		{"direct B limit", 32, 70, 20},
		{"just past direct B", 33, 70, 20},
		{"several K blocks", 13, 50, 900},
		{"column split", 20, 1100, 260},
		{"wide rows, several panels", 3, 4500, 40},
		{"row split, shared B", 300, 40, 300},
		{"row split, odd rows", 517, 100, 70},
	}
	scalars := [][2]float32{{1, 0}, {0.37, 1}, {-1.25, 0.5}}
	trans := [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}}
	for _, kname := range Kernels() {
		p1, p2 := NewPool(1, WithKernel(kname)), NewPool(2, WithKernel(kname))
		t.Cleanup(p1.Close)
		t.Cleanup(p2.Close)
		for si, s := range shapes {
			for ti, tr := range trans {
				sc := scalars[(si+ti)%len(scalars)]
				gc := gemmCase{transA: tr[0], transB: tr[1], m: s.m, n: s.n, k: s.k, alpha: sc[0], beta: sc[1]}
				name := fmt.Sprintf("%s/%s/tA=%v,tB=%v", kname, s.name, tr[0], tr[1])
				t.Run(name, func(t *testing.T) {
					r := rand.New(rand.NewPCG(uint64(si), uint64(ti)))
					a, b, c0 := randSlice(r, s.m*s.k), randSlice(r, s.k*s.n), randSlice(r, s.m*s.n)
					full := rowBlock(p1, gc, a, b, c0, 0, s.m)
					requireSameBits(t, full, rowBlock(p2, gc, a, b, c0, 0, s.m), s.n, "2 workers")
					for _, p := range []*Pool{p1, p2} {
						w := p.Workers()
						for i := range s.m {
							requireSameBits(t, full[i*s.n:(i+1)*s.n], rowBlock(p, gc, a, b, c0, i, i+1), s.n,
								fmt.Sprintf("row %d alone, %d workers", i, w))
						}
						blocks := [][2]int{{1, s.m}, {0, s.m - 1}, {s.m / 3, s.m/3 + min(9, s.m-s.m/3)}, {s.m / 2, s.m}}
						for range 4 {
							i0 := r.IntN(s.m)
							blocks = append(blocks, [2]int{i0, i0 + 1 + r.IntN(s.m-i0)})
						}
						for _, bl := range blocks {
							if bl[0] >= bl[1] {
								continue
							}
							requireSameBits(t, full[bl[0]*s.n:bl[1]*s.n], rowBlock(p, gc, a, b, c0, bl[0], bl[1]), s.n,
								fmt.Sprintf("rows [%d,%d), %d workers", bl[0], bl[1], w))
						}
					}
				})
			}
		}
	}
}
