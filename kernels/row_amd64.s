#include "textflag.h"

// func rowAVX2(kc int, a, b *float32, ldb int, c *float32, n int, alpha, beta float32)
//
// c[0:n] = alpha * a[0:kc] * B + beta * c, for one row of A (kc contiguous floats) and B
// kc rows of at least n floats, ldb floats apart; n is a multiple of 8, kc >= 1. Each
// element runs exactly the operations of the tile kernels: an FMA chain over the kc
// steps from zero, a multiply by alpha, then a fused beta*c + that (beta == 0 or -0
// stores without reading c). So a row computed here has the bits it would have in a
// tile. Columns go 64 at a time (eight independent chains), then 8 at a time.
TEXT ·rowAVX2(SB), NOSPLIT, $0-56
	MOVQ kc+0(FP), R9
	MOVQ a+8(FP), R12
	MOVQ b+16(FP), R13
	MOVQ ldb+24(FP), R11
	SHLQ $2, R11
	MOVQ c+32(FP), DX
	MOVQ n+40(FP), R10
	VBROADCASTSS alpha+48(FP), Y14
	VBROADCASTSS beta+52(FP), Y15
	MOVL beta+52(FP), AX
	ANDL $0x7fffffff, AX

rowAVX2_cols64:
	CMPQ R10, $64
	JLT rowAVX2_cols8
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
	VXORPS Y4, Y4, Y4
	VXORPS Y5, Y5, Y5
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7
	MOVQ R12, SI
	MOVQ R13, DI
	MOVQ R9, CX
rowAVX2_step64:
	VBROADCASTSS (SI), Y8
	VFMADD231PS (DI), Y8, Y0
	VFMADD231PS 32(DI), Y8, Y1
	VFMADD231PS 64(DI), Y8, Y2
	VFMADD231PS 96(DI), Y8, Y3
	VFMADD231PS 128(DI), Y8, Y4
	VFMADD231PS 160(DI), Y8, Y5
	VFMADD231PS 192(DI), Y8, Y6
	VFMADD231PS 224(DI), Y8, Y7
	ADDQ $4, SI
	ADDQ R11, DI
	DECQ CX
	JNZ rowAVX2_step64
	VMULPS Y14, Y0, Y0
	VMULPS Y14, Y1, Y1
	VMULPS Y14, Y2, Y2
	VMULPS Y14, Y3, Y3
	VMULPS Y14, Y4, Y4
	VMULPS Y14, Y5, Y5
	VMULPS Y14, Y6, Y6
	VMULPS Y14, Y7, Y7
	TESTL AX, AX
	JZ rowAVX2_store64
	VFMADD231PS (DX), Y15, Y0
	VFMADD231PS 32(DX), Y15, Y1
	VFMADD231PS 64(DX), Y15, Y2
	VFMADD231PS 96(DX), Y15, Y3
	VFMADD231PS 128(DX), Y15, Y4
	VFMADD231PS 160(DX), Y15, Y5
	VFMADD231PS 192(DX), Y15, Y6
	VFMADD231PS 224(DX), Y15, Y7
rowAVX2_store64:
	VMOVUPS Y0, (DX)
	VMOVUPS Y1, 32(DX)
	VMOVUPS Y2, 64(DX)
	VMOVUPS Y3, 96(DX)
	VMOVUPS Y4, 128(DX)
	VMOVUPS Y5, 160(DX)
	VMOVUPS Y6, 192(DX)
	VMOVUPS Y7, 224(DX)
	ADDQ $256, R13
	ADDQ $256, DX
	SUBQ $64, R10
	JMP rowAVX2_cols64

rowAVX2_cols8:
	CMPQ R10, $8
	JLT rowAVX2_done
	VXORPS Y0, Y0, Y0
	MOVQ R12, SI
	MOVQ R13, DI
	MOVQ R9, CX
rowAVX2_step8:
	VBROADCASTSS (SI), Y8
	VFMADD231PS (DI), Y8, Y0
	ADDQ $4, SI
	ADDQ R11, DI
	DECQ CX
	JNZ rowAVX2_step8
	VMULPS Y14, Y0, Y0
	TESTL AX, AX
	JZ rowAVX2_store8
	VFMADD231PS (DX), Y15, Y0
rowAVX2_store8:
	VMOVUPS Y0, (DX)
	ADDQ $32, R13
	ADDQ $32, DX
	SUBQ $8, R10
	JMP rowAVX2_cols8

rowAVX2_done:
	VZEROUPPER
	RET
