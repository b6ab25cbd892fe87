package kernels

import (
	"fmt"
	"runtime"
	"sync/atomic"
)

// microKernel is one register-tile routine plus the cache blocking chosen for it.
type microKernel struct {
	name   string
	mr, nr int // register tile: mr rows of C by nr columns
	// mc, kc, nc are the largest blocks: an mc x kc block of packed A stays in L2, a
	// kc x nr sliver of packed B in L1, and a kc x nc panel of packed B in L3.
	mc, kc, nc int
	// tile computes the mr x nr tile c = alpha*a*b + beta*c, where a is a packed mr x kc
	// sliver (kc groups of mr values), b is kc rows of nr values ldb apart (ldb == nr
	// when packed), and c has row stride ldc. beta == 0 means c is written without being
	// read. The slices are long enough.
	tile func(kc int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32)
}

// gemmBuf holds one worker's packing buffers; they grow to the largest block seen and
// are then reused, so steady-state calls allocate nothing.
type gemmBuf struct {
	a, b []float32
	tmp  [maxTile]float32 // edge tiles are computed here, then added into C
	acc  []float32        // one-row products: a panel of accumulators (gemvRow)
	one  [1]float32
	// hw is shared by the buffers of one arena. A buffer that must grow grows to the
	// largest size any of them has needed: which buffer a chunk or a nested call gets
	// depends on timing, and one that had only seen small blocks would otherwise
	// allocate whenever it first met a larger one, however long the run had been warm.
	hw *highWater
}

// highWater holds the largest sizes needed so far by the buffers of one arena, and
// how many times they rose (ver): the pool then grows its idle buffers to them, so a
// buffer that a late-starting worker rarely gets does not allocate in a warm run.
type highWater struct{ a, b, acc, ver atomic.Int64 }

// raise records in x, a field of hw, that n floats are needed and returns the size to
// allocate: the largest need seen, never less than n.
func (hw *highWater) raise(x *atomic.Int64, n int) int {
	for {
		c := x.Load()
		if int64(n) <= c {
			return int(c)
		}
		if x.CompareAndSwap(c, int64(n)) {
			hw.ver.Add(1)
			return n
		}
	}
}

// fit grows g's buffers to its arena's high-water marks. The caller owns g.
func (g *gemmBuf) fit() {
	if n := int(g.hw.a.Load()); len(g.a) < n {
		g.a = make([]float32, n)
	}
	if n := int(g.hw.b.Load()); len(g.b) < n {
		g.b = make([]float32, n)
	}
	if n := int(g.hw.acc.Load()); len(g.acc) < n {
		g.acc = make([]float32, n)
	}
}

// maxTile bounds mr*nr over all micro-kernels.
const maxTile = 8 * 32

// ensure makes a and b hold at least na and nb floats. They only ever grow.
func (g *gemmBuf) ensure(na, nb int) {
	if len(g.a) < na {
		g.a = make([]float32, g.hw.raise(&g.hw.a, na))
	}
	if len(g.b) < nb {
		g.b = make([]float32, g.hw.raise(&g.hw.b, nb))
	}
}

// gemmTask is one Sgemm call, split over the workers by rows (splitM) or columns of C.
type gemmTask struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a, b, c        []float32
	lda, ldb, ldc  int
	splitM         bool
	unit           int // rows (splitM) or columns per chunk, a multiple of the tile
	// packedB, when set, is all of op(B) packed once (phase 1, one chunk per kc x nc
	// block) and then shared by the row chunks (phase 2) instead of each packing it.
	packedB  []float32
	kcb, ncb int
	packing  bool // phase 1
}

// sharedBMax bounds the floats of op(B) packed once per call for all row chunks.
const sharedBMax = 8 << 20

