package kernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// refGemm is the naive float64 reference; it also returns, per element of C, the scale
// sum_l |alpha*a*b| + |beta*c| that bounds the float32 rounding error.
func refGemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) (want, scale []float64) {
	want = make([]float64, m*n)
	scale = make([]float64, m*n)
	for i := range m {
		for j := range n {
			var s, abs float64
			for l := range k {
				var av, bv float32
				if transA {
					av = a[l*lda+i]
				} else {
					av = a[i*lda+l]
				}
				if transB {
					bv = b[j*ldb+l]
				} else {
					bv = b[l*ldb+j]
				}
				s += float64(av) * float64(bv)
				abs += math.Abs(float64(av) * float64(bv))
			}
			v := float64(alpha) * s
			sc := math.Abs(float64(alpha)) * abs
			if beta != 0 {
				v += float64(beta) * float64(c[i*ldc+j])
				sc += math.Abs(float64(beta) * float64(c[i*ldc+j]))
			}
			want[i*n+j] = v
			scale[i*n+j] = sc
		}
	}
	return want, scale
}

func randSlice(r *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	return x
}

type gemmCase struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	pad            int // extra columns in every leading dimension
}

func (gc gemmCase) String() string {
	return fmt.Sprintf("tA=%v/tB=%v/%dx%dx%d/a=%g/b=%g/pad=%d", gc.transA, gc.transB, gc.m, gc.n, gc.k, gc.alpha, gc.beta, gc.pad)
}

// checkGemm runs one case on each pool against the reference (computed once) and
// reports mismatches.
func checkGemm(t testing.TB, gc gemmCase, seed uint64, pools ...*Pool) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, 7))
	ar, ac := gc.m, gc.k
	if gc.transA {
		ar, ac = gc.k, gc.m
	}
	br, bc := gc.k, gc.n
	if gc.transB {
		br, bc = gc.n, gc.k
	}
	lda, ldb, ldc := max(1, ac+gc.pad), max(1, bc+gc.pad), max(1, gc.n+gc.pad)
	a := randSlice(r, max(0, (ar-1)*lda+ac))
	b := randSlice(r, max(0, (br-1)*ldb+bc))
	c := randSlice(r, max(0, (gc.m-1)*ldc+gc.n))
	if gc.beta == 0 {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	orig := append([]float32(nil), c...)
	want, scale := refGemm(gc.transA, gc.transB, gc.m, gc.n, gc.k, gc.alpha, a, lda, b, ldb, gc.beta, c, ldc)
	for _, p := range pools {
		copy(c, orig)
		p.Sgemm(gc.transA, gc.transB, gc.m, gc.n, gc.k, gc.alpha, a, lda, b, ldb, gc.beta, c, ldc)
		compareGemm(t, fmt.Sprintf("%s/%d workers: %v", p.Kernel(), p.Workers(), gc), gc, c, orig, want, scale, ldc)
	}
}

func compareGemm(t testing.TB, name string, gc gemmCase, c, orig []float32, want, scale []float64, ldc int) {
	t.Helper()
	bad := 0
	for i := range gc.m {
		for j := range ldc {
			idx := i*ldc + j
			if idx >= len(c) {
				break
			}
			if j >= gc.n {
				// Padding between rows must be untouched.
				if math.Float32bits(c[idx]) != math.Float32bits(orig[idx]) {
					bad++
				}
				continue
			}
			got, w := float64(c[idx]), want[i*gc.n+j]
			tol := 4e-7*float64(gc.k+2)*scale[i*gc.n+j] + 1e-30
			if math.IsNaN(got) || math.Abs(got-w) > tol {
				if bad < 3 {
					t.Errorf("%s: C[%d,%d] = %g, want %g (tol %g)", name, i, j, got, w, tol)
				}
				bad++
			}
		}
	}
	require.Zero(t, bad, "%s: %d wrong elements", name, bad)
}

