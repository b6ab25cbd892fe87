package artifacts_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/internal/pgtest"
)

// benchStores returns both backends with production chunk sizes.
func benchStores(b *testing.B) map[string]artifacts.Store {
	fs, err := artifacts.NewFS(b.TempDir())
	require.NoError(b, err)
	pg, err := artifacts.NewPG(pgtest.NewDB(b), 0)
	require.NoError(b, err)
	return map[string]artifacts.Store{"fs": fs, "postgres": pg}
}

// BenchmarkPutOpen measures streaming a 32 MiB blob in (fresh content each time, so
// nothing is deduplicated) and back out through the verifying reader.
func BenchmarkPutOpen(b *testing.B) {
	const size = 32 << 20
	ctx := context.Background()
	for name, s := range benchStores(b) {
		data := make([]byte, size)
		b.Run(name+"/put", func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				_, err := rand.Read(data[:64])
				require.NoError(b, err)
				_, err = s.Put(ctx, bytes.NewReader(data))
				require.NoError(b, err)
			}
		})
		ref, err := s.Put(ctx, bytes.NewReader(data))
		require.NoError(b, err)
		b.Run(name+"/open", func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				rc, err := s.Open(ctx, ref.SHA256)
				require.NoError(b, err)
				_, err = io.Copy(io.Discard, rc)
				require.NoError(b, err)
				require.NoError(b, rc.Close())
			}
		})
	}
}
