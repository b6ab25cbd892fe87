package safetensors

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// f32 builds a float32 from sign, unbiased exponent and the 23 mantissa bits.
func f32(neg bool, exp int, mant uint32) float32 {
	b := uint32(exp+127)<<23 | mant
	if neg {
		b |= 1 << 31
	}
	return math.Float32frombits(b)
}

func TestFloat32ToBFloat16(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"one", 1, 0x3f80},
		{"minus two", -2, 0xc000},
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"1+2^-7 is exact", 1 + 1.0/128, 0x3f81},
		{"1+2^-8 ties to even (down)", 1 + 1.0/256, 0x3f80},
		{"1+3*2^-9 rounds up", 1 + 3.0/512, 0x3f81},
		{"1+3*2^-8 ties to even (up)", 1 + 3.0/256, 0x3f82},
		{"just above a tie rounds up", f32(false, 0, 0x8001), 0x3f81},
		{"negative rounds by magnitude", -(1 + 3.0/512), 0xbf81},
		{"max float32 overflows", math.MaxFloat32, 0x7f80},
		{"+Inf", float32(math.Inf(1)), 0x7f80},
		{"-Inf", float32(math.Inf(-1)), 0xff80},
		{"float32 subnormal kept", math.Float32frombits(0x00010000), 0x0001},
		{"smallest float32 subnormal rounds to zero", math.Float32frombits(1), 0x0000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Float32ToBFloat16(tc.in)
			assert.Equalf(t, tc.want, got, "got %#04x", got)
		})
	}
	// A NaN whose payload sits only in the low 16 bits must not become an infinity.
	for _, bits := range []uint32{0x7fc00000, 0x7f800001, 0xff800001, 0x7fffffff} {
		got := BFloat16ToFloat32(Float32ToBFloat16(math.Float32frombits(bits)))
		assert.Truef(t, math.IsNaN(float64(got)), "NaN %#08x came back as %v", bits, got)
	}
}

func TestFloat32ToHalf(t *testing.T) {
	tests := []struct {
		name string
		in   float32
		want uint16
	}{
		{"one", 1, 0x3c00},
		{"minus two", -2, 0xc000},
		{"zero", 0, 0x0000},
		{"negative zero", float32(math.Copysign(0, -1)), 0x8000},
		{"max half", 65504, 0x7bff},
		{"1+2^-10 is exact", 1 + 1.0/1024, 0x3c01},
		{"1+2^-11 ties to even (down)", 1 + 1.0/2048, 0x3c00},
		{"1+3*2^-11 ties to even (up)", 1 + 3.0/2048, 0x3c02},
		{"1+3*2^-12 rounds up", 1 + 3.0/4096, 0x3c01},
		{"65519 rounds down to max", 65519, 0x7bff},
		{"65520 overflows to Inf", 65520, 0x7c00},
		{"1e6 overflows to Inf", 1e6, 0x7c00},
		{"-1e6 overflows to -Inf", -1e6, 0xfc00},
		{"+Inf", float32(math.Inf(1)), 0x7c00},
		{"-Inf", float32(math.Inf(-1)), 0xfc00},
		{"smallest normal", f32(false, -14, 0), 0x0400},
		{"largest subnormal", f32(false, -15, 0x7fc000), 0x03ff},
		{"smallest subnormal 2^-24", f32(false, -24, 0), 0x0001},
		{"negative subnormal", f32(true, -24, 0), 0x8001},
		{"3*2^-24 subnormal", f32(false, -23, 0x400000), 0x0003},
		{"2^-25 ties to even zero", f32(false, -25, 0), 0x0000},
		{"just above 2^-25 rounds up", f32(false, -25, 1), 0x0001},
		{"3*2^-25 ties to even 2", f32(false, -24, 0x400000), 0x0002},
		{"2^-26 rounds to zero", f32(false, -26, 0), 0x0000},
		{"subnormal rounds up to smallest normal", f32(false, -15, 0x7ff000), 0x0400},
		{"float32 subnormal flushes to zero", math.Float32frombits(1), 0x0000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Float32ToHalf(tc.in)
			assert.Equalf(t, tc.want, got, "got %#04x", got)
		})
	}
	for _, bits := range []uint32{0x7fc00000, 0x7f800001, 0xffc00123} {
		got := HalfToFloat32(Float32ToHalf(math.Float32frombits(bits)))
		assert.Truef(t, math.IsNaN(float64(got)), "NaN %#08x came back as %v", bits, got)
	}
}

// TestNarrowingInvertsWidening checks every finite 16-bit pattern survives widening to
// float32 and narrowing back, for both formats.
func TestNarrowingInvertsWidening(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		if v := HalfToFloat32(uint16(h)); !math.IsNaN(float64(v)) {
			require.Equalf(t, uint16(h), Float32ToHalf(v), "half %#04x", h)
		}
		if v := BFloat16ToFloat32(uint16(h)); !math.IsNaN(float64(v)) {
			require.Equalf(t, uint16(h), Float32ToBFloat16(v), "bfloat16 %#04x", h)
		}
	}
}

