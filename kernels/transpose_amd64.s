#include "textflag.h"

// func transpose8x8Blocks(src *float32, lds int, dst *float32, ldd int, nblocks int)
//
// Transposes nblocks 8x8 blocks that lie side by side along the rows of src (row stride
// lds floats) into blocks stacked down dst (row stride ldd floats): dst[c][r] = src[r][c].
// Used by packing, where it replaces a strided scalar gather. AVX only; nblocks >= 1.
TEXT ·transpose8x8Blocks(SB), NOSPLIT, $0-40
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ ldd+24(FP), DX
	MOVQ nblocks+32(FP), CX
	SHLQ $2, BX
	SHLQ $2, DX
	LEAQ (BX)(BX*2), R11 // 3*lds bytes
	LEAQ (SI)(BX*4), R12 // row 4 of src
	LEAQ (DX)(DX*2), R14 // 3*ldd bytes
	LEAQ (DI)(DX*4), R13 // row 4 of dst
	MOVQ DX, R10
	SHLQ $3, R10         // 8*ldd bytes: one block down dst

tloop:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(BX*1), Y1
	VMOVUPS (SI)(BX*2), Y2
	VMOVUPS (SI)(R11*1), Y3
	VMOVUPS (R12), Y4
	VMOVUPS (R12)(BX*1), Y5
	VMOVUPS (R12)(BX*2), Y6
	VMOVUPS (R12)(R11*1), Y7

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y6
	VSHUFPS $0xEE, Y15, Y13, Y7

	VPERM2F128 $0x20, Y4, Y0, Y8
	VPERM2F128 $0x20, Y5, Y1, Y9
	VPERM2F128 $0x20, Y6, Y2, Y10
	VPERM2F128 $0x20, Y7, Y3, Y11
	VPERM2F128 $0x31, Y4, Y0, Y12
	VPERM2F128 $0x31, Y5, Y1, Y13
	VPERM2F128 $0x31, Y6, Y2, Y14
	VPERM2F128 $0x31, Y7, Y3, Y15

	VMOVUPS Y8, (DI)
	VMOVUPS Y9, (DI)(DX*1)
	VMOVUPS Y10, (DI)(DX*2)
	VMOVUPS Y11, (DI)(R14*1)
	VMOVUPS Y12, (R13)
	VMOVUPS Y13, (R13)(DX*1)
	VMOVUPS Y14, (R13)(DX*2)
	VMOVUPS Y15, (R13)(R14*1)

	ADDQ $32, SI
	ADDQ $32, R12
	ADDQ R10, DI
	ADDQ R10, R13
	DECQ CX
	JNZ  tloop
	VZEROUPPER
	RET

// func copy8Rows(src *float32, lds int, dst *float32, n int)
//
// Copies n rows of eight floats, lds floats apart in src, to consecutive 32-byte slots of
// dst. n >= 1.
TEXT ·copy8Rows(SB), NOSPLIT, $0-32
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ n+24(FP), CX
	SHLQ $2, BX

cloop:
	VMOVUPS (SI), Y0
	VMOVUPS Y0, (DI)
	ADDQ    BX, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     cloop
	VZEROUPPER
	RET

// func copy16Rows(src *float32, lds int, dst *float32, n int)
//
// copy8Rows for rows of 16 floats.
TEXT ·copy16Rows(SB), NOSPLIT, $0-32
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ n+24(FP), CX
	SHLQ $2, BX

c16loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	ADDQ    BX, SI
	ADDQ    $64, DI
	DECQ    CX
	JNZ     c16loop
	VZEROUPPER
	RET

// func copy32Rows(src *float32, lds int, dst *float32, n int)
//
// copy8Rows for rows of 32 floats.
TEXT ·copy32Rows(SB), NOSPLIT, $0-32
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ n+24(FP), CX
	SHLQ $2, BX

c32loop:
	VMOVUPS (SI), Y0
	VMOVUPS 32(SI), Y1
	VMOVUPS 64(SI), Y2
	VMOVUPS 96(SI), Y3
	VMOVUPS Y0, (DI)
	VMOVUPS Y1, 32(DI)
	VMOVUPS Y2, 64(DI)
	VMOVUPS Y3, 96(DI)
	ADDQ    BX, SI
	ADDQ    $128, DI
	DECQ    CX
	JNZ     c32loop
	VZEROUPPER
	RET

