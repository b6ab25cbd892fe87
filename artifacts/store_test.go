package artifacts_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/internal/pgtest"
)

// testChunk is small so PostgreSQL tests exercise many chunks with little data.
const testChunk = 1024

// backend is one store under test plus the means to damage what it stores.
type backend struct {
	name  string
	store artifacts.Store
	// flip changes one byte of a stored blob in place.
	flip func(t *testing.T, sha string)
	// truncate drops the last byte of a stored blob.
	truncate func(t *testing.T, sha string)
	// count returns how many blobs (and, for PostgreSQL, chunk rows) are stored.
	count func(t *testing.T) (blobs, chunks int)
}

func fsBackend(t *testing.T) backend {
	root := t.TempDir()
	s, err := artifacts.NewFS(root)
	require.NoError(t, err)
	blobFile := func(sha string) string { return filepath.Join(root, "blobs", "sha256", sha[:2], sha) }
	edit := func(t *testing.T, sha string, fn func(b []byte) []byte) {
		p := blobFile(sha)
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.NoError(t, os.Chmod(p, 0o644))
		require.NoError(t, os.WriteFile(p, fn(b), 0o644))
	}
	return backend{
		name:  "fs",
		store: s,
		flip: func(t *testing.T, sha string) {
			edit(t, sha, func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b })
		},
		truncate: func(t *testing.T, sha string) {
			edit(t, sha, func(b []byte) []byte { return b[:len(b)-1] })
		},
		count: func(t *testing.T) (int, int) {
			n := 0
			err := filepath.WalkDir(filepath.Join(root, "blobs"), func(_ string, d os.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					n++
				}
				return err
			})
			require.NoError(t, err)
			tmp, err := os.ReadDir(filepath.Join(root, "tmp"))
			require.NoError(t, err)
			assert.Empty(t, tmp, "temp files left behind")
			return n, 0
		},
	}
}

func pgBackend(t *testing.T) backend {
	pool := pgtest.NewDB(t)
	s, err := artifacts.NewPG(pool, testChunk)
	require.NoError(t, err)
	ctx := context.Background()
	exec := func(t *testing.T, sql string, sha string) {
		tag, err := pool.Exec(ctx, sql, sha)
		require.NoError(t, err)
		require.EqualValues(t, 1, tag.RowsAffected())
	}
	return backend{
		name:  "postgres",
		store: s,
		flip: func(t *testing.T, sha string) {
			exec(t, `UPDATE artifact_blob_chunks c SET data = set_byte(c.data, 0, get_byte(c.data, 0) # 255)
				FROM artifact_blobs b WHERE b.sha256 = $1 AND c.data_id = b.data_id AND c.seq = 0`, sha)
		},
		truncate: func(t *testing.T, sha string) {
			exec(t, `UPDATE artifact_blob_chunks c SET data = substring(c.data FROM 1 FOR length(c.data) - 1)
				FROM artifact_blobs b WHERE b.sha256 = $1 AND c.data_id = b.data_id AND c.seq = b.chunks - 1`, sha)
		},
		count: func(t *testing.T) (int, int) { return pgCounts(t, pool) },
	}
}

