// Package kernels owns the numeric hot loops of the engine: the one sgemm routine and the
// worker pool that runs kernels in parallel over the cores, plus small vector helpers
// (Dot, Axpy, Scale).
//
// # Sgemm design
//
// Pool.Sgemm is a Goto/BLIS-style GEMM for row-major float32 matrices. For each kc x nc
// panel of op(B) and each mc x kc block of op(A), both are copied ("packed") into
// contiguous slivers: A into mr-row slivers (mr values per step of k), B into nr-column
// slivers (nr values per step of k). The micro-kernel then computes an mr x nr tile of C
// entirely in registers, reading both slivers sequentially. Packing is where the four
// transpose cases are handled, so one micro-kernel serves all of them; padding the
// slivers with zeros lets it always compute full tiles (edge tiles go through a small
// buffer). alpha and beta are applied when a tile is stored; beta == 0 never reads C.
//
// Micro-kernels, chosen when the Pool is made (golang.org/x/sys/cpu):
//   - avx512: 8x32 tile in 16 ZMM accumulators, Go assembly, AVX-512F. On Zen 5 (full
//     512-bit FMA units) about 220-245 GFLOP/s per core on the bench model's training
//     shapes, measured as flops per second of thread CPU time.
//   - avx2: 6x16 tile in 12 YMM accumulators, AVX2+FMA, about 100-120 GFLOP/s per core.
//   - go: 2x4 tile in plain Go, for other CPUs and architectures (about 6 GFLOP/s).
//
// Blocking, for a core with 48 KiB L1d and 1 MiB L2: kc = 256 (avx512) or 384 (avx2)
// keeps a kc x nr sliver of B in L1 beside a sliver of A; mc = 48 rows of A (48-72 KiB)
// stay in L2; nc = 4096 columns of B (4-6 MiB) stay in the shared L3. Each dimension is
// split into near-equal blocks no larger than these. Packing uses AVX 8x8 transposes and
// row copies on amd64; it costs about 0.1 ns per element.
//
// # Parallelism
//
// A Pool has Workers()-1 goroutines plus the calling goroutine. Sgemm cuts the longer
// side of C into chunks (whole tiles, at least 128 rows or columns, up to 4 per worker, a
// multiple of the worker count). When it cuts rows, op(B) is first packed once, in
// parallel over its kc x nc blocks, into a buffer all row chunks share; when it cuts
// columns, each chunk packs the (shorter) A itself. Problems under about half a
// megaflop stay on the caller. Chunks are claimed one at a time, so a worker that
// starts late does not delay the call.
//
// Steady-state calls allocate nothing, however they nest. Each worker (the caller
// included) has a packing arena for the calls that own the workers; an Sgemm that runs
// alone because the workers are busy (typically one made inside a Parallel fn, as the
// transformer's attention does) takes one of Workers() further arenas with a CAS. The
// buffers of an arena grow only, to the largest block any of them has needed, and
// idle ones are fitted to that mark, so a buffer that timing rarely hands out does
// not allocate late in a run. Workers and waiting callers park on pipes (the network
// poller) rather than channels: parking on a channel takes a runtime sudog, and with
// goroutines waking on other Ps than they slept on, plus GCs emptying the central
// cache, that allocated now and then forever. A waiter polls for 50 µs before it
// blocks, since pool calls often come microseconds apart.
//
// # Row invariance
//
// Each element of C is computed with the same floating-point operations whatever m is,
// wherever its row falls in the tiling, and however the call is split over workers: the
// K blocking depends on k alone, every tile (edge tiles included, through the same
// epilogue) runs one FMA chain per element, and a single row either takes the tiled
// path or (B not transposed, AVX2) a one-row kernel doing those same operations.
// So a row computed alone equals, bit for bit, the same row inside any batch; batched
// decoding and sharded sampling depend on this. Results still differ between kernels.
package kernels