// func copy6Rows(src *float32, lds int, dst *float32, n int)
//
// copy8Rows for rows of 6 floats (one 16-byte and one 8-byte move each).
TEXT ·copy6Rows(SB), NOSPLIT, $0-32
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ n+24(FP), CX
	SHLQ $2, BX

c6loop:
	VMOVUPS (SI), X0
	VMOVQ   16(SI), X1
	VMOVUPS X0, (DI)
	VMOVQ   X1, 16(DI)
	ADDQ    BX, SI
	ADDQ    $24, DI
	DECQ    CX
	JNZ     c6loop
	RET

// func interleave6(src *float32, lds int, dst *float32, nblocks int)
//
// Packs six rows of A for the 6x16 kernel: dst[p*6+r] = src[r*lds+p] for r < 6 and
// p < 8*nblocks. Each block of eight p is an 8x8 transpose (rows 6 and 7 zero) whose
// columns are stored six floats at a time. AVX only; nblocks >= 1.
TEXT ·interleave6(SB), NOSPLIT, $0-32
	MOVQ src+0(FP), SI
	MOVQ lds+8(FP), BX
	MOVQ dst+16(FP), DI
	MOVQ nblocks+24(FP), CX
	SHLQ $2, BX
	LEAQ (BX)(BX*2), R11 // 3*lds bytes
	LEAQ (SI)(BX*4), R12 // row 4
	VXORPS Y6, Y6, Y6
	VXORPS Y7, Y7, Y7

i6loop:
	VMOVUPS (SI), Y0
	VMOVUPS (SI)(BX*1), Y1
	VMOVUPS (SI)(BX*2), Y2
	VMOVUPS (SI)(R11*1), Y3
	VMOVUPS (R12), Y4
	VMOVUPS (R12)(BX*1), Y5

	VUNPCKLPS Y1, Y0, Y8
	VUNPCKHPS Y1, Y0, Y9
	VUNPCKLPS Y3, Y2, Y10
	VUNPCKHPS Y3, Y2, Y11
	VUNPCKLPS Y5, Y4, Y12
	VUNPCKHPS Y5, Y4, Y13
	VUNPCKLPS Y7, Y6, Y14
	VUNPCKHPS Y7, Y6, Y15

	VSHUFPS $0x44, Y10, Y8, Y0
	VSHUFPS $0xEE, Y10, Y8, Y1
	VSHUFPS $0x44, Y11, Y9, Y2
	VSHUFPS $0xEE, Y11, Y9, Y3
	VSHUFPS $0x44, Y14, Y12, Y4
	VSHUFPS $0xEE, Y14, Y12, Y5
	VSHUFPS $0x44, Y15, Y13, Y8
	VSHUFPS $0xEE, Y15, Y13, Y9

	VPERM2F128 $0x20, Y4, Y0, Y10
	VMOVUPS X10, 0(DI)
	VEXTRACTF128 $1, Y10, X11
	VMOVQ X11, 16(DI)
	VPERM2F128 $0x20, Y5, Y1, Y10
	VMOVUPS X10, 24(DI)
	VEXTRACTF128 $1, Y10, X11
	VMOVQ X11, 40(DI)
	VPERM2F128 $0x20, Y8, Y2, Y10
	VMOVUPS X10, 48(DI)
	VEXTRACTF128 $1, Y10, X11
	VMOVQ X11, 64(DI)
	VPERM2F128 $0x20, Y9, Y3, Y10
	VMOVUPS X10, 72(DI)
	VEXTRACTF128 $1, Y10, X11
	VMOVQ X11, 88(DI)
	VPERM2F128 $0x31, Y4, Y0, Y10
	VMOVUPS X10, 96(DI)
	VEXTRACTF128 $1, Y10, X11
	VMOVQ X11, 112(DI)
	VPERM2F128 $0x31, Y5, Y1, Y10
	VMOVUPS X10, 120(DI)
	VEXTRACTF128 $1, Y10, X11
	VMOVQ X11, 136(DI)
	VPERM2F128 $0x31, Y8, Y2, Y10
	VMOVUPS X10, 144(DI)
	VEXTRACTF128 $1, Y10, X11
	VMOVQ X11, 160(DI)
	VPERM2F128 $0x31, Y9, Y3, Y10
	VMOVUPS X10, 168(DI)
	VEXTRACTF128 $1, Y10, X11
	VMOVQ X11, 184(DI)

	ADDQ $32, SI
	ADDQ $32, R12
	ADDQ $192, DI
	DECQ CX
	JNZ  i6loop
	VZEROUPPER
	RET