// TestWriteDTypesRoundTrip writes each dtype alone and checks the reader gives back the
// rounded values: exact for representable ones.
func TestWriteDTypesRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := make([]float32, 3*40000) // spans several write chunks
	for i := range random {
		random[i] = float32(rng.NormFloat64())
	}
	tests := []struct {
		dtype  DType
		size   int
		exact  []float32 // representable: must come back bit for bit
		narrow func(float32) float32
		maxRel float64 // half an ulp: round to nearest
	}{
		{"", 4, []float32{1, -2.5, 1e-30, math.MaxFloat32, 3.1415927}, func(v float32) float32 { return v }, 0},
		{F32, 4, []float32{1, -2.5, 1e-30, math.MaxFloat32, 3.1415927}, func(v float32) float32 { return v }, 0},
		{BF16, 2, []float32{1, -2.5, 1 + 1.0/128, math.Float32frombits(0x7f7f0000), float32(math.Inf(-1))}, func(v float32) float32 { return BFloat16ToFloat32(Float32ToBFloat16(v)) }, 1.0 / 256},
		{F16, 2, []float32{1, -2.5, 1 + 1.0/1024, 65504, f32(false, -24, 0)}, func(v float32) float32 { return HalfToFloat32(Float32ToHalf(v)) }, 1.0 / 2048},
	}
	for _, tc := range tests {
		t.Run("dtype "+string(tc.dtype), func(t *testing.T) {
			tensors := []Tensor{
				{Name: "exact", Shape: []int{len(tc.exact)}, Data: tc.exact, DType: tc.dtype},
				{Name: "random", Shape: []int{3, 40000}, Data: random, DType: tc.dtype},
			}
			var buf bytes.Buffer
			require.NoError(t, Write(context.Background(), &buf, tensors, nil))
			r, err := NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
			require.NoError(t, err)
			want := tc.dtype
			if want == "" {
				want = F32
			}
			for _, info := range r.Tensors() {
				assert.Equal(t, want, info.DType, info.Name)
			}
			got, err := r.Float32("exact")
			require.NoError(t, err)
			for i := range tc.exact {
				assert.Equalf(t, math.Float32bits(tc.exact[i]), math.Float32bits(got[i]), "exact[%d] = %v came back as %v", i, tc.exact[i], got[i])
			}
			got, err = r.Float32("random")
			require.NoError(t, err)
			var maxRel float64
			for i, v := range random {
				require.Equalf(t, tc.narrow(v), got[i], "random[%d]", i)
				if math.Abs(float64(v)) >= 1.0/(1<<14) { // below, F16 is subnormal and less precise
					maxRel = max(maxRel, math.Abs(float64(got[i]-v))/math.Abs(float64(v)))
				}
			}
			assert.LessOrEqual(t, maxRel, tc.maxRel)
			hdrLen := int(binary.LittleEndian.Uint64(buf.Bytes()))
			assert.Equal(t, 8+hdrLen+tc.size*(len(tc.exact)+len(random)), buf.Len(), "file size")
		})
	}
}

// TestWriteMixedDTypesHeader checks each tensor's header entry names its own dtype and
// that the data offsets are contiguous byte ranges of the right widths.
func TestWriteMixedDTypesHeader(t *testing.T) {
	tensors := []Tensor{
		{Name: "a", Shape: []int{3}, Data: []float32{1, 2, 3}, DType: BF16},
		{Name: "b", Shape: []int{2, 2}, Data: []float32{0.5, -0.5, 4, 8}},
		{Name: "c", Shape: []int{5}, Data: []float32{1, 2, 3, 4, 65504}, DType: F16},
		{Name: "d", Shape: []int{}, Data: []float32{7}, DType: F32},
		{Name: "e", Shape: []int{0}, Data: nil, DType: BF16},
		{Name: "f", Shape: []int{1}, Data: []float32{-3}, DType: BF16},
	}
	var buf bytes.Buffer
	require.NoError(t, Write(context.Background(), &buf, tensors, map[string]string{"format": "pt"}))
	raw := buf.Bytes()
	hdrLen := binary.LittleEndian.Uint64(raw)
	var hdr map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw[8:8+hdrLen], &hdr))
	type entry struct {
		DType   string  `json:"dtype"`
		Shape   []int   `json:"shape"`
		Offsets []int64 `json:"data_offsets"`
	}
	want := map[string]entry{
		"a": {"BF16", []int{3}, []int64{0, 6}},
		"b": {"F32", []int{2, 2}, []int64{6, 22}},
		"c": {"F16", []int{5}, []int64{22, 32}},
		"d": {"F32", []int{}, []int64{32, 36}},
		"e": {"BF16", []int{0}, []int64{36, 36}},
		"f": {"BF16", []int{1}, []int64{36, 38}},
	}
	for name, w := range want {
		var got entry
		require.NoError(t, json.Unmarshal(hdr[name], &got), name)
		assert.Equal(t, w, got, name)
	}
	assert.Equal(t, int(8+hdrLen+38), len(raw), "data region is exactly the sum of the tensors")

	r, err := NewReader(bytes.NewReader(raw), int64(len(raw)))
	require.NoError(t, err)
	for _, tt := range tensors {
		got, err := r.Float32(tt.Name)
		require.NoError(t, err, tt.Name)
		if len(tt.Data) == 0 {
			assert.Empty(t, got, tt.Name)
			continue
		}
		assert.Equal(t, tt.Data, got, "%s holds values exact in every dtype", tt.Name)
	}
}

func TestWriteRefusesUnwritableDType(t *testing.T) {
	tests := []struct {
		dtype DType
	}{{F64}, {"I32"}, {"F8_E4M3"}, {"bf16"}, {"XYZ"}}
	for _, tc := range tests {
		t.Run(string(tc.dtype), func(t *testing.T) {
			tensors := []Tensor{
				{Name: "ok", Shape: []int{1}, Data: []float32{1}},
				{Name: "layer.weight", Shape: []int{2}, Data: []float32{1, 2}, DType: tc.dtype},
			}
			var buf bytes.Buffer
			err := Write(context.Background(), &buf, tensors, nil)
			require.Error(t, err)
			assert.Contains(t, err.Error(), `"layer.weight"`)
			assert.Contains(t, err.Error(), string(tc.dtype))
			assert.Contains(t, err.Error(), "F32, BF16, F16")
			assert.Zero(t, buf.Len(), "nothing is written when a dtype is refused")
		})
	}
}