// testPools returns every kernel/worker combination the tests cover, closed when t ends.
func testPools(t testing.TB) []*Pool {
	var pools []*Pool
	for _, k := range Kernels() {
		for _, w := range []int{1, 2} {
			p := NewPool(w, WithKernel(k))
			t.Cleanup(p.Close)
			pools = append(pools, p)
		}
	}
	return pools
}

func TestKernelSelection(t *testing.T) {
	ks := Kernels()
	require.NotEmpty(t, ks)
	assert.Equal(t, "go", ks[len(ks)-1], "the portable kernel is always available, last")
	for _, k := range ks {
		p := NewPool(1, WithKernel(k))
		assert.Equal(t, k, p.Kernel())
		p.Close()
	}
	p := NewPool(1, WithKernel("no-such-kernel"))
	defer p.Close()
	assert.Equal(t, ks[0], p.Kernel(), "an unknown name falls back to the fastest kernel")
	assert.Equal(t, "go", NewPool(1, WithPureGo()).Kernel())
}

func TestSgemmMatchesReference(t *testing.T) {
	shapes := [][3]int{
		{1, 1, 1}, {7, 13, 5}, {6, 16, 1}, {5, 17, 3}, {12, 32, 8}, {13, 33, 9},
		{1, 100, 37}, {100, 1, 37}, {67, 131, 259}, {16, 40, 300}, {0, 5, 3}, {5, 0, 3}, {4, 5, 0},
		{300, 50, 40}, {40, 300, 50}, {24, 700, 40}, {1, 5000, 60}, {260, 40, 300}, // split into chunks by rows, by columns
	}
	if !testing.Short() {
		shapes = append(shapes, [3]int{130, 70, 520}, [3]int{33, 300, 64}, [3]int{1100, 37, 33})
	}
	scalars := [][2]float32{{1, 0}, {0.5, 0}, {1, 1}, {-1.5, 0.25}, {0, 2}, {0, 0}}
	bigShape := 50000 // above this volume, one alpha/beta pair per case, rotating
	if testing.Short() {
		bigShape = 2000
	}
	pools := testPools(t)
	seed := uint64(1)
	for _, s := range shapes {
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			for si, sc := range scalars {
				if s[0]*s[1]*s[2] > bigShape && si != int(seed)%len(scalars) {
					continue
				}
				gc := gemmCase{transA: tr[0], transB: tr[1], m: s[0], n: s[1], k: s[2], alpha: sc[0], beta: sc[1], pad: si % 3 * 3}
				seed++
				checkGemm(t, gc, seed, pools...)
			}
		}
	}
}

// TestSgemmBlocking shrinks each kernel's cache blocks so that small problems cross
// many mc, kc and nc block edges, serially and split over workers (where op(B) is packed
// once per call in several blocks and shared by the row chunks).
func TestSgemmBlocking(t *testing.T) {
	shapes := [][3]int{{37, 29, 45}, {300, 70, 45}, {50, 300, 45}, {300, 200, 7}}
	for _, p := range testPools(t) {
		small := *p.kern
		small.mc, small.kc, small.nc = 2*small.mr, 16, 3*small.nr
		p.kern = &small
		for i, s := range shapes {
			for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
				gc := gemmCase{transA: tr[0], transB: tr[1], m: s[0], n: s[1], k: s[2], alpha: 1.5, beta: 0.5, pad: i}
				checkGemm(t, gc, uint64(100+i), p)
			}
		}
	}
}