// parallelMinFlops is the smallest problem worth waking the workers for: a wake-up and
// join cost a few microseconds, about this many flops on one core.
const parallelMinFlops = 1 << 19

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major matrices, where op(A) is
// m x k (A is k x m when transA), op(B) is k x n (B is n x k when transB), and lda, ldb,
// ldc are the row strides. When beta is 0, C is overwritten without being read (NaNs in
// it do not propagate).
//
// Like BLAS, Sgemm panics with a message naming the bad argument when the sizes, strides
// or slice lengths are inconsistent; these are programming errors, not input errors.
// In steady state it allocates nothing.
func (p *Pool) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	p.sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	runtime.KeepAlive(p) // the cleanup must not stop the workers mid-call
}

func (p *pool) sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkSgemm(transA, transB, m, n, k, a, lda, b, ldb, c, ldc)
	if m == 0 || n == 0 {
		return
	}
	g := gemmTask{
		transA: transA, transB: transB, m: m, n: n, k: k,
		alpha: alpha, beta: beta, a: a, b: b, c: c, lda: lda, ldb: ldb, ldc: ldc,
	}
	kern := p.kern
	// Split the longer side of C, in whole register tiles, so each chunk packs the
	// shorter operand again at little cost. Several chunks per worker balance the load
	// when a worker starts late; chunks of at least minChunk keep the repacking small.
	g.splitM = m >= n
	side, tile := n, kern.nr
	if g.splitM {
		side, tile = m, kern.mr
	}
	chunks := 1
	if p.workers > 1 && 2*m*n*k >= parallelMinFlops {
		// A multiple of the worker count, so that workers starting together end together.
		chunks = min(4*p.workers, side/minChunk, maxChunks)
		chunks = max(chunks-chunks%p.workers, p.workers)
	}
	g.unit = roundUp(ceilDiv(side, chunks), tile)
	chunks = ceilDiv(side, g.unit)
	if chunks > 1 && p.acquire() {
		if g.splitM && k*roundUp(n, kern.nr) <= sharedBMax {
			// Pack op(B) once, in parallel over its blocks, for all row chunks.
			g.kcb, g.ncb = balanced(k, kern.kc, 1), balanced(n, kern.nc, kern.nr)
			blocks := ceilDiv(n, g.ncb) * ceilDiv(k, g.kcb)
			size := blocks * g.kcb * g.ncb
			if len(p.shared) < size {
				p.shared = make([]float32, size)
			}
			g.packedB = p.shared[:size]
			g.packing = true
			p.task.gemm = g
			p.dispatch(blocks)
			if p.failed() {
				p.finish()
				return
			}
			p.task.gemm.packing = false
		} else {
			p.task.gemm = g
		}
		p.run(chunks)
		return
	}
	g.unit = side
	if p.mu.TryLock() {
		// Workers idle (or closed): borrow the caller's buffers.
		g.runChunk(kern, 0, 1, p.bufs[0])
		p.fitOwn()
		p.mu.Unlock()
		return
	}
	buf, slot := p.takeAlone()
	g.runChunk(kern, 0, 1, buf)
	p.putAlone(buf, slot)
}

// minChunk is the fewest rows or columns of C worth a chunk of their own.
const minChunk = 128

func checkSgemm(transA, transB bool, m, n, k int, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels: sgemm: negative size m=%d n=%d k=%d", m, n, k))
	}
	ar, ac := m, k
	if transA {
		ar, ac = k, m
	}
	br, bc := k, n
	if transB {
		br, bc = n, k
	}
	checkMat("A", ar, ac, a, lda)
	checkMat("B", br, bc, b, ldb)
	checkMat("C", m, n, c, ldc)
}

func checkMat(name string, rows, cols int, x []float32, ld int) {
	if ld < max(1, cols) {
		panic(fmt.Sprintf("kernels: sgemm: %s is %dx%d but its row stride is %d", name, rows, cols, ld))
	}
	if rows == 0 || cols == 0 {
		return
	}
	if need := (rows-1)*ld + cols; len(x) < need {
		panic(fmt.Sprintf("kernels: sgemm: %s is %dx%d with row stride %d and needs %d elements, has %d", name, rows, cols, ld, need, len(x)))
	}
}

