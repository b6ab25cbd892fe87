package kernels

//go:noescape
func transpose8x8Blocks(src *float32, lds int, dst *float32, ldd int, nblocks int)

// transpose8Rows sets dst[p*ldd+r] = src[r*lds+p] for r < 8 and p < 8*nb (nb >= 1):
// eight rows of src become 8*nb rows of eight values in dst. It reports false, doing
// nothing, when the CPU lacks AVX2; the caller then packs in Go.
func transpose8Rows(src []float32, lds int, dst []float32, ldd, nb int) bool {
	if !hasAVX2FMA {
		return false
	}
	// Bounds checks here keep the assembly inside the slices.
	_ = src[7*lds+8*nb-1]
	_ = dst[(8*nb-1)*ldd+7]
	transpose8x8Blocks(&src[0], lds, &dst[0], ldd, nb)
	return true
}

//go:noescape
func copy8Rows(src *float32, lds int, dst *float32, n int)

//go:noescape
func copy6Rows(src *float32, lds int, dst *float32, n int)

//go:noescape
func copy16Rows(src *float32, lds int, dst *float32, n int)

//go:noescape
func copy32Rows(src *float32, lds int, dst *float32, n int)

// gatherRows sets dst[p*w+i] = src[p*lds+i] for p < n, i < w (n >= 1, w in 6, 8, 16, 32),
// reporting false and doing nothing when the CPU lacks AVX2 or w is another width.
func gatherRows(src []float32, lds int, dst []float32, n, w int) bool {
	if !hasAVX2FMA {
		return false
	}
	_ = src[(n-1)*lds+w-1]
	_ = dst[w*n-1]
	switch w {
	case 6:
		copy6Rows(&src[0], lds, &dst[0], n)
	case 8:
		copy8Rows(&src[0], lds, &dst[0], n)
	case 16:
		copy16Rows(&src[0], lds, &dst[0], n)
	case 32:
		copy32Rows(&src[0], lds, &dst[0], n)
	default:
		return false
	}
	return true
}

//go:noescape
func interleave6(src *float32, lds int, dst *float32, nblocks int)

// interleave6Rows sets dst[p*6+r] = src[r*lds+p] for r < 6 and p < 8*nb (nb >= 1),
// reporting false and doing nothing when the CPU lacks AVX2.
func interleave6Rows(src []float32, lds int, dst []float32, nb int) bool {
	if !hasAVX2FMA {
		return false
	}
	_ = src[5*lds+8*nb-1]
	_ = dst[48*nb-1]
	interleave6(&src[0], lds, &dst[0], nb)
	return true
}
