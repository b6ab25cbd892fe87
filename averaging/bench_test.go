package averaging

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/posttrain/posttrain/transformer"
	"github.com/stretchr/testify/require"
)

// BenchmarkUniform averages three bench-preset models (about 5M parameters, 20 MB each)
// and reports the input bytes averaged per second.
func BenchmarkUniform(b *testing.B) {
	root := b.TempDir()
	cfg, err := transformer.Preset("bench")
	require.NoError(b, err)
	var dirs []string
	for i := 0; i < 3; i++ {
		d := filepath.Join(root, fmt.Sprint(i))
		saveModel(b, d, cfg, uint64(i+1), nil, nil)
		dirs = append(dirs, d)
	}
	modelBytes := int64(4 * len(transformer.NewParams(cfg).Data))
	b.SetBytes(3 * modelBytes)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		out := filepath.Join(root, "soup")
		if _, err := Uniform(context.Background(), out, dirs, Options{Overwrite: true}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		require.NoError(b, os.RemoveAll(out))
		b.StartTimer()
	}
}