func TestSgemmRejectsBadArguments(t *testing.T) {
	p := NewPool(1)
	defer p.Close()
	a, b, c := make([]float32, 6), make([]float32, 6), make([]float32, 4)
	tests := []struct {
		name string
		call func()
		msg  string
	}{
		{"negative m", func() { p.Sgemm(false, false, -1, 2, 3, 1, a, 3, b, 2, 0, c, 2) }, "negative size"},
		{"short lda", func() { p.Sgemm(false, false, 2, 2, 3, 1, a, 2, b, 2, 0, c, 2) }, "A is 2x3 but its row stride is 2"},
		{"short B", func() { p.Sgemm(false, false, 2, 2, 3, 1, a, 3, b[:5], 2, 0, c, 2) }, "B is 3x2 with row stride 2 and needs 6 elements, has 5"},
		{"short C", func() { p.Sgemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c[:3], 2) }, "C is 2x2"},
		{"transposed A stride", func() { p.Sgemm(true, false, 2, 2, 3, 1, a, 1, b, 2, 0, c, 2) }, "A is 3x2 but its row stride is 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				r := recover()
				require.NotNil(t, r)
				assert.Contains(t, fmt.Sprint(r), tt.msg)
			}()
			tt.call()
		})
	}
}

func TestSgemmAllocatesNothing(t *testing.T) {
	shapes := [][3]int{{96, 128, 64}, {300, 64, 64}, {16, 200, 32}, {1, 300, 64}} // column split, row split (shared B), direct B, one row
	for _, workers := range []int{1, 2} {
		p := NewPool(workers)
		for _, s := range shapes {
			m, n, k := s[0], s[1], s[2]
			a, b, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
			call := func() {
				p.Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
				p.Sgemm(true, false, m, n, k, 1, a, m, b, n, 1, c, n)
				p.Sgemm(false, false, m, n, k, 1, a, k, b, n, 0, c, n)
			}
			call() // warm the buffers
			assert.Zero(t, testing.AllocsPerRun(10, call), "workers=%d shape=%v", workers, s)
		}
		p.Close()
	}
}

// rowDoubler is the pattern the doc recommends: the Parallel func is a method value made
// once and stored.
type rowDoubler struct {
	x  []float32
	fn func(lo, hi int)
}

func (r *rowDoubler) run(lo, hi int) {
	for i := lo; i < hi; i++ {
		r.x[i] *= 2
	}
}

func TestParallelCoversRangeOnceAndAllocatesNothing(t *testing.T) {
	for _, workers := range []int{1, 2, 3} {
		p := NewPool(workers)
		for _, n := range []int{0, 1, 2, 5, 1000} {
			var mu sync.Mutex
			seen := make([]int, n)
			p.Parallel(n, func(lo, hi int) {
				mu.Lock()
				defer mu.Unlock()
				for i := lo; i < hi; i++ {
					seen[i]++
				}
			})
			for i, s := range seen {
				require.Equal(t, 1, s, "workers=%d n=%d index %d", workers, n, i)
			}
		}
		d := &rowDoubler{x: make([]float32, 64)}
		d.fn = d.run
		for i := range d.x {
			d.x[i] = 1
		}
		allocs := testing.AllocsPerRun(10, func() { p.Parallel(len(d.x), d.fn) })
		assert.Zero(t, allocs, "workers=%d", workers)
		assert.Equal(t, float32(1<<11), d.x[63], "10 runs + 1 warm-up double each element")
		p.Close()
	}
}

// TestParallelRunsChunksConcurrently blocks the first chunk until the second has
// started: that only finishes if a worker goroutine really runs beside the caller.
func TestParallelRunsChunksConcurrently(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	var started sync.WaitGroup
	started.Add(2)
	both := make(chan struct{})
	go func() { started.Wait(); close(both) }()
	ok := make([]bool, 2)
	p.Parallel(2, func(lo, hi int) {
		started.Done()
		select {
		case <-both:
			ok[lo] = true
		case <-time.After(10 * time.Second):
		}
	})
	assert.Equal(t, []bool{true, true}, ok)
}

