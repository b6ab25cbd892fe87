//go:build amd64

#include "textflag.h"

// Eight-lane float32 e^x with AVX2 and FMA: the same range reduction and degree-7
// polynomial as expf in expf.go, so results agree with the scalar path to a few ulp.

DATA expLog2e<>+0(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+4(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+8(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+12(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+16(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+20(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+24(SB)/4, $0x3fb8aa3b
DATA expLog2e<>+28(SB)/4, $0x3fb8aa3b
GLOBL expLog2e<>(SB), RODATA|NOPTR, $32
DATA expLn2hi<>+0(SB)/4, $0x3f317200
DATA expLn2hi<>+4(SB)/4, $0x3f317200
DATA expLn2hi<>+8(SB)/4, $0x3f317200
DATA expLn2hi<>+12(SB)/4, $0x3f317200
DATA expLn2hi<>+16(SB)/4, $0x3f317200
DATA expLn2hi<>+20(SB)/4, $0x3f317200
DATA expLn2hi<>+24(SB)/4, $0x3f317200
DATA expLn2hi<>+28(SB)/4, $0x3f317200
GLOBL expLn2hi<>(SB), RODATA|NOPTR, $32
DATA expLn2lo<>+0(SB)/4, $0x35bfbe8e
DATA expLn2lo<>+4(SB)/4, $0x35bfbe8e
DATA expLn2lo<>+8(SB)/4, $0x35bfbe8e
DATA expLn2lo<>+12(SB)/4, $0x35bfbe8e
DATA expLn2lo<>+16(SB)/4, $0x35bfbe8e
DATA expLn2lo<>+20(SB)/4, $0x35bfbe8e
DATA expLn2lo<>+24(SB)/4, $0x35bfbe8e
DATA expLn2lo<>+28(SB)/4, $0x35bfbe8e
GLOBL expLn2lo<>(SB), RODATA|NOPTR, $32
DATA expHi<>+0(SB)/4, $0x42b17217
DATA expHi<>+4(SB)/4, $0x42b17217
DATA expHi<>+8(SB)/4, $0x42b17217
DATA expHi<>+12(SB)/4, $0x42b17217
DATA expHi<>+16(SB)/4, $0x42b17217
DATA expHi<>+20(SB)/4, $0x42b17217
DATA expHi<>+24(SB)/4, $0x42b17217
DATA expHi<>+28(SB)/4, $0x42b17217
GLOBL expHi<>(SB), RODATA|NOPTR, $32
DATA expLo<>+0(SB)/4, $0xc2aeac4f
DATA expLo<>+4(SB)/4, $0xc2aeac4f
DATA expLo<>+8(SB)/4, $0xc2aeac4f
DATA expLo<>+12(SB)/4, $0xc2aeac4f
DATA expLo<>+16(SB)/4, $0xc2aeac4f
DATA expLo<>+20(SB)/4, $0xc2aeac4f
DATA expLo<>+24(SB)/4, $0xc2aeac4f
DATA expLo<>+28(SB)/4, $0xc2aeac4f
GLOBL expLo<>(SB), RODATA|NOPTR, $32
DATA expC7<>+0(SB)/4, $0x39500d01
DATA expC7<>+4(SB)/4, $0x39500d01
DATA expC7<>+8(SB)/4, $0x39500d01
DATA expC7<>+12(SB)/4, $0x39500d01
DATA expC7<>+16(SB)/4, $0x39500d01
DATA expC7<>+20(SB)/4, $0x39500d01
DATA expC7<>+24(SB)/4, $0x39500d01
DATA expC7<>+28(SB)/4, $0x39500d01
GLOBL expC7<>(SB), RODATA|NOPTR, $32
DATA expC6<>+0(SB)/4, $0x3ab60b61
DATA expC6<>+4(SB)/4, $0x3ab60b61
DATA expC6<>+8(SB)/4, $0x3ab60b61
DATA expC6<>+12(SB)/4, $0x3ab60b61
DATA expC6<>+16(SB)/4, $0x3ab60b61
DATA expC6<>+20(SB)/4, $0x3ab60b61
DATA expC6<>+24(SB)/4, $0x3ab60b61
DATA expC6<>+28(SB)/4, $0x3ab60b61
GLOBL expC6<>(SB), RODATA|NOPTR, $32
DATA expC5<>+0(SB)/4, $0x3c088889
DATA expC5<>+4(SB)/4, $0x3c088889
DATA expC5<>+8(SB)/4, $0x3c088889
DATA expC5<>+12(SB)/4, $0x3c088889
DATA expC5<>+16(SB)/4, $0x3c088889
DATA expC5<>+20(SB)/4, $0x3c088889
DATA expC5<>+24(SB)/4, $0x3c088889
DATA expC5<>+28(SB)/4, $0x3c088889
GLOBL expC5<>(SB), RODATA|NOPTR, $32
DATA expC4<>+0(SB)/4, $0x3d2aaaab
DATA expC4<>+4(SB)/4, $0x3d2aaaab
DATA expC4<>+8(SB)/4, $0x3d2aaaab
DATA expC4<>+12(SB)/4, $0x3d2aaaab
DATA expC4<>+16(SB)/4, $0x3d2aaaab
DATA expC4<>+20(SB)/4, $0x3d2aaaab
DATA expC4<>+24(SB)/4, $0x3d2aaaab
DATA expC4<>+28(SB)/4, $0x3d2aaaab
GLOBL expC4<>(SB), RODATA|NOPTR, $32
DATA expC3<>+0(SB)/4, $0x3e2aaaab
DATA expC3<>+4(SB)/4, $0x3e2aaaab
DATA expC3<>+8(SB)/4, $0x3e2aaaab
DATA expC3<>+12(SB)/4, $0x3e2aaaab
DATA expC3<>+16(SB)/4, $0x3e2aaaab
DATA expC3<>+20(SB)/4, $0x3e2aaaab
DATA expC3<>+24(SB)/4, $0x3e2aaaab
DATA expC3<>+28(SB)/4, $0x3e2aaaab
GLOBL expC3<>(SB), RODATA|NOPTR, $32
DATA expC2<>+0(SB)/4, $0x3f000000
DATA expC2<>+4(SB)/4, $0x3f000000
DATA expC2<>+8(SB)/4, $0x3f000000
DATA expC2<>+12(SB)/4, $0x3f000000
DATA expC2<>+16(SB)/4, $0x3f000000
DATA expC2<>+20(SB)/4, $0x3f000000
DATA expC2<>+24(SB)/4, $0x3f000000
DATA expC2<>+28(SB)/4, $0x3f000000
GLOBL expC2<>(SB), RODATA|NOPTR, $32
DATA expC1<>+0(SB)/4, $0x3f800000
DATA expC1<>+4(SB)/4, $0x3f800000
DATA expC1<>+8(SB)/4, $0x3f800000
DATA expC1<>+12(SB)/4, $0x3f800000
DATA expC1<>+16(SB)/4, $0x3f800000
DATA expC1<>+20(SB)/4, $0x3f800000
DATA expC1<>+24(SB)/4, $0x3f800000
DATA expC1<>+28(SB)/4, $0x3f800000
GLOBL expC1<>(SB), RODATA|NOPTR, $32
DATA expBias<>+0(SB)/4, $0x0000007f
DATA expBias<>+4(SB)/4, $0x0000007f
DATA expBias<>+8(SB)/4, $0x0000007f
DATA expBias<>+12(SB)/4, $0x0000007f
DATA expBias<>+16(SB)/4, $0x0000007f
DATA expBias<>+20(SB)/4, $0x0000007f
DATA expBias<>+24(SB)/4, $0x0000007f
DATA expBias<>+28(SB)/4, $0x0000007f
GLOBL expBias<>(SB), RODATA|NOPTR, $32
DATA expInf<>+0(SB)/4, $0x7f800000
DATA expInf<>+4(SB)/4, $0x7f800000
DATA expInf<>+8(SB)/4, $0x7f800000
DATA expInf<>+12(SB)/4, $0x7f800000
DATA expInf<>+16(SB)/4, $0x7f800000
DATA expInf<>+20(SB)/4, $0x7f800000
DATA expInf<>+24(SB)/4, $0x7f800000
DATA expInf<>+28(SB)/4, $0x7f800000
GLOBL expInf<>(SB), RODATA|NOPTR, $32

DATA expNegInf<>+0(SB)/4, $0xff800000
DATA expNegInf<>+4(SB)/4, $0xff800000
DATA expNegInf<>+8(SB)/4, $0xff800000
DATA expNegInf<>+12(SB)/4, $0xff800000
DATA expNegInf<>+16(SB)/4, $0xff800000
DATA expNegInf<>+20(SB)/4, $0xff800000
DATA expNegInf<>+24(SB)/4, $0xff800000
DATA expNegInf<>+28(SB)/4, $0xff800000
GLOBL expNegInf<>(SB), RODATA|NOPTR, $32

// func expShiftAVX2(dst, src []float32, a, b float32) float32
// dst[i] = e^(a*src[i]+b) for the len(src)/8*8 leading elements; returns their sum.
TEXT ·expShiftAVX2(SB), NOSPLIT, $0-60
	MOVQ dst_base+0(FP), DI
	MOVQ src_base+24(FP), SI
	MOVQ src_len+32(FP), CX
	VBROADCASTSS a+48(FP), Y14
	VBROADCASTSS b+52(FP), Y15
	VXORPS Y13, Y13, Y13
	VMOVUPS expLo<>(SB), Y12
	VMOVUPS expHi<>(SB), Y11
	VMOVUPS expBias<>(SB), Y10
	SHRQ $3, CX
	JZ   done

loop:
	VMOVUPS (SI), Y0
	VFMADD213PS Y15, Y14, Y0 // x = a*src + b
	VMINPS Y11, Y0, Y1       // clamp to [lo, hi] (a NaN becomes hi; restored below)
	VMAXPS Y12, Y1, Y1
	VMULPS expLog2e<>(SB), Y1, Y2
	VROUNDPS $0, Y2, Y2      // n = round(x*log2e)
	VMOVAPS Y1, Y3
	VFNMADD231PS expLn2hi<>(SB), Y2, Y3 // r = x - n*ln2 (in two parts)
	VFNMADD231PS expLn2lo<>(SB), Y2, Y3
	VMOVUPS expC7<>(SB), Y4
	VFMADD213PS expC6<>(SB), Y3, Y4
	VFMADD213PS expC5<>(SB), Y3, Y4
	VFMADD213PS expC4<>(SB), Y3, Y4
	VFMADD213PS expC3<>(SB), Y3, Y4
	VFMADD213PS expC2<>(SB), Y3, Y4
	VFMADD213PS expC1<>(SB), Y3, Y4
	VFMADD213PS expC1<>(SB), Y3, Y4  // p = e^r
	VCVTPS2DQ Y2, Y5
	VPSRAD $1, Y5, Y6        // scale by 2^(n/2) * 2^(n-n/2) so n = 128 stays finite
	VPSUBD Y6, Y5, Y5
	VPADDD Y10, Y6, Y6
	VPADDD Y10, Y5, Y5
	VPSLLD $23, Y6, Y6
	VPSLLD $23, Y5, Y5
	VMULPS Y6, Y4, Y4
	VMULPS Y5, Y4, Y4
	VCMPPS $1, Y12, Y0, Y7   // x < lo: 0
	VANDNPS Y4, Y7, Y4
	VCMPPS $14, Y11, Y0, Y7  // x > hi: +Inf
	VBLENDVPS Y7, expInf<>(SB), Y4, Y4
	VCMPPS $3, Y0, Y0, Y7    // NaN in, NaN out
	VBLENDVPS Y7, Y0, Y4, Y4
	VMOVUPS Y4, (DI)
	VADDPS Y4, Y13, Y13
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  loop

done:
	VEXTRACTF128 $1, Y13, X0
	VADDPS X0, X13, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+56(FP)
	RET

// func maxAVX2(x []float32) float32
// Largest of the len(x)/8*8 leading elements (-Inf when there are none).
TEXT ·maxAVX2(SB), NOSPLIT, $0-28
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	VMOVUPS expNegInf<>(SB), Y0
	SHRQ $3, CX
	JZ   maxdone

maxloop:
	VMAXPS (SI), Y0, Y0
	ADDQ $32, SI
	DECQ CX
	JNZ  maxloop

maxdone:
	VEXTRACTF128 $1, Y0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0x4E, X0, X1
	VMAXPS X1, X0, X0
	VPERMILPS $0xB1, X0, X1
	VMAXPS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func scaleAVX2(x []float32, s float32)
// Multiplies the len(x)/8*8 leading elements by s in place.
TEXT ·scaleAVX2(SB), NOSPLIT, $0-28
	MOVQ x_base+0(FP), SI
	MOVQ x_len+8(FP), CX
	VBROADCASTSS s+24(FP), Y1
	SHRQ $3, CX
	JZ   scaledone

scaleloop:
	VMULPS (SI), Y1, Y0
	VMOVUPS Y0, (SI)
	ADDQ $32, SI
	DECQ CX
	JNZ  scaleloop

scaledone:
	VZEROUPPER
	RET
