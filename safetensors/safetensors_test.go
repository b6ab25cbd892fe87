package safetensors

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRoundTripBitExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	special := []float32{0, float32(math.Copysign(0, -1)), float32(math.Inf(1)), float32(math.Inf(-1)),
		math.Float32frombits(0x7fc00001), math.Float32frombits(1), math.MaxFloat32, math.SmallestNonzeroFloat32}
	cases := []struct {
		name  string
		shape []int
	}{
		{"model.embed_tokens.weight", []int{7, 5}},
		{"scalar", []int{}},
		{"empty", []int{0, 3}},
		{"vec", []int{8}},
		{"big", []int{3, 40000}}, // spans several write/read chunks
	}
	var tensors []Tensor
	for _, c := range cases {
		n := 1
		for _, d := range c.shape {
			n *= d
		}
		data := make([]float32, n)
		for i := range data {
			data[i] = float32(rng.NormFloat64())
		}
		if c.name == "vec" {
			copy(data, special)
		}
		tensors = append(tensors, Tensor{Name: c.name, Shape: c.shape, Data: data})
	}
	meta := map[string]string{"format": "pt", "note": "x"}
	var buf bytes.Buffer
	require.NoError(t, Write(context.Background(), &buf, tensors, meta))

	raw := buf.Bytes()
	hdrLen := binary.LittleEndian.Uint64(raw)
	assert.Zero(t, (8+hdrLen)%8, "data region must start 8-byte aligned")

	r, err := NewReader(bytes.NewReader(raw), int64(len(raw)))
	require.NoError(t, err)
	assert.Equal(t, meta, r.Metadata())
	require.Len(t, r.Tensors(), len(tensors))
	for i, want := range tensors {
		info, ok := r.Lookup(want.Name)
		require.True(t, ok, want.Name)
		assert.Equal(t, F32, info.DType)
		assert.Equal(t, want.Shape, info.Shape)
		assert.Equal(t, want.Name, r.Tensors()[i].Name, "given order is data order")
		got, err := r.Float32(want.Name)
		require.NoError(t, err)
		require.Len(t, got, len(want.Data))
		for j := range got {
			require.Equal(t, math.Float32bits(want.Data[j]), math.Float32bits(got[j]), "%s[%d]", want.Name, j)
		}
	}
	_, err = r.Float32("nope")
	assert.ErrorContains(t, err, `tensor "nope" not found`)
	assert.ErrorContains(t, r.ReadFloat32("vec", make([]float32, 3)), "destination holds 3 elements, tensor has 8")
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "model.safetensors")
	ts := []Tensor{{Name: "a", Shape: []int{2}, Data: []float32{1, 2}}}
	require.NoError(t, WriteFile(context.Background(), path, ts, nil))
	// Overwrite with new contents; the old file is replaced whole.
	ts[0].Data = []float32{3, 4}
	require.NoError(t, WriteFile(context.Background(), path, ts, nil))
	r, err := Open(path)
	require.NoError(t, err)
	defer r.Close()
	got, err := r.Float32("a")
	require.NoError(t, err)
	assert.Equal(t, []float32{3, 4}, got)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files left behind")

	// A failing write leaves the previous file intact and no temp file.
	bad := []Tensor{{Name: "a", Shape: []int{3}, Data: []float32{1}}}
	require.Error(t, WriteFile(context.Background(), path, bad, nil))
	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	r2, err := Open(path)
	require.NoError(t, err)
	defer r2.Close()
	got, err = r2.Float32("a")
	require.NoError(t, err)
	assert.Equal(t, []float32{3, 4}, got)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.ErrorIs(t, WriteFile(ctx, path, ts, nil), context.Canceled)
}

func TestWriteRejects(t *testing.T) {
	cases := []struct {
		name    string
		tensors []Tensor
		want    string
	}{
		{"duplicate", []Tensor{{Name: "a", Shape: []int{1}, Data: []float32{1}}, {Name: "a", Shape: []int{1}, Data: []float32{1}}}, `tensor "a": duplicate name`},
		{"shape", []Tensor{{Name: "a", Shape: []int{2, 2}, Data: []float32{1}}}, `tensor "a": shape [2 2] holds 4 elements, data has 1`},
		{"reserved", []Tensor{{Name: "__metadata__", Shape: []int{1}, Data: []float32{1}}}, "reserved"},
		{"empty name", []Tensor{{Name: "", Shape: []int{1}, Data: []float32{1}}}, "empty name"},
		{"negative", []Tensor{{Name: "a", Shape: []int{-1}, Data: nil}}, "negative dimension"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var buf bytes.Buffer
			err := Write(context.Background(), &buf, c.tensors, nil)
			require.ErrorContains(t, err, c.want)
			assert.Zero(t, buf.Len(), "nothing written on a rejected call")
		})
	}
}

