package checkpoint

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/safetensors"
	"github.com/posttrain/posttrain/transformer"
)

func TestSaveNarrowDTypes(t *testing.T) {
	tests := []struct {
		dtype  safetensors.DType
		torch  string
		narrow func(float32) float32
	}{
		{safetensors.BF16, "bfloat16", func(v float32) float32 {
			return safetensors.BFloat16ToFloat32(safetensors.Float32ToBFloat16(v))
		}},
		{safetensors.F16, "float16", func(v float32) float32 {
			return safetensors.HalfToFloat32(safetensors.Float32ToHalf(v))
		}},
	}
	for _, tc := range tests {
		t.Run(string(tc.dtype), func(t *testing.T) {
			ctx := context.Background()
			m, pool := newModel(t, testConfig(transformer.ArchCausalLM, false), 11)
			root := t.TempDir()
			f32Dir, narrowDir := filepath.Join(root, "f32"), filepath.Join(root, "narrow")
			require.NoError(t, Save(ctx, f32Dir, m, SaveOptions{}))
			require.NoError(t, Save(ctx, narrowDir, m, SaveOptions{DType: tc.dtype}))

			got, err := Load(ctx, narrowDir, pool)
			require.NoError(t, err)
			want := make([]float32, len(m.W.Data))
			changed := 0
			for i, v := range m.W.Data {
				want[i] = tc.narrow(v)
				if want[i] != v {
					changed++
				}
			}
			require.NotZero(t, changed, "random weights must need rounding, or the test proves nothing")
			requireBitEqual(t, want, got.W.Data)
			assert.Equal(t, tc.torch, got.Config.TorchDtype)

			info, err := Info(narrowDir)
			require.NoError(t, err)
			assert.Equal(t, map[string]int{string(tc.dtype): info.Tensors}, info.DTypes)

			// The tensor data is exactly half; the header (same length give or take the
			// dtype names) keeps a tiny model's file a little above.
			full, fullData := fileAndDataBytes(t, filepath.Join(f32Dir, WeightsFile))
			half, halfData := fileAndDataBytes(t, filepath.Join(narrowDir, WeightsFile))
			assert.Equal(t, fullData/2, halfData)
			assert.Less(t, float64(half), 0.6*float64(full), "%d bytes vs %d", half, full)

			// Saving the loaded model as F32 again records float32, not the old dtype.
			again := filepath.Join(root, "again")
			require.NoError(t, Save(ctx, again, got, SaveOptions{}))
			back, err := Load(ctx, again, pool)
			require.NoError(t, err)
			assert.Equal(t, "float32", back.Config.TorchDtype)
			requireBitEqual(t, want, back.W.Data)
		})
	}
}

func TestSaveRefusesUnknownDType(t *testing.T) {
	m, _ := newModel(t, testConfig(transformer.ArchCausalLM, true), 1)
	for _, d := range []safetensors.DType{safetensors.F64, "I8", "bf16"} {
		t.Run(string(d), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ckpt")
			err := Save(context.Background(), dir, m, SaveOptions{DType: d})
			require.Error(t, err)
			assert.Contains(t, err.Error(), string(d))
			assert.Contains(t, err.Error(), "F32, BF16, F16")
			_, statErr := os.Stat(dir)
			assert.True(t, os.IsNotExist(statErr), "nothing is written")
		})
	}
}

// fileAndDataBytes is a safetensors file's size and the size of its data region.
func fileAndDataBytes(t *testing.T, path string) (file, data int64) {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(raw), 8)
	return int64(len(raw)), int64(len(raw)) - 8 - int64(binary.LittleEndian.Uint64(raw))
}