// TestPoolConcurrentAndNested shares one pool between goroutines and calls Sgemm from
// inside Parallel: nothing may deadlock and every result must be right.
func TestPoolConcurrentAndNested(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	var wg sync.WaitGroup
	for g := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 4 {
				checkGemm(t, gemmCase{m: 70, n: 90, k: 50 + g, alpha: 1, beta: 0.5, transB: i%2 == 0}, uint64(10*g+i), p)
			}
		}()
	}
	p.Parallel(4, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			checkGemm(t, gemmCase{m: 64, n: 80, k: 40, alpha: 2, beta: 0, transA: true}, uint64(200+i), p)
		}
	})
	wg.Wait()
}

func TestPoolAfterClose(t *testing.T) {
	p := NewPool(2)
	p.Close()
	p.Close()
	checkGemm(t, gemmCase{m: 130, n: 90, k: 70, alpha: 1, beta: 0}, 5, p)
	sum := 0
	p.Parallel(10, func(lo, hi int) { sum += hi - lo })
	assert.Equal(t, 10, sum)
}

func TestChunkSplitsEvenly(t *testing.T) {
	tests := []struct{ n, parts int }{{10, 3}, {2, 2}, {7, 1}, {1, 4}, {100, 7}}
	for _, tt := range tests {
		next := 0
		for id := range tt.parts {
			lo, hi := chunk(tt.n, tt.parts, id)
			assert.Equal(t, next, lo, "n=%d parts=%d id=%d", tt.n, tt.parts, id)
			assert.LessOrEqual(t, hi-lo, tt.n/tt.parts+1)
			next = hi
		}
		assert.Equal(t, tt.n, next)
	}
}

func FuzzSgemm(f *testing.F) {
	f.Add(uint8(1), uint8(1), uint8(1), uint8(0), uint8(0))
	f.Add(uint8(7), uint8(13), uint8(5), uint8(3), uint8(2))
	f.Add(uint8(67), uint8(131), uint8(200), uint8(1), uint8(0))
	var pools []*Pool
	for _, k := range Kernels() {
		pools = append(pools, NewPool(2, WithKernel(k)))
	}
	f.Fuzz(func(t *testing.T, m, n, k, flags, pad uint8) {
		gc := gemmCase{
			transA: flags&1 != 0, transB: flags&2 != 0,
			m: int(m), n: int(n), k: int(k),
			alpha: []float32{1, -0.5, 0, 2}[flags>>2&3], beta: []float32{0, 1, 0.25, -1}[flags>>4&3],
			pad: int(pad % 5),
		}
		checkGemm(t, gc, uint64(m)<<24|uint64(n)<<16|uint64(k)<<8|uint64(flags), pools...)
	})
}

// TestUnreachablePoolStopsWorkers drops pools without Close: the cleanup must stop their
// goroutines.
func TestUnreachablePoolStopsWorkers(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 20 {
		p := NewPool(3)
		checkGemm(t, gemmCase{m: 300, n: 50, k: 40, alpha: 1}, 1, p)
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+2 && time.Now().Before(deadline) {
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), before+2, "40 worker goroutines were started")
}

func TestNewPoolClampsWorkers(t *testing.T) {
	tests := []struct{ n, want int }{{-3, 1}, {0, 1}, {1, 1}, {3, 3}, {1 << 20, maxWorkers}}
	for _, tt := range tests {
		p := NewPool(tt.n)
		assert.Equal(t, tt.want, p.Workers(), "NewPool(%d)", tt.n)
		p.Close()
	}
}

func TestParallelPanicReachesCaller(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	for range 5 {
		var ran [2]bool
		assert.PanicsWithValue(t, "chunk 1 failed", func() {
			p.Parallel(2, func(lo, hi int) {
				ran[lo] = true
				if lo == 1 {
					panic("chunk 1 failed")
				}
			})
		})
		assert.Equal(t, [2]bool{true, true}, ran, "the other chunk still ran")
	}
	// The pool is not left locked: a later call is still split over the workers.
	checkGemm(t, gemmCase{m: 300, n: 50, k: 40, alpha: 1}, 3, p)
	assert.True(t, p.mu.TryLock(), "pool unlocked after the panics")
	p.mu.Unlock()
}
