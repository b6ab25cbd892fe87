package kernels

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Option configures a Pool.
type Option func(*poolConfig)

type poolConfig struct {
	kernel string
}

// WithKernel asks for one of the micro-kernels named by Kernels ("avx512", "avx2",
// "go"). A name this CPU cannot run selects the fastest kernel instead; Pool.Kernel
// reports the one in use. Tests and benchmarks use it to cover every path.
func WithKernel(name string) Option { return func(c *poolConfig) { c.kernel = name } }

// WithPureGo makes the pool use the portable Go micro-kernel even when the CPU supports
// the assembly ones; it is WithKernel("go").
func WithPureGo() Option { return WithKernel("go") }

// Pool runs kernel work on a fixed number of workers. It is created once per engine and
// passed down, so nothing here is package-level state.
//
// NewPool starts Workers()-1 goroutines; the goroutine that calls Parallel or Sgemm works
// too. A call is cut into chunks that the caller and the woken workers claim one at a
// time, so a worker that the OS schedules late finds the work done instead of making the
// caller wait for it (the machine is often shared). Close stops the goroutines.
//
// A Pool is safe for concurrent use. One call at a time owns the workers; a call that
// arrives while they are busy (from another goroutine, or from inside a Parallel fn on
// this pool) does not wait and does not deadlock: it runs on its calling goroutine
// alone. Two models that train at the same time can therefore share one pool, but each
// gets the cores only when the other is not using them; give each its own pool if they
// should both run multi-threaded (with more workers than cores in total, the OS shares
// the cores).
type Pool struct {
	*pool
}

// pool is the state the worker goroutines share. It is separate from Pool so that an
// unreachable Pool can be collected and its workers stopped (see NewPool).
type pool struct {
	workers int
	kern    *microKernel

	// mu is held by the call that owns the workers, from publishing its task until its
	// last chunk is finished.
	mu     sync.Mutex
	closed bool
	gen    uint32    // calls so far, under mu
	wake   []*signal // one per background worker
	task   task      // the current call's work, written before claim is published
	// claim packs (generation, chunk count, next unclaimed chunk) so that one CAS both
	// checks a worker is still looking at the current call and takes a chunk of it.
	claim    atomic.Uint64
	finished atomic.Int64 // chunks of the current call finished
	done     *signal      // notified by a worker that finishes a call's last chunk

	panicMu  sync.Mutex
	panicked any // first panic value of the current call's chunks, re-raised by its caller

	bufs   []*gemmBuf // packing buffers of the caller (0) and workers 1..n-1
	shared []float32  // op(B) packed once for all row chunks of an Sgemm, under mu
	ownHW  highWater  // sizes bufs grow to
	ownVer int64      // ownHW.ver when bufs were last fitted to it, under mu

	// alone holds the packing buffers of Sgemm calls that run alone while another call
	// owns the workers: above all, calls made from inside a Parallel fn, at most one per
	// worker at a time, so there is one slot per worker. A call takes a free slot with
	// one CAS; the slots grow to the largest block any of them has needed (aloneHW), so
	// whichever slot a nested call gets, it needs no new memory once warm.
	alone    []aloneSlot
	aloneHW  highWater
	aloneVer atomic.Int64 // aloneHW.ver when the idle slots were last fitted to it

	spareMu sync.Mutex
	spare   []*gemmBuf // overflow: more calls running alone at once than slots
}

// aloneSlot is one packing arena for calls that run alone.
type aloneSlot struct {
	busy atomic.Bool
	buf  gemmBuf
}

// task is one call's work cut into chunks: either a Parallel fn over [0,n) or one Sgemm.
type task struct {
	fn     func(lo, hi int)
	n      int
	chunks int
	gemm   gemmTask
}

// maxChunks bounds a call's chunk count so it fits the claim word.
const maxChunks = 1<<16 - 1

// maxWorkers bounds the pool size (Parallel makes one chunk per worker).
const maxWorkers = 1024

