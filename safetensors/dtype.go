// Package safetensors reads and writes the safetensors tensor file format used by Hugging
// Face: an 8-byte little-endian header length N, N bytes of JSON header mapping each tensor
// name to {dtype, shape, data_offsets}, then the raw little-endian tensor bytes. The reader
// validates every header field before any tensor data is trusted, and converts the float
// dtypes (F32, F16, BF16, F64) to float32; the writer emits F32, BF16 or F16 tensors.
package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DType is a safetensors element type name as written in the header ("F32", "BF16", ...).
type DType string

// The float dtypes this package converts to float32.
const (
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	F64  DType = "F64"
)

// Size is the element size in bytes, or 0 for a dtype the safetensors specification does
// not define. Non-float dtypes are accepted in a header (so a file can be inspected) but
// cannot be converted to float32.
func (d DType) Size() int {
	switch d {
	case "BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3":
		return 1
	case "I16", "U16", F16, BF16:
		return 2
	case "I32", "U32", F32:
		return 4
	case F64, "I64", "U64":
		return 8
	}
	return 0
}

// Convertible reports whether elements of this dtype can be converted to float32.
func (d DType) Convertible() bool {
	switch d {
	case F32, F16, BF16, F64:
		return true
	}
	return false
}

// writableList names the dtypes Write can encode, for error messages.
const writableList = "F32, BF16, F16"

// Writable reports whether Write can encode float32 data as this dtype.
func (d DType) Writable() bool {
	switch d {
	case F32, BF16, F16:
		return true
	}
	return false
}

// encodeFloat32 converts src to dtype d as little-endian bytes in dst, which must hold
// exactly len(src)*d.Size() bytes. It is the inverse of decodeFloat32 for writable dtypes.
func encodeFloat32(d DType, src []float32, dst []byte) error {
	switch d {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], Float32ToBFloat16(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], Float32ToHalf(v))
		}
	default:
		return fmt.Errorf("cannot write dtype %q (writable: %s)", d, writableList)
	}
	return nil
}

// decodeFloat32 converts len(dst) elements of dtype d from little-endian src into dst.
// src must hold exactly len(dst)*d.Size() bytes.
func decodeFloat32(d DType, src []byte, dst []float32) error {
	switch d {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		for i := range dst {
			dst[i] = HalfToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case BF16:
		for i := range dst {
			dst[i] = BFloat16ToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case F64:
		for i := range dst {
			dst[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(src[8*i:])))
		}
	default:
		return fmt.Errorf("dtype %s cannot be converted to float32 (supported: F32, F16, BF16, F64)", d)
	}
	return nil
}

// BFloat16ToFloat32 widens a bfloat16 bit pattern: bfloat16 is the top half of a float32.
func BFloat16ToFloat32(b uint16) float32 { return math.Float32frombits(uint32(b) << 16) }

// HalfToFloat32 widens an IEEE 754 binary16 bit pattern exactly, including subnormals,
// infinities and NaN payloads.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN: keep the payload in the top mantissa bits.
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp == 0 && mant == 0:
		return math.Float32frombits(sign)
	case exp == 0: // Subnormal half: normalise, since every half subnormal is a float32 normal.
		e := uint32(127 - 15 + 1)
		for mant&0x400 == 0 {
			mant <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (mant&0x3ff)<<13)
	default:
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	}
}

// Float32ToBFloat16 narrows f to a bfloat16 bit pattern, rounding to nearest even. Values
// beyond the bfloat16 range round to infinity; a NaN stays a NaN (its quiet bit is set, so
// a payload held only in the dropped low bits cannot turn it into an infinity).
func Float32ToBFloat16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN
		return uint16(b>>16) | 0x0040
	}
	// Adding 0x7fff plus the lowest kept bit rounds ties to even; a carry out of the
	// mantissa correctly bumps the exponent (up to infinity).
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// Float32ToHalf narrows f to an IEEE 754 binary16 bit pattern, rounding to nearest even:
// magnitudes that round beyond 65504 become infinity, tiny ones become half subnormals or
// zero, and a NaN stays a NaN with the top bits of its payload.
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		return sign | 0x7c00 | 0x0200 | uint16(mant>>13) // quiet NaN, payload kept
	}
	e := exp - 127 + 15 // the half's biased exponent
	if e >= 0x1f {
		return sign | 0x7c00
	}
	var q, rem, half uint32
	if e <= 0 {
		// Half subnormal: count units of 2^-24. Below 2^-25 everything rounds to zero
		// (float32 subnormals included).
		if e < -10 {
			return sign
		}
		m := mant | 0x800000 // the implicit leading one
		shift := uint32(14 - e)
		q, rem, half = m>>shift, m&(1<<shift-1), 1<<(shift-1)
	} else {
		q, rem, half = uint32(e)<<10|mant>>13, mant&0x1fff, 0x1000
	}
	// Round to nearest even; a carry may move a subnormal to the smallest normal or the
	// largest normal to infinity, both of which the bit layout gets right.
	if rem > half || (rem == half && q&1 == 1) {
		q++
	}
	return sign | uint16(q)
}
