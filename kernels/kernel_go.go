package kernels

// goKernel is the portable micro-kernel: a 2x4 tile, whose 8 accumulators plus the
// operands fit in the 15 float registers the Go compiler allocates (a 4x4 tile spills
// and runs a third slower). It is the fallback on CPUs without AVX2/FMA and on other
// architectures.
var goKernel = &microKernel{
	name: "go",
	mr:   2, nr: 4,
	mc: 128, kc: 256, nc: 2048,
	tile: tileGo2x4,
}

func tileGo2x4(kc int, a, b []float32, ldb int, c []float32, ldc int, alpha, beta float32) {
	a = a[:2*kc]
	b = b[:(kc-1)*ldb+4]
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	for p := 0; p < kc; p++ {
		// Array views let the compiler drop most bounds checks.
		ap, bp := (*[2]float32)(a[2*p:]), (*[4]float32)(b[p*ldb:])
		b0, b1, b2, b3 := bp[0], bp[1], bp[2], bp[3]
		a0, a1 := ap[0], ap[1]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
	}
	storeRow4(c[0:4], alpha, beta, c00, c01, c02, c03)
	storeRow4(c[ldc:ldc+4], alpha, beta, c10, c11, c12, c13)
}

func storeRow4(c []float32, alpha, beta float32, v0, v1, v2, v3 float32) {
	c = c[:4]
	if beta == 0 {
		c[0], c[1], c[2], c[3] = alpha*v0, alpha*v1, alpha*v2, alpha*v3
		return
	}
	c[0] = alpha*v0 + beta*c[0]
	c[1] = alpha*v1 + beta*c[1]
	c[2] = alpha*v2 + beta*c[2]
	c[3] = alpha*v3 + beta*c[3]
}