func pgCounts(t *testing.T, pool *pgxpool.Pool) (blobs, chunks int) {
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT (SELECT count(*) FROM artifact_blobs), (SELECT count(*) FROM artifact_blob_chunks)`).Scan(&blobs, &chunks))
	return blobs, chunks
}

func allBackends(t *testing.T) []backend { return []backend{fsBackend(t), pgBackend(t)} }

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func readAll(t *testing.T, s artifacts.Store, sha string) ([]byte, error) {
	t.Helper()
	rc, err := s.Open(context.Background(), sha)
	if err != nil {
		return nil, err
	}
	defer func() { assert.NoError(t, rc.Close()) }()
	return io.ReadAll(rc)
}

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, b := range allBackends(t) {
		for _, size := range []int{0, 1, testChunk - 1, testChunk, 3*testChunk + 7, 70_000} {
			data := randomBytes(t, size)
			ref, err := b.store.Put(ctx, bytes.NewReader(data))
			require.NoError(t, err, "%s put %d bytes", b.name, size)
			assert.Equal(t, artifacts.SumBytes(data), ref.SHA256, b.name)
			assert.EqualValues(t, size, ref.Size, b.name)

			got, err := readAll(t, b.store, ref.SHA256)
			require.NoError(t, err, "%s read %d bytes", b.name, size)
			assert.True(t, bytes.Equal(data, got), "%s: %d bytes differ after round trip", b.name, size)

			st, err := b.store.Stat(ctx, ref.SHA256)
			require.NoError(t, err)
			assert.Equal(t, ref, st, b.name)
			has, err := b.store.Has(ctx, ref.SHA256)
			require.NoError(t, err)
			assert.True(t, has, b.name)
			assert.NoError(t, b.store.Verify(ctx, ref.SHA256), b.name)
		}
	}
}

func TestIdempotentPut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, b := range allBackends(t) {
		data := randomBytes(t, 2*testChunk+5)
		r1, err := b.store.Put(ctx, bytes.NewReader(data))
		require.NoError(t, err)
		blobs1, chunks1 := b.count(t)
		r2, err := b.store.Put(ctx, bytes.NewReader(data))
		require.NoError(t, err)
		assert.Equal(t, r1, r2, b.name)
		blobs2, chunks2 := b.count(t)
		assert.Equal(t, 1, blobs2, "%s: same content twice must be one blob", b.name)
		assert.Equal(t, blobs1, blobs2, b.name)
		assert.Equal(t, chunks1, chunks2, "%s: re-put must not leave chunks behind", b.name)
		if b.name == "postgres" {
			assert.Equal(t, 3, chunks2)
		}
	}
}

func TestCorruptionDetected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	damage := map[string]func(b backend) func(*testing.T, string){
		"flipped byte": func(b backend) func(*testing.T, string) { return b.flip },
		"truncated":    func(b backend) func(*testing.T, string) { return b.truncate },
	}
	for _, b := range allBackends(t) {
		for what, how := range damage {
			t.Run(b.name+"/"+what, func(t *testing.T) {
				data := randomBytes(t, 3*testChunk+11)
				ref, err := b.store.Put(ctx, bytes.NewReader(data))
				require.NoError(t, err)
				how(b)(t, ref.SHA256)

				_, err = readAll(t, b.store, ref.SHA256)
				require.ErrorIs(t, err, artifacts.ErrCorrupt)
				assert.Contains(t, err.Error(), ref.SHA256)
				err = b.store.Verify(ctx, ref.SHA256)
				require.ErrorIs(t, err, artifacts.ErrCorrupt)

				// Putting the good content again repairs the blob.
				_, err = b.store.Put(ctx, bytes.NewReader(data))
				require.NoError(t, err)
				if b.name == "fs" {
					assert.NoError(t, b.store.Verify(ctx, ref.SHA256), "fs re-put heals a damaged blob")
				}
			})
		}
	}
}

func TestPGMissingChunkDetected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	s, err := artifacts.NewPG(pool, testChunk)
	require.NoError(t, err)
	ref, err := s.Put(ctx, bytes.NewReader(randomBytes(t, 4*testChunk)))
	require.NoError(t, err)
	_, err = pool.Exec(ctx, `DELETE FROM artifact_blob_chunks c USING artifact_blobs b
		WHERE b.sha256 = $1 AND c.data_id = b.data_id AND c.seq = 2`, ref.SHA256)
	require.NoError(t, err)
	err = s.Verify(ctx, ref.SHA256)
	require.ErrorIs(t, err, artifacts.ErrCorrupt)
	assert.Contains(t, err.Error(), "chunk 2 of 4 is missing")
}

func TestNotFoundAndInvalidKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	absent := artifacts.SumBytes([]byte("never stored"))
	for _, b := range allBackends(t) {
		_, err := b.store.Open(ctx, absent)
		assert.ErrorIs(t, err, artifacts.ErrNotFound, b.name)
		_, err = b.store.Stat(ctx, absent)
		assert.ErrorIs(t, err, artifacts.ErrNotFound, b.name)
		assert.ErrorIs(t, b.store.Verify(ctx, absent), artifacts.ErrNotFound, b.name)
		has, err := b.store.Has(ctx, absent)
		require.NoError(t, err)
		assert.False(t, has, b.name)

		for _, key := range []string{
			"", "../../../../etc/passwd", "/etc/passwd",
			"ab/../../" + absent[8:], strings.ToUpper(absent), absent + "0", absent[:63] + "g",
		} {
			_, err := b.store.Open(ctx, key)
			require.Error(t, err, "%s: key %q", b.name, key)
			assert.NotErrorIs(t, err, artifacts.ErrNotFound, "%s: key %q must be rejected, not looked up", b.name, key)
			assert.Contains(t, err.Error(), "invalid sha256")
			_, err = b.store.Has(ctx, key)
			assert.Error(t, err, "%s: key %q", b.name, key)
			assert.Error(t, b.store.Verify(ctx, key), "%s: key %q", b.name, key)
		}
	}
}

func TestFSSymlinkOutOfRootRejected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	s, err := artifacts.NewFS(root)
	require.NoError(t, err)

	// A file outside the store whose name is a valid key for its own content: only
	// the symlink check can stop the store serving it.
	outside := t.TempDir()
	secret := []byte("outside the store")
	sha := artifacts.SumBytes(secret)
	require.NoError(t, os.WriteFile(filepath.Join(outside, sha), secret, 0o644))

	t.Run("blob symlink", func(t *testing.T) {
		shard := filepath.Join(root, "blobs", "sha256", sha[:2])
		require.NoError(t, os.MkdirAll(shard, 0o755))
		link := filepath.Join(shard, sha)
		require.NoError(t, os.Symlink(filepath.Join(outside, sha), link))
		t.Cleanup(func() { os.Remove(link) })
		_, err := s.Open(ctx, sha)
		require.Error(t, err)
		assert.NotErrorIs(t, err, artifacts.ErrNotFound)
		_, err = s.Stat(ctx, sha)
		assert.Error(t, err)
	})
	t.Run("shard directory symlink", func(t *testing.T) {
		shard := filepath.Join(root, "blobs", "sha256", sha[:2])
		require.NoError(t, os.RemoveAll(shard))
		require.NoError(t, os.Symlink(outside, shard))
		t.Cleanup(func() { os.Remove(shard) })
		_, err := s.Open(ctx, sha)
		require.Error(t, err)
		// A put must not write through the link either.
		_, err = s.Put(ctx, bytes.NewReader([]byte("new content")))
		require.NoError(t, err)
		_, err = s.Put(ctx, bytes.NewReader(secret))
		assert.Error(t, err, "put through a symlinked shard must fail")
		got, err := os.ReadFile(filepath.Join(outside, sha))
		require.NoError(t, err)
		assert.Equal(t, secret, got)
		entries, err := os.ReadDir(outside)
		require.NoError(t, err)
		assert.Len(t, entries, 1, "nothing may be written outside the root")
	})
}

func TestConcurrentPutsOfSameContent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, b := range allBackends(t) {
		data := randomBytes(t, 5*testChunk+3)
		want := artifacts.SumBytes(data)
		var wg sync.WaitGroup
		refs := make([]artifacts.Ref, 8)
		errs := make([]error, 8)
		for i := range refs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				refs[i], errs[i] = b.store.Put(ctx, bytes.NewReader(data))
			}()
		}
		wg.Wait()
		for i := range refs {
			require.NoError(t, errs[i], "%s put %d", b.name, i)
			assert.Equal(t, want, refs[i].SHA256, b.name)
		}
		blobs, chunks := b.count(t)
		assert.Equal(t, 1, blobs, b.name)
		if b.name == "postgres" {
			assert.Equal(t, 6, chunks, "postgres: losing puts must roll their chunks back")
		}
		assert.NoError(t, b.store.Verify(ctx, want), b.name)
	}
}

func TestCancelledPutLeavesNothing(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends(t) {
		ctx, cancel := context.WithCancel(context.Background())
		r := &cancelAfter{data: randomBytes(t, 10*testChunk), after: 4 * testChunk, cancel: cancel}
		_, err := b.store.Put(ctx, r)
		require.Error(t, err, b.name)
		assert.ErrorIs(t, err, context.Canceled, b.name)
		blobs, chunks := b.count(t)
		assert.Zero(t, blobs, b.name)
		assert.Zero(t, chunks, b.name)
	}
}

// cancelAfter is a reader that cancels its context after handing out `after` bytes.
type cancelAfter struct {
	data   []byte
	off    int
	after  int
	cancel context.CancelFunc
}

func (c *cancelAfter) Read(p []byte) (int, error) {
	if c.off >= c.after {
		c.cancel()
	}
	if c.off >= len(c.data) {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 512)], c.data[c.off:])
	c.off += n
	return n, nil
}

func TestNew(t *testing.T) {
	t.Parallel()
	tests := []struct {
		opts    artifacts.Options
		backend string
		err     string
	}{
		{opts: artifacts.Options{Root: t.TempDir()}, backend: "fs"},
		{opts: artifacts.Options{Backend: "fs", Root: t.TempDir()}, backend: "fs"},
		{opts: artifacts.Options{Backend: "fs"}, err: "artifacts.root: empty path"},
		{opts: artifacts.Options{Backend: "postgres"}, err: "no database connection"},
		{opts: artifacts.Options{Backend: "s3"}, err: `artifacts.backend "s3": unknown backend`},
	}
	for _, tc := range tests {
		s, err := artifacts.New(tc.opts)
		if tc.err != "" {
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, tc.backend, s.Backend())
	}
}

func TestURI(t *testing.T) {
	t.Parallel()
	sha := artifacts.SumBytes([]byte("x"))
	u := artifacts.URI("postgres", sha)
	backend, got, err := artifacts.ParseURI(u)
	require.NoError(t, err)
	assert.Equal(t, "postgres", backend)
	assert.Equal(t, sha, got)
	for _, bad := range []string{"", sha, "fs:", "fs:../x", ":" + sha} {
		_, _, err := artifacts.ParseURI(bad)
		assert.Error(t, err, bad)
	}
}

func TestReadHonoursContext(t *testing.T) {
	t.Parallel()
	for _, b := range allBackends(t) {
		ref, err := b.store.Put(context.Background(), bytes.NewReader(randomBytes(t, 3*testChunk)))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		rc, err := b.store.Open(ctx, ref.SHA256)
		require.NoError(t, err)
		cancel()
		_, err = io.ReadAll(rc)
		assert.True(t, errors.Is(err, context.Canceled), "%s: %v", b.name, err)
		require.NoError(t, rc.Close())
	}
}

func TestFSCleanTemp(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	root := t.TempDir()
	s, err := artifacts.NewFS(root)
	require.NoError(t, err)
	old := filepath.Join(root, "tmp", "put-crashed")
	fresh := filepath.Join(root, "tmp", "put-running")
	require.NoError(t, os.WriteFile(old, []byte("partial"), 0o600))
	require.NoError(t, os.WriteFile(fresh, []byte("partial"), 0o600))
	past := time.Now().Add(-2 * time.Hour)
	require.NoError(t, os.Chtimes(old, past, past))
	ref, err := s.Put(ctx, bytes.NewReader([]byte("kept")))
	require.NoError(t, err)

	n, err := s.CleanTemp(ctx, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.NoFileExists(t, old)
	assert.FileExists(t, fresh)
	assert.NoError(t, s.Verify(ctx, ref.SHA256), "stored blobs are untouched")
}
