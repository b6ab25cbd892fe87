//go:build amd64

#include "textflag.h"

// AVX2 loops for the elementwise parts of the kernels. Each handles the len/8*8 leading
// elements; the Go callers finish the tails.

DATA vecOne<>+0(SB)/4, $0x3f800000
GLOBL vecOne<>(SB), RODATA|NOPTR, $4

// func dotAVX2(x, y []float32) float32
TEXT ·dotAVX2(SB), NOSPLIT, $0-52
	MOVQ x_base+0(FP), SI
	MOVQ y_base+24(FP), DI
	MOVQ x_len+8(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	SHRQ $3, CX
	JZ   dotdone
	TESTQ $1, CX
	JZ   dotpairs
	VMOVUPS (SI), Y2
	VFMADD231PS (DI), Y2, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JZ   dotdone

dotpairs:
	VMOVUPS (SI), Y2
	VMOVUPS 32(SI), Y3
	VFMADD231PS (DI), Y2, Y0
	VFMADD231PS 32(DI), Y3, Y1
	ADDQ $64, SI
	ADDQ $64, DI
	SUBQ $2, CX
	JNZ  dotpairs

dotdone:
	VADDPS Y1, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VHADDPS X0, X0, X0
	VHADDPS X0, X0, X0
	VZEROUPPER
	MOVSS X0, ret+48(FP)
	RET

// func softmaxGradAVX2(p, dp []float32, d, scale float32)
// dp[j] = scale * p[j] * (dp[j] - d)
TEXT ·softmaxGradAVX2(SB), NOSPLIT, $0-56
	MOVQ p_base+0(FP), SI
	MOVQ dp_base+24(FP), DI
	MOVQ p_len+8(FP), CX
	VBROADCASTSS d+48(FP), Y14
	VBROADCASTSS scale+52(FP), Y15
	SHRQ $3, CX
	JZ   sgdone

sgloop:
	VMOVUPS (DI), Y0
	VSUBPS Y14, Y0, Y0
	VMULPS (SI), Y0, Y0
	VMULPS Y15, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DI
	DECQ CX
	JNZ  sgloop

sgdone:
	VZEROUPPER
	RET

// func swigluFwdAVX2(gate, up, out []float32)
// On entry out holds e^-gate; out = gate * up / (1 + e^-gate).
TEXT ·swigluFwdAVX2(SB), NOSPLIT, $0-72
	MOVQ gate_base+0(FP), SI
	MOVQ up_base+24(FP), DX
	MOVQ out_base+48(FP), DI
	MOVQ gate_len+8(FP), CX
	VBROADCASTSS vecOne<>(SB), Y15
	SHRQ $3, CX
	JZ   sfdone

sfloop:
	VADDPS (DI), Y15, Y1 // 1 + e
	VMOVUPS (SI), Y0
	VMULPS (DX), Y0, Y0  // g * u
	VDIVPS Y1, Y0, Y0
	VMOVUPS Y0, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, DI
	DECQ CX
	JNZ  sfloop

sfdone:
	VZEROUPPER
	RET

// func swigluBwdAVX2(gate, up, dout, dgate, dup []float32)
// On entry dgate holds e^-gate. With s = 1/(1+e^-gate):
// dup = dout*gate*s, dgate = dout*up*s*(1 + gate*(1-s)).
TEXT ·swigluBwdAVX2(SB), NOSPLIT, $0-120
	MOVQ gate_base+0(FP), SI
	MOVQ up_base+24(FP), DX
	MOVQ dout_base+48(FP), BX
	MOVQ dgate_base+72(FP), DI
	MOVQ dup_base+96(FP), R8
	MOVQ gate_len+8(FP), CX
	VBROADCASTSS vecOne<>(SB), Y15
	SHRQ $3, CX
	JZ   sbdone

sbloop:
	VADDPS (DI), Y15, Y1
	VDIVPS Y1, Y15, Y1   // s
	VMOVUPS (SI), Y0     // g
	VMOVUPS (BX), Y2     // d
	VMULPS Y0, Y2, Y3
	VMULPS Y1, Y3, Y3    // d*g*s
	VSUBPS Y1, Y15, Y4   // 1-s
	VFMADD213PS Y15, Y0, Y4 // 1 + g*(1-s)
	VMULPS (DX), Y2, Y2  // d*u
	VMULPS Y1, Y2, Y2
	VMULPS Y4, Y2, Y2
	VMOVUPS Y3, (R8)
	VMOVUPS Y2, (DI)
	ADDQ $32, SI
	ADDQ $32, DX
	ADDQ $32, BX
	ADDQ $32, DI
	ADDQ $32, R8
	DECQ CX
	JNZ  sbloop

sbdone:
	VZEROUPPER
	RET