// runChunk computes chunk id of C: unit rows (splitM) or columns starting at id*unit.
func (g *gemmTask) runChunk(kern *microKernel, id, chunks int, buf *gemmBuf) {
	if g.packing {
		// Block id of op(B): panel id/nP of nc columns, block id%nP of kc rows.
		nP := ceilDiv(g.k, g.kcb)
		jc, pc := id/nP*g.ncb, id%nP*g.kcb
		packB(g.packedB[id*g.kcb*g.ncb:], g.b, g.ldb, g.transB, pc, jc, min(g.kcb, g.k-pc), min(g.ncb, g.n-jc), kern.nr)
		return
	}
	if chunks == 1 {
		gemmSerial(kern, buf, g.transA, g.transB, g.m, g.n, g.k, g.alpha, g.a, g.lda, g.b, g.ldb, g.beta, g.c, g.ldc, nil)
		return
	}
	if g.splitM {
		i0, i1 := id*g.unit, min((id+1)*g.unit, g.m)
		var a []float32
		if g.transA {
			a = g.a[i0:]
		} else {
			a = g.a[i0*g.lda:]
		}
		gemmSerial(kern, buf, g.transA, g.transB, i1-i0, g.n, g.k, g.alpha, a, g.lda, g.b, g.ldb, g.beta, g.c[i0*g.ldc:], g.ldc, g.packedB)
		return
	}
	j0, j1 := id*g.unit, min((id+1)*g.unit, g.n)
	var b []float32
	if g.transB {
		b = g.b[j0*g.ldb:]
	} else {
		b = g.b[j0:]
	}
	gemmSerial(kern, buf, g.transA, g.transB, g.m, j1-j0, g.k, g.alpha, g.a, g.lda, b, g.ldb, g.beta, g.c[j0:], g.ldc, nil)
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }

// balanced splits n into the fewest blocks of at most maxBlock and returns the block
// size, rounded up to a multiple of unit, that makes them near-equal.
func balanced(n, maxBlock, unit int) int {
	blocks := ceilDiv(n, maxBlock)
	return min(roundUp(ceilDiv(n, blocks), unit), roundUp(maxBlock, unit))
}

// directRows is the most rows of C for which a non-transposed B is read in place
// instead of packed: with so few rows each sliver of B is used by few tiles, and
// packing would cost about as much as the arithmetic (decoding shapes).
const directRows = 32

// gemmSerial is the Goto/BLIS loop nest on one goroutine: for each kc x nc panel of B
// (packed once, or taken from packedB when the call's row chunks share it), for each
// mc x kc block of A (packed once), run the micro-kernel over the block's mr x nr tiles.
//
// Every element of C gets the same floating-point operations whatever m is and
// wherever its row falls in the tiling: the K blocking depends on k alone, each tile
// accumulates over its kc steps with one FMA chain per element, and edge tiles go
// through the same kernel epilogue as full ones. So a row computed alone, or in any
// batch, split or worker count, is bit-identical (batched decoding relies on it). One
// row therefore takes the tiled path too, not a dot/axpy loop whose summation order
// would differ; the one-row kernel for a non-transposed B (gemvRow) does the tiles'
// exact per-element operations without computing mr-1 wasted rows.
func gemmSerial(kern *microKernel, buf *gemmBuf, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int, packedB []float32) {
	if alpha == 0 || k == 0 {
		scaleC(m, n, beta, c, ldc)
		return
	}
	if m == 1 && !transB && packedB == nil && hasRowKernel(kern) {
		gemvRow(kern, buf, transA, n, k, alpha, a, lda, b, ldb, beta, c)
		return
	}
	mr, nr := kern.mr, kern.nr
	kcb := balanced(k, kern.kc, 1)
	mcb := balanced(m, kern.mc, mr)
	ncb := balanced(n, kern.nc, nr)
	nP := ceilDiv(k, kcb)
	direct := !transB && m <= directRows && packedB == nil
	if packedB == nil {
		buf.ensure(mcb*kcb, kcb*ncb)
	} else {
		buf.ensure(mcb*kcb, 0)
	}
	for jc := 0; jc < n; jc += ncb {
		nc := min(ncb, n-jc)
		for pc := 0; pc < k; pc += kcb {
			kc := min(kcb, k-pc)
			bp := block{packed: buf.b}
			switch {
			case packedB != nil:
				// Packed by the call's first phase, in the same layout packB makes.
				bp.packed = packedB[(jc/ncb*nP+pc/kcb)*kcb*ncb:]
			case direct:
				// Whole slivers are read from B itself; only the ragged edge is packed.
				bp.b, bp.ld, bp.ndirect = b[pc*ldb+jc:], ldb, nc-nc%nr
				if nc%nr != 0 {
					packB(buf.b, b, ldb, false, pc, jc+bp.ndirect, kc, nc%nr, nr)
				}
			default:
				packB(buf.b, b, ldb, transB, pc, jc, kc, nc, nr)
			}
			bet := beta
			if pc > 0 {
				bet = 1
			}
			for ic := 0; ic < m; ic += mcb {
				mc := min(mcb, m-ic)
				packA(buf.a, a, lda, transA, ic, pc, mc, kc, mr)
				macroKernel(kern, buf, bp, mc, nc, kc, alpha, bet, c[ic*ldc+jc:], ldc)
			}
		}
	}
}

