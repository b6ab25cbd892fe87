package kernels

import (
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nestedGemms is the transformer's attention pattern: a Parallel call over items whose
// fn calls Sgemm for each item while the pool's workers are busy with the Parallel
// call. The shape an item gets rotates with round, so every arena meets every shape.
type nestedGemms struct {
	p      *Pool
	shapes []gemmCase
	a, b   []float32
	c      [][]float32
	round  int
	fn     func(lo, hi int) // made once: a method value allocates when taken
}

func newNestedGemms(p *Pool, items int, shapes []gemmCase) *nestedGemms {
	r := rand.New(rand.NewPCG(3, 4))
	maxA, maxB, maxC := 0, 0, 0
	for _, s := range shapes {
		maxA, maxB, maxC = max(maxA, s.m*s.k), max(maxB, s.k*s.n), max(maxC, s.m*s.n)
	}
	x := &nestedGemms{p: p, shapes: shapes, a: randSlice(r, maxA), b: randSlice(r, maxB), c: make([][]float32, items)}
	for i := range x.c {
		x.c[i] = make([]float32, maxC)
	}
	x.fn = x.run
	return x
}

// gemm runs item i's product of this round on p.
func (x *nestedGemms) gemm(p *Pool, i int, c []float32) {
	s := x.shapes[(i+x.round)%len(x.shapes)]
	lda, ldb := s.k, s.n
	if s.transA {
		lda = s.m
	}
	if s.transB {
		ldb = s.k
	}
	p.Sgemm(s.transA, s.transB, s.m, s.n, s.k, s.alpha, x.a, lda, x.b, ldb, s.beta, c, s.n)
}

func (x *nestedGemms) run(lo, hi int) {
	for i := lo; i < hi; i++ {
		x.gemm(x.p, i, x.c[i])
	}
}

// TestNestedSgemmAllocatesNothing runs Sgemms from inside Parallel on a 2-worker pool:
// after a warm-up they must allocate nothing, whichever goroutine runs which item, and
// give the bits a 1-worker pool gives. This is the pattern that, at the bench model's
// scale, used to allocate packing buffers and runtime sudogs now and then.
func TestNestedSgemmAllocatesNothing(t *testing.T) {
	// Big enough that each call would split over the workers if they were free (the
	// nested call must take the alone path), plus a one-row and a transposed product.
	shapes := []gemmCase{
		{m: 256, n: 64, k: 48, alpha: 1, beta: 0, transB: true},
		{m: 320, n: 96, k: 64, alpha: 0.5, beta: 0},
		{m: 1, n: 600, k: 40, alpha: 1, beta: 0},
		{m: 24, n: 40, k: 256, alpha: 1, beta: 0, transA: true},
	}
	tests := []struct {
		name  string
		items int
	}{
		{"one item per worker", 2},
		{"several items per worker", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewPool(2)
			defer p.Close()
			x := newNestedGemms(p, tt.items, shapes)
			step := func() {
				x.round++
				p.Parallel(tt.items, x.fn)
			}
			for range 2 * len(shapes) {
				step() // warm every arena up
			}
			runtime.GC() // empties the runtime's central caches, as happens mid-training
			// One run of many steps, so a rare allocation is counted, not averaged away.
			allocs := testing.AllocsPerRun(1, func() {
				for range 50 {
					step()
				}
			})
			assert.Zero(t, allocs, "allocations in 50 nested steps")

			serial := NewPool(1)
			defer serial.Close()
			want := make([]float32, len(x.c[0]))
			for i := range tt.items {
				s := x.shapes[(i+x.round)%len(x.shapes)]
				x.gemm(serial, i, want)
				require.Equal(t, want[:s.m*s.n], x.c[i][:s.m*s.n], "item %d", i)
			}
		})
	}
}

// TestPoolCallsAllocateNothingAcrossGC makes the caller and the worker park again and
// again (the worker between calls, the caller waiting for a slow chunk) with garbage
// collections in between: parking must not allocate.
func TestPoolCallsAllocateNothingAcrossGC(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	var sum [2]int
	fn := func(lo, hi int) {
		if lo == 1 {
			time.Sleep(20 * time.Microsecond) // whoever runs chunk 1 finishes last
		}
		sum[lo] += hi - lo
	}
	call := func() {
		for i := range 200 {
			p.Parallel(2, fn)
			if i%50 == 0 {
				runtime.GC()
			}
			time.Sleep(5 * time.Microsecond) // the worker goes back to sleep
		}
	}
	call()
	allocs := testing.AllocsPerRun(1, call)
	assert.Zero(t, allocs, "allocations in 200 parallel calls")
	assert.Equal(t, [2]int{600, 600}, sum, "3 runs of 200 calls (AllocsPerRun warms up once)")
}

// TestAloneOverflow has more goroutines run Sgemm alone at once than the pool has
// slots: the overflow buffers must give correct results too.
func TestAloneOverflow(t *testing.T) {
	p := NewPool(2)
	defer p.Close()
	block := make(chan struct{})
	var started, wg sync.WaitGroup
	started.Add(2)
	go p.Parallel(2, func(lo, hi int) { // holds the workers until the others are done
		started.Done()
		<-block
	})
	started.Wait()
	for g := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			checkGemm(t, gemmCase{m: 200, n: 70, k: 60 + g, alpha: 1, beta: 0.5}, uint64(g), p)
		}()
	}
	wg.Wait()
	close(block)
}

func TestSignal(t *testing.T) {
	tests := []struct {
		name string
		pipe bool
	}{{"pipe", true}, {"channel", false}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSignal()
			if !tt.pipe {
				s.closeRead()
				_ = s.w.Close()
				s.r, s.w, s.ch = nil, nil, make(chan struct{}, 1)
			}
			s.notify()
			s.notify() // coalesces with the pending one
			assert.True(t, s.wait(), "pending notification")
			woke := make(chan bool)
			go func() { woke <- s.wait() }()
			time.Sleep(10 * time.Millisecond) // let it block
			s.notify()
			assert.True(t, <-woke, "blocked waiter woken")
			go func() { woke <- s.wait() }()
			time.Sleep(10 * time.Millisecond)
			s.close()
			assert.False(t, <-woke, "closed while waiting")
			assert.False(t, s.wait(), "closed")
			s.closeRead()
		})
	}
}