// encode builds a one-tensor file of the given dtype from raw little-endian element bytes.
func encode(dtype DType, shape []int, elems []byte) []byte {
	sh := make([]string, len(shape))
	for i, d := range shape {
		sh[i] = fmt.Sprint(d)
	}
	hdr := fmt.Sprintf(`{"w":{"dtype":%q,"shape":[%s],"data_offsets":[0,%d]}}`, dtype, strings.Join(sh, ","), len(elems))
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(hdr)))
	b.WriteString(hdr)
	b.Write(elems)
	return b.Bytes()
}

func u16s(v ...uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

func TestConversionKnownBits(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		name  string
		dtype DType
		raw   []byte
		want  []float32
	}{
		{"f16", F16, u16s(0x3C00, 0xC000, 0x7BFF, 0x0001, 0x03FF, 0x0400, 0x7C00, 0xFC00, 0x8000, 0x3555, 0x3800, 0x7E00),
			[]float32{1, -2, 65504, 5.9604645e-08, 6.097555e-05, 6.1035156e-05, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.Copysign(0, -1)), 0.33325195, 0.5, nan}},
		{"bf16", BF16, u16s(0x3F80, 0xC000, 0x4049, 0x7F80, 0x0001, 0x8000, 0x7FC0),
			[]float32{1, -2, 3.140625, float32(math.Inf(1)), math.Float32frombits(0x00010000), float32(math.Copysign(0, -1)), nan}},
		{"f64", F64, func() []byte {
			b := make([]byte, 24)
			binary.LittleEndian.PutUint64(b, math.Float64bits(0.1))
			binary.LittleEndian.PutUint64(b[8:], math.Float64bits(-1e300))
			binary.LittleEndian.PutUint64(b[16:], math.Float64bits(3))
			return b
		}(), []float32{0.1, float32(math.Inf(-1)), 3}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw := encode(c.dtype, []int{len(c.want)}, c.raw)
			r, err := NewReader(bytes.NewReader(raw), int64(len(raw)))
			require.NoError(t, err)
			got, err := r.Float32("w")
			require.NoError(t, err)
			for i, w := range c.want {
				if math.IsNaN(float64(w)) {
					assert.True(t, math.IsNaN(float64(got[i])), "element %d", i)
					continue
				}
				assert.Equal(t, math.Float32bits(w), math.Float32bits(got[i]), "element %d: want %g got %g", i, w, got[i])
			}
		})
	}
}

// TestHalfExhaustive checks every finite binary16 pattern against the defining formula.
func TestHalfExhaustive(t *testing.T) {
	for h := 0; h < 1<<16; h++ {
		exp, mant := (h>>10)&0x1f, h&0x3ff
		if exp == 0x1f {
			continue
		}
		var v float64
		if exp == 0 {
			v = float64(mant) * math.Pow(2, -24)
		} else {
			v = (1 + float64(mant)/1024) * math.Pow(2, float64(exp-15))
		}
		if h&0x8000 != 0 {
			v = -v
		}
		require.Equal(t, math.Float32bits(float32(v)), math.Float32bits(HalfToFloat32(uint16(h))), "half 0x%04x", h)
	}
}

func TestNonFloatDTypeListedButNotConverted(t *testing.T) {
	raw := encode("I64", []int{2}, make([]byte, 16))
	r, err := NewReader(bytes.NewReader(raw), int64(len(raw)))
	require.NoError(t, err)
	info, ok := r.Lookup("w")
	require.True(t, ok)
	assert.Equal(t, DType("I64"), info.DType)
	_, err = r.Float32("w")
	assert.ErrorContains(t, err, `tensor "w": dtype I64 cannot be converted to float32`)
}

// FuzzReadSafetensors feeds arbitrary bytes to the reader: it must never panic, and a file
// it accepts must have tensors that tile the data region and read back without error.
func FuzzReadSafetensors(f *testing.F) {
	var buf bytes.Buffer
	_ = Write(context.Background(), &buf, []Tensor{
		{Name: "a", Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}},
		{Name: "b", Shape: []int{1}, Data: []float32{5}},
	}, map[string]string{"format": "pt"})
	f.Add(buf.Bytes())
	f.Add(encode(F16, []int{3}, u16s(1, 2, 3)))
	f.Add(encode(BF16, []int{1, 1}, u16s(0x3F80)))
	for _, c := range badCases() {
		f.Add(c.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			require.Nil(t, r)
			return
		}
		var pos int64
		for _, info := range r.Tensors() {
			require.Equal(t, pos, info.Begin, "tensors tile the data region")
			require.Equal(t, int64(info.NumElements()*info.DType.Size()), info.End-info.Begin)
			pos = info.End
			if info.DType.Convertible() {
				got, err := r.Float32(info.Name)
				require.NoError(t, err)
				require.Len(t, got, info.NumElements())
			}
		}
		hdr := binary.LittleEndian.Uint64(data)
		require.Equal(t, int64(len(data)), 8+int64(hdr)+pos)
	})
}