// NewPool returns a pool of n workers (n < 1 means 1, and more than maxWorkers means
// maxWorkers). Call Close when done; a Pool that
// becomes unreachable without Close has its goroutines stopped by a cleanup, so a
// forgotten Close leaks nothing for long.
func NewPool(n int, opts ...Option) *Pool {
	n = min(max(n, 1), maxWorkers)
	var cfg poolConfig
	for _, o := range opts {
		o(&cfg)
	}
	p := &pool{
		workers: n,
		kern:    selectKernel(cfg.kernel),
		wake:    make([]*signal, n-1),
		bufs:    make([]*gemmBuf, n),
		alone:   make([]aloneSlot, n),
	}
	if n > 1 {
		p.done = newSignal()
	}
	for i := range p.bufs {
		p.bufs[i] = &gemmBuf{hw: &p.ownHW}
	}
	for i := range p.alone {
		p.alone[i].buf.hw = &p.aloneHW
	}
	for i := range p.wake {
		p.wake[i] = newSignal()
		go p.worker(p.bufs[i+1], p.wake[i])
	}
	h := &Pool{p}
	runtime.AddCleanup(h, func(p *pool) { p.close() }, p)
	return h
}

// Workers is the number of workers.
func (p *Pool) Workers() int { return p.workers }

// Kernel names the sgemm micro-kernel in use: "avx512", "avx2" or "go".
func (p *Pool) Kernel() string { return p.kern.name }

// Close stops the worker goroutines. It waits for a running call to finish. Calls made
// after Close still work, single-threaded. Close is idempotent.
func (p *Pool) Close() { p.close() }

func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, w := range p.wake {
		w.close()
	}
	if p.done != nil {
		// No call is running (mu is held), so nobody waits on done.
		p.done.close()
		p.done.closeRead()
	}
}

func (p *pool) worker(buf *gemmBuf, wake *signal) {
	defer wake.closeRead()
	for wake.wait() {
		if p.work(buf) {
			p.done.notify()
		}
	}
}

// work claims and runs chunks of the current call until none is left. It reports
// whether it finished the call's last chunk.
func (p *pool) work(buf *gemmBuf) (last bool) {
	for {
		v := p.claim.Load()
		next, chunks := int(v&0xffff), int(v>>16&0xffff)
		if next >= chunks {
			return last
		}
		if !p.claim.CompareAndSwap(v, v+1) {
			continue
		}
		// The call cannot finish before this chunk does, so its task stays put.
		p.runChunkRecover(next, buf)
		if p.finished.Add(1) == int64(chunks) {
			last = true
		}
	}
}

// acquire tries to take the workers for one call. It fails when another call owns them
// or the pool is closed; the caller then runs alone.
func (p *pool) acquire() bool {
	if !p.mu.TryLock() {
		return false
	}
	if p.closed {
		p.mu.Unlock()
		return false
	}
	return true
}

// run executes p.task, whose fields other than chunks are set, on the caller and up to
// chunks-1 workers. It must be called with mu held and releases it.
func (p *pool) run(chunks int) {
	p.dispatch(chunks)
	p.finish()
}

// dispatch runs one round of chunks of p.task and returns when all are finished. mu is
// held throughout.
func (p *pool) dispatch(chunks int) {
	p.task.chunks = chunks
	p.gen++
	p.finished.Store(0)
	p.claim.Store(uint64(p.gen)<<32 | uint64(chunks)<<16)
	for _, w := range p.wake[:min(len(p.wake), chunks-1)] {
		w.notify() // a worker with a wake-up already pending looks at this call too
	}
	if !p.work(p.bufs[0]) {
		p.done.wait() // a worker finishes the last chunk and notifies
	}
}

// failed reports whether a chunk of the current call has panicked.
func (p *pool) failed() bool {
	p.panicMu.Lock()
	defer p.panicMu.Unlock()
	return p.panicked != nil
}

// finish ends a call: it clears the task, releases mu and re-raises a chunk's panic.
func (p *pool) finish() {
	p.task = task{}
	p.fitOwn()
	p.panicMu.Lock()
	pv := p.panicked
	p.panicked = nil
	p.panicMu.Unlock()
	p.mu.Unlock()
	if pv != nil {
		panic(pv)
	}
}