// rowStreamMin is the narrowest one-row product streamed in axpy order: B is read row
// after row (sequential, prefetch-friendly) into a panel of accumulators instead of in
// column strips down all kc rows, which pays off once B outgrows the caches.
const rowStreamMin = 512

// rowPanel is the accumulator panel width (8 KiB, in L1) of a streamed one-row product.
const rowPanel = 2048

// gemvRow computes the one-row product c = alpha*a*B + beta*c (B not transposed, read in
// place) over the same K blocks as the tiled path, giving each element exactly the
// operations a tile gives it: an FMA chain from +0 over the block's steps, times alpha,
// then beta*c fused in. Wide rows accumulate a panel in axpy order (the same chain per
// element) and then run the one-row kernel with kc = 1 on a one: fma(1, acc, +0) is acc,
// since a chain started at +0 is never -0. The last n%8 columns are packed, zero-padded
// to 8, and computed on a copy of their part of c.
func gemvRow(kern *microKernel, buf *gemmBuf, transA bool, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32) {
	kcb := balanced(k, kern.kc, 1)
	nS := 0 // columns [0,nS) are streamed
	if n >= rowStreamMin {
		nS = n &^ 31 // the axpy assembly works in multiples of 32
	}
	n8 := n &^ 7
	tail := n - n8
	na := 0
	if transA {
		na = k
	}
	buf.ensure(na, kcb*8)
	if w := min(nS, rowPanel); len(buf.acc) < w {
		buf.acc = make([]float32, buf.hw.raise(&buf.hw.acc, w))
	}
	buf.one[0] = 1
	if transA {
		// A is k x 1: gather its column so the kernel sees a contiguous row.
		for l := range k {
			buf.a[l] = a[l*lda]
		}
		a = buf.a
	}
	tmp := buf.tmp[:8]
	for pc := 0; pc < k; pc += kcb {
		kc := min(kcb, k-pc)
		bet := beta
		if pc > 0 {
			bet = 1
		}
		for j0 := 0; j0 < nS; j0 += rowPanel {
			w := min(rowPanel, nS-j0)
			acc := buf.acc[:w]
			clear(acc)
			for p, v := range a[pc : pc+kc] {
				axpy(v, b[(pc+p)*ldb+j0:][:w], acc)
			}
			rowKernel(1, buf.one[:], acc, w, c[j0:], w, alpha, bet)
		}
		if n8 > nS {
			rowKernel(kc, a[pc:], b[pc*ldb+nS:], ldb, c[nS:], n8-nS, alpha, bet)
		}
		if tail > 0 {
			packB(buf.b, b, ldb, false, pc, n8, kc, tail, 8)
			clear(tmp)
			if bet != 0 {
				copy(tmp, c[n8:n])
			}
			rowKernel(kc, a[pc:], buf.b, 8, tmp, 8, alpha, bet)
			copy(c[n8:n], tmp[:tail])
		}
	}
}

