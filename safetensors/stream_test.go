package safetensors

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func streamTensors() []Tensor {
	big := make([]float32, 3*streamChunk+5) // spans several encode chunks
	for i := range big {
		big[i] = float32(i)*0.25 - 7
	}
	return []Tensor{
		{Name: "model.embed_tokens.weight", Shape: []int{2, 3}, Data: []float32{1, -2, 3.5, 0, -0, 6e-39}},
		{Name: "scalar", Shape: []int{}, Data: []float32{42}},
		{Name: "empty", Shape: []int{0, 4}, Data: []float32{}},
		{Name: "big", Shape: []int{len(big)}, Data: big},
	}
}

func specsOf(ts []Tensor) []TensorSpec {
	out := make([]TensorSpec, len(ts))
	for i, t := range ts {
		out[i] = TensorSpec{Name: t.Name, Shape: t.Shape}
	}
	return out
}

// leftovers lists the files of dir other than keep.
func leftovers(t *testing.T, dir string, keep ...string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		found := false
		for _, k := range keep {
			found = found || e.Name() == k
		}
		if !found {
			out = append(out, e.Name())
		}
	}
	return out
}

func TestStreamWriterMatchesWriteFile(t *testing.T) {
	for _, meta := range []map[string]string{nil, {"format": "pt", "soup": "uniform"}} {
		dir := t.TempDir()
		ts := streamTensors()
		whole := filepath.Join(dir, "whole.safetensors")
		require.NoError(t, WriteFile(context.Background(), whole, ts, meta))
		streamed := filepath.Join(dir, "streamed.safetensors")
		w, err := CreateStream(streamed, specsOf(ts), meta)
		require.NoError(t, err)
		for _, tt := range ts {
			assert.Equal(t, tt.Name, w.Next())
			require.NoError(t, w.WriteTensor(tt.Name, tt.Data))
		}
		assert.Equal(t, "", w.Next())
		_, err = os.Stat(streamed)
		require.True(t, os.IsNotExist(err), "nothing appears at the path before Commit")
		require.NoError(t, w.Commit())

		a, err := os.ReadFile(whole)
		require.NoError(t, err)
		b, err := os.ReadFile(streamed)
		require.NoError(t, err)
		assert.Equal(t, a, b, "streamed file differs from Write's")
		r, err := Open(streamed)
		require.NoError(t, err)
		for _, tt := range ts {
			got, err := r.Float32(tt.Name)
			require.NoError(t, err)
			assert.Equal(t, tt.Data, got, tt.Name)
		}
		assert.Equal(t, meta, r.Metadata())
		require.NoError(t, r.Close())
		st, err := os.Stat(streamed)
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o644), st.Mode().Perm())
		assert.Empty(t, leftovers(t, dir, "whole.safetensors", "streamed.safetensors"))
	}
}

func TestStreamWriterErrors(t *testing.T) {
	ts := streamTensors()
	cases := []struct {
		name string
		run  func(w *StreamWriter) error
		want string
	}{
		{"out of order", func(w *StreamWriter) error { return w.WriteTensor("scalar", []float32{1}) }, `got tensor "scalar", the header wants "model.embed_tokens.weight" next`},
		{"wrong size", func(w *StreamWriter) error { return w.WriteTensor(ts[0].Name, []float32{1}) }, `tensor "model.embed_tokens.weight": shape [2 3] holds 6 elements, data has 1`},
		{"missing tensors at commit", func(w *StreamWriter) error {
			if err := w.WriteTensor(ts[0].Name, ts[0].Data); err != nil {
				return err
			}
			return w.Commit()
		}, `tensor "scalar" and 2 more were never written`},
		{"too many tensors", func(w *StreamWriter) error {
			for _, tt := range ts {
				if err := w.WriteTensor(tt.Name, tt.Data); err != nil {
					return err
				}
			}
			return w.WriteTensor("extra", nil)
		}, "every tensor of the header is already written"},
		{"write after a failure", func(w *StreamWriter) error {
			_ = w.WriteTensor("nope", nil)
			return w.WriteTensor(ts[0].Name, ts[0].Data)
		}, `got tensor "nope"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "m.safetensors")
			w, err := CreateStream(path, specsOf(ts), nil)
			require.NoError(t, err)
			err = tc.run(w)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			require.Error(t, w.Commit(), "a failed writer never commits")
			assert.Empty(t, leftovers(t, dir), "a failed write leaves no file")
		})
	}
	t.Run("abort", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "m.safetensors")
		require.NoError(t, os.WriteFile(path, []byte("old"), 0o644))
		w, err := CreateStream(path, specsOf(ts), nil)
		require.NoError(t, err)
		require.NoError(t, w.WriteTensor(ts[0].Name, ts[0].Data))
		w.Abort()
		w.Abort()
		old, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, "old", string(old), "abort leaves the previous file")
		assert.Empty(t, leftovers(t, dir, "m.safetensors"))
	})
	t.Run("commit twice", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "m.safetensors")
		w, err := CreateStream(path, []TensorSpec{{Name: "a", Shape: []int{1}}}, nil)
		require.NoError(t, err)
		require.NoError(t, w.WriteTensor("a", []float32{1}))
		require.NoError(t, w.Commit())
		require.ErrorContains(t, w.Commit(), "already committed")
		require.ErrorContains(t, w.WriteTensor("a", []float32{1}), "already committed")
	})
	for _, bad := range []struct {
		specs []TensorSpec
		want  string
	}{
		{[]TensorSpec{{Name: "a"}, {Name: "a"}}, `tensor "a": duplicate name`},
		{[]TensorSpec{{Name: ""}}, "empty name"},
		{[]TensorSpec{{Name: "__metadata__"}}, "reserved"},
		{[]TensorSpec{{Name: "n", Shape: []int{2, -1}}}, "negative dimension"},
	} {
		dir := t.TempDir()
		_, err := CreateStream(filepath.Join(dir, "m.safetensors"), bad.specs, nil)
		require.ErrorContains(t, err, bad.want)
		assert.Empty(t, leftovers(t, dir))
	}
}
