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

//go:noescape
func tileAVX2(kc int, a, b, c *float32, ldc int, alpha, beta float32)

func tileAVX2Slices(kc int, a, b, c []float32, ldc int, alpha, beta float32) {
	// Bounds checks here keep the assembly inside the slices.
	_ = a[6*kc-1]
	_ = b[16*kc-1]
	_ = c[5*ldc+15]
	tileAVX2(kc, &a[0], &b[0], &c[0], ldc, alpha, beta)
}

// selectKernel picks the fastest micro-kernel this CPU supports, or the portable one
// when pureGo is set.
func selectKernel(pureGo bool) *microKernel {
	if !pureGo && cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		return avx2Kernel
	}
	return goKernel
}