// block says where the macro-kernel finds B's slivers: the first ndirect columns in b
// itself (row stride ld), the rest in packed.
type block struct {
	packed  []float32
	b       []float32
	ld      int
	ndirect int
}

// macroKernel runs the micro-kernel over an mc x nc block of C from packed A and B.
func macroKernel(kern *microKernel, buf *gemmBuf, bb block, mc, nc, kc int, alpha, beta float32, c []float32, ldc int) {
	mr, nr := kern.mr, kern.nr
	tmp := buf.tmp[:mr*nr]
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		var bp []float32
		ldb := nr
		if jr < bb.ndirect {
			bp, ldb = bb.b[jr:], bb.ld
		} else {
			bp = bb.packed[(jr-bb.ndirect)*kc : (jr-bb.ndirect+nr)*kc]
		}
		for ir := 0; ir < mc; ir += mr {
			rows := min(mr, mc-ir)
			ap := buf.a[ir*kc : (ir+mr)*kc]
			if rows == mr && cols == nr {
				kern.tile(kc, ap, bp, ldb, c[ir*ldc+jr:], ldc, alpha, beta)
				continue
			}
			// Edge tile: run it on a copy of C's part so that beta is applied by the
			// kernel's own epilogue (a fused multiply-add in assembly), exactly as for
			// a full tile; a row's bits must not depend on where the tiling puts it.
			if beta != 0 {
				clear(tmp)
				for i := range rows {
					copy(tmp[i*nr:][:cols], c[(ir+i)*ldc+jr:][:cols])
				}
			}
			kern.tile(kc, ap, bp, ldb, tmp, nr, alpha, beta)
			for i := range rows {
				copy(c[(ir+i)*ldc+jr:][:cols], tmp[i*nr:][:cols])
			}
		}
	}
}

// scaleC sets C = beta*C; beta == 0 writes zeros without reading C.
func scaleC(m, n int, beta float32, c []float32, ldc int) {
	for i := range m {
		row := c[i*ldc:][:n]
		switch beta {
		case 0:
			clear(row)
		case 1:
		default:
			for j := range row {
				row[j] *= beta
			}
		}
	}
}

// packA copies the mc x kc block of op(A) at (i0, p0) into dst as mr-row slivers: sliver
// s holds, for each p, the mr values op(A)[i0+s*mr+i][p0+p], zero-padded past mc.
func packA(dst, a []float32, lda int, trans bool, i0, p0, mc, kc, mr int) {
	if trans && mr == 8 && mc >= 8 {
		packAT8(dst, a, lda, i0, p0, mc, kc)
		return
	}
	for ir := 0; ir < mc; ir += mr {
		rows := min(mr, mc-ir)
		d := dst[ir*kc : (ir+mr)*kc]
		switch {
		case trans && rows == mr && gatherRows(a[p0*lda+i0+ir:], lda, d, kc, mr):
			// A is k x m: the mr values for one p are contiguous; copied in assembly.
		case trans:
			for p := range kc {
				src := a[(p0+p)*lda+i0+ir:][:rows]
				dp := d[p*mr : (p+1)*mr]
				copy(dp, src)
				clear(dp[rows:])
			}
		case rows == 6 && mr == 6:
			packA6(d, a, lda, i0+ir, p0, kc)
		case rows == 8 && mr == 8 && kc >= 8 && transpose8Rows(a[(i0+ir)*lda+p0:], lda, d, 8, kc/8):
			packColsTail(d, a[(i0+ir)*lda+p0:], lda, 8, 8, 8, kc&^7, kc)
		default:
			packColsTail(d, a[(i0+ir)*lda+p0:], lda, mr, rows, mr, 0, kc)
		}
	}
}