// runChunkRecover runs one chunk and records a panic instead of letting it kill a
// worker goroutine (or leave the pool locked): the call's caller re-raises it once every
// chunk is done.
func (p *pool) runChunkRecover(id int, buf *gemmBuf) {
	defer func() {
		if r := recover(); r != nil {
			p.panicMu.Lock()
			if p.panicked == nil {
				p.panicked = r
			}
			p.panicMu.Unlock()
		}
	}()
	p.runChunk(id, buf)
}

func (p *pool) runChunk(id int, buf *gemmBuf) {
	t := &p.task
	if t.fn != nil {
		lo, hi := chunk(t.n, t.chunks, id)
		if lo < hi {
			t.fn(lo, hi)
		}
		return
	}
	t.gemm.runChunk(p.kern, id, t.chunks, buf)
}

// chunk returns share id of [0,n) split into parts contiguous, near-equal ranges.
func chunk(n, parts, id int) (lo, hi int) {
	q, r := n/parts, n%parts
	lo = id*q + min(id, r)
	hi = lo + q
	if id < r {
		hi++
	}
	return lo, hi
}

// Parallel splits [0,n) into min(n, Workers()) contiguous chunks, runs fn on each (on the
// caller and the workers) and waits for all of them. If fn panics in any chunk, the
// other chunks still run and Parallel then panics with the first value on the calling
// goroutine; the pool stays usable.
//
// Parallel itself allocates nothing, but a closure literal passed as fn is allocated at
// the call site because the pool keeps it while the workers run. On hot paths pass a func
// value made once, e.g. a method value stored in a struct field when the struct is built.
func (p *Pool) Parallel(n int, fn func(lo, hi int)) {
	p.parallel(n, fn)
	runtime.KeepAlive(p) // the cleanup must not stop the workers mid-call
}

func (p *pool) parallel(n int, fn func(lo, hi int)) {
	if n <= 0 {
		return
	}
	chunks := min(p.workers, n)
	if chunks <= 1 || !p.acquire() {
		fn(0, n)
		return
	}
	p.task.fn = fn
	p.task.n = n
	p.run(chunks)
}

// fitOwn grows the workers' buffers to the largest blocks any of them has needed, once
// per rise of the marks. It is called with mu held at the end of a call, when no chunk
// is using them.
func (p *pool) fitOwn() {
	if v := p.ownHW.ver.Load(); v != p.ownVer {
		p.ownVer = v
		for _, b := range p.bufs {
			b.fit()
		}
	}
}

// takeAlone returns packing buffers for a call that runs while another owns the
// workers, and the slot to give back to putAlone (-1: an overflow buffer).
func (p *pool) takeAlone() (*gemmBuf, int) {
	for i := range p.alone {
		if p.alone[i].busy.CompareAndSwap(false, true) {
			return &p.alone[i].buf, i
		}
	}
	// More calls than workers run alone at once: only callers from several goroutines
	// outside the pool get here.
	p.spareMu.Lock()
	defer p.spareMu.Unlock()
	if k := len(p.spare); k > 0 {
		b := p.spare[k-1]
		p.spare = p.spare[:k-1]
		return b, -1
	}
	return &gemmBuf{hw: &p.aloneHW}, -1
}

func (p *pool) putAlone(b *gemmBuf, slot int) {
	if slot >= 0 {
		// A slot that was busy while another call fitted the idle ones fits itself.
		b.fit()
		p.alone[slot].busy.Store(false)
		if v := p.aloneHW.ver.Load(); p.aloneVer.Load() != v {
			p.aloneVer.Store(v)
			for i := range p.alone {
				if s := &p.alone[i]; s.busy.CompareAndSwap(false, true) {
					s.buf.fit()
					s.busy.Store(false)
				}
			}
		}
		return
	}
	p.spareMu.Lock()
	p.spare = append(p.spare, b)
	p.spareMu.Unlock()
}
