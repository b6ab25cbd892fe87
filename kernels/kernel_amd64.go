package kernels

import "golang.org/x/sys/cpu"

// avx2Kernel is the 6x16 AVX2/FMA micro-kernel (kernel_amd64.s): 12 of the 16 YMM
// registers accumulate the tile, so each step does 12 FMAs for 2 loads of B and 6
// broadcasts of A. Blocking for a Zen-class core (48 KiB L1d, 1 MiB L2, shared L3):
// a kc x 16 sliver of B (24 KiB at kc=384) and a 6 x kc sliver of A stay in L1, an
// mc x kc block of A (72 KiB) in L2, and the kc x nc panel of B in L3.
var avx2Kernel = &microKernel{
	name: "avx2",
	mr:   6, nr: 16,
	mc: 48, kc: 384, nc: 4096,
	tile: tileAVX2Slices,
}

// avx512Kernel is the 8x32 AVX-512F micro-kernel (kernel512_amd64.s): 16 of the 32 ZMM
// registers accumulate the tile, 16 FMAs per step for 2 loads of B and 8 broadcasts of
// A. On a core with full-width 512-bit FMA units (Zen 5) it runs at about twice the AVX2
// kernel's rate. Eight rows also fit decoding batches (16 sequences) without waste.
// Blocking: kc x 32 sliver of B is 32 KiB at kc=256 (L1), mc x kc of A 48 KiB (L2).
var avx512Kernel = &microKernel{
	name: "avx512",
	mr:   8, nr: 32,
	mc: 48, kc: 256, nc: 4096,
	tile: tileAVX512Slices,
}

//go:noescape
func tileAVX2(kc int, a, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

//go:noescape
func tileAVX512x8(kc int, a, b *float32, ldb int, c *float32, ldc int, alpha, beta float32)

func tileAVX2Slices(kc int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
	// Bounds checks here keep the assembly inside the slices.
	_ = a[6*kc-1]
	_ = b[(kc-1)*ldb+15]
	_ = c[5*ldc+15]
	tileAVX2(kc, &a[0], &b[0], ldb, &c[0], ldc, alpha, beta)
}

func tileAVX512Slices(kc int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
	_ = a[8*kc-1]
	_ = b[(kc-1)*ldb+31]
	_ = c[7*ldc+31]
	tileAVX512x8(kc, &a[0], &b[0], ldb, &c[0], ldc, alpha, beta)
}

// Kernels lists the sgemm micro-kernels this CPU can run, fastest first.
func Kernels() []string {
	var ks []string
	if cpu.X86.HasAVX512F {
		ks = append(ks, avx512Kernel.name)
	}
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		ks = append(ks, avx2Kernel.name)
	}
	return append(ks, goKernel.name)
}

// selectKernel returns the named kernel if this CPU runs it, else the fastest one.
func selectKernel(name string) *microKernel {
	ks := Kernels()
	for _, k := range []*microKernel{avx512Kernel, avx2Kernel, goKernel} {
		if k.name == name {
			for _, avail := range ks {
				if avail == name {
					return k
				}
			}
		}
	}
	switch ks[0] {
	case avx512Kernel.name:
		return avx512Kernel
	case avx2Kernel.name:
		return avx2Kernel
	}
	return goKernel
}

//go:noescape
func rowAVX2(kc int, a, b *float32, ldb int, c *float32, n int, alpha, beta float32)

// hasRowKernel reports whether one-row products can use rowAVX2, which reproduces the
// AVX2 and AVX-512 tiles' per-element arithmetic (not the Go tile's unfused one).
func hasRowKernel(kern *microKernel) bool { return hasAVX2FMA && kern != goKernel }

// rowKernel computes c[:n] = alpha*a[:kc]*B + beta*c for one row, B being kc rows of at
// least n floats ldb apart; n is a multiple of 8.
func rowKernel(kc int, a, b []float32, ldb int, c []float32, n int, alpha, beta float32) {
	// Bounds checks here keep the assembly inside the slices.
	_ = a[kc-1]
	_ = b[(kc-1)*ldb+n-1]
	_ = c[n-1]
	rowAVX2(kc, &a[0], &b[0], ldb, &c[0], n, alpha, beta)
}
