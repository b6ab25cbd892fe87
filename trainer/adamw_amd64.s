#include "textflag.h"

// func adamwAVX2(p, grad, m, v *float32, n int, k *coeffs)
//
// The fused AdamW update of adamwKernel, 8 lanes at a time, for n a multiple of 8. It uses
// the same operations in the same order (multiplies and adds, no FMA; correctly rounded
// sqrt and divide), so its results are bit-identical to the pure-Go loop.
TEXT ·adamwAVX2(SB), NOSPLIT, $0-48
	MOVQ p+0(FP), DI
	MOVQ grad+8(FP), SI
	MOVQ m+16(FP), R8
	MOVQ v+24(FP), R9
	MOVQ n+32(FP), CX
	MOVQ k+40(FP), AX
	VBROADCASTSS 0(AX), Y0  // gradScale
	VBROADCASTSS 4(AX), Y1  // beta1
	VBROADCASTSS 8(AX), Y2  // 1-beta1
	VBROADCASTSS 12(AX), Y3 // beta2
	VBROADCASTSS 16(AX), Y4 // 1-beta2
	VBROADCASTSS 20(AX), Y5 // stepSize
	VBROADCASTSS 24(AX), Y6 // 1/sqrt(1-beta2^t)
	VBROADCASTSS 28(AX), Y7 // eps
	VBROADCASTSS 32(AX), Y8 // decayMul
	VXORPS Y15, Y15, Y15

loop:
	CMPQ CX, $8
	JLT  done
	VMOVUPS (SI), Y9
	VMULPS  Y0, Y9, Y9   // gi = g*gs
	VMOVUPS (R8), Y10
	VMULPS  Y1, Y10, Y10 // beta1*m
	VMULPS  Y2, Y9, Y11  // (1-beta1)*gi
	VADDPS  Y11, Y10, Y10 // mi
	VMOVUPS Y10, (R8)
	VMULPS  Y9, Y9, Y12  // gi*gi
	VMULPS  Y4, Y12, Y12 // (1-beta2)*gi*gi
	VMOVUPS (R9), Y13
	VMULPS  Y3, Y13, Y13 // beta2*v
	VADDPS  Y12, Y13, Y13 // vi
	VMOVUPS Y13, (R9)
	VSQRTPS Y13, Y13
	VMULPS  Y6, Y13, Y13
	VADDPS  Y7, Y13, Y13 // den
	VMULPS  Y5, Y10, Y10 // stepSize*mi
	VDIVPS  Y13, Y10, Y10 // stepSize*mi/den
	VMOVUPS (DI), Y14
	VMULPS  Y8, Y14, Y14 // p*decayMul
	VSUBPS  Y10, Y14, Y14
	VMOVUPS Y14, (DI)
	VMOVUPS Y15, (SI)    // zero the gradient
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, R8
	ADDQ    $32, R9
	SUBQ    $8, CX
	JMP     loop

done:
	VZEROUPPER
	RET