// packAT8 is packA for a transposed A (k x m) and 8-row slivers: each sliver is kc
// strided rows of eight contiguous floats.
func packAT8(dst, a []float32, lda, i0, p0, mc, kc int) {
	full := mc &^ 7
	for s := 0; s < full; s += 8 {
		src := a[p0*lda+i0+s:]
		if !gatherRows(src, lda, dst[s*kc:], kc, 8) {
			for p := range kc {
				copy(dst[s*kc+p*8:][:8], src[p*lda:][:8])
			}
		}
	}
	if full < mc {
		d := dst[full*kc:]
		for p := range kc {
			dp := d[p*8:][:8]
			copy(dp, a[(p0+p)*lda+i0+full:][:mc-full])
			clear(dp[mc-full:])
		}
	}
}

// packColsTail sets d[p*ld+j] = src[j*lds+p] for j < width and p in [from, to), and
// zeros d[p*ld+j] for width <= j < pad: it gathers width strided rows of src into
// interleaved columns of d.
func packColsTail(d, src []float32, lds, ld, width, pad, from, to int) {
	for j := range pad {
		if j >= width {
			for p := from; p < to; p++ {
				d[p*ld+j] = 0
			}
			continue
		}
		row := src[j*lds:][:to]
		for p := from; p < to; p++ {
			d[p*ld+j] = row[p]
		}
	}
}

// packA6 packs six full rows of a non-transposed A, reading them side by side.
func packA6(d, a []float32, lda, i, p0, kc int) {
	if kc >= 8 && interleave6Rows(a[i*lda+p0:], lda, d, kc/8) {
		done := kc &^ 7
		packA6Go(d[6*done:], a, lda, i, p0+done, kc-done)
		return
	}
	packA6Go(d, a, lda, i, p0, kc)
}

func packA6Go(d, a []float32, lda, i, p0, kc int) {
	r0 := a[i*lda+p0:][:kc]
	r1 := a[(i+1)*lda+p0:][:kc]
	r2 := a[(i+2)*lda+p0:][:kc]
	r3 := a[(i+3)*lda+p0:][:kc]
	r4 := a[(i+4)*lda+p0:][:kc]
	r5 := a[(i+5)*lda+p0:][:kc]
	d = d[:6*kc]
	for p := range kc {
		q := d[p*6 : p*6+6]
		q[0], q[1], q[2], q[3], q[4], q[5] = r0[p], r1[p], r2[p], r3[p], r4[p], r5[p]
	}
}

// packB copies the kc x nc block of op(B) at (p0, j0) into dst as nr-column slivers:
// sliver s holds, for each p, the nr values op(B)[p0+p][j0+s*nr+j], zero-padded past nc.
func packB(dst, b []float32, ldb int, trans bool, p0, j0, kc, nc, nr int) {
	for jr := 0; jr < nc; jr += nr {
		cols := min(nr, nc-jr)
		d := dst[jr*kc : (jr+nr)*kc]
		switch {
		case !trans && cols == nr && gatherRows(b[p0*ldb+j0+jr:], ldb, d, kc, nr):
		case !trans:
			for p := range kc {
				src := b[(p0+p)*ldb+j0+jr:][:cols]
				dp := d[p*nr : (p+1)*nr]
				copy(dp, src)
				clear(dp[cols:])
			}
		case cols == nr && nr%8 == 0 && kc >= 8 && hasAVX2FMA:
			// B is n x k: column j of op(B) is row j of B, contiguous in p. Transpose
			// eight rows of B at a time.
			for jb := 0; jb < nr; jb += 8 {
				src := b[(j0+jr+jb)*ldb+p0:]
				transpose8Rows(src, ldb, d[jb:], nr, kc/8)
				packColsTail(d[jb:], src, ldb, nr, 8, 8, kc&^7, kc)
			}
		default:
			packColsTail(d, b[(j0+jr)*ldb+p0:], ldb, nr, cols, nr, 0, kc)
		}
	}
}
