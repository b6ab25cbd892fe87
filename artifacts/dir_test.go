package artifacts_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/artifacts"
)

// modelDir writes a small model-shaped directory and returns it with its files.
func modelDir(t *testing.T) (string, map[string][]byte) {
	dir := t.TempDir()
	files := map[string][]byte{
		"config.json":        []byte(`{"dim": 64, "n_layers": 2}`),
		"model.safetensors":  randomBytes(t, 5*testChunk+123),
		"tokenizer.json":     []byte(`{"model": {"type": "BPE"}}`),
		"extra/notes.txt":    []byte("trained on the bundled task\n"),
		"extra/deep/empty.b": {},
	}
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, b, 0o644))
	}
	return dir, files
}

// readTree returns every regular file under dir keyed by slash path.
func readTree(t *testing.T, dir string) map[string][]byte {
	out := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		require.NoError(t, err)
		b, err := os.ReadFile(p)
		out[filepath.ToSlash(rel)] = b
		return err
	})
	require.NoError(t, err)
	return out
}

func TestDirRoundTrip(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, b := range allBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			src, files := modelDir(t)
			m, err := b.store.PutDir(ctx, src)
			require.NoError(t, err)
			require.Len(t, m.Files, len(files))
			for i := 1; i < len(m.Files); i++ {
				assert.Less(t, m.Files[i-1].Path, m.Files[i].Path, "manifest must be sorted")
			}
			canon, err := m.Canonical()
			require.NoError(t, err)
			assert.Equal(t, artifacts.SumBytes(canon), m.ID, "ID is the sha256 of the canonical manifest")
			var total int64
			for _, f := range m.Files {
				assert.Equal(t, artifacts.SumBytes(files[f.Path]), f.SHA256, f.Path)
				assert.EqualValues(t, len(files[f.Path]), f.Size, f.Path)
				total += f.Size
			}
			assert.Equal(t, total, m.Size())

			dest := filepath.Join(t.TempDir(), "models", "m1")
			got, err := b.store.GetDir(ctx, m.ID, dest)
			require.NoError(t, err)
			assert.Equal(t, m, got)
			assert.Equal(t, files, readTree(t, dest))
			leftovers, err := filepath.Glob(filepath.Join(filepath.Dir(dest), ".*partial*"))
			require.NoError(t, err)
			assert.Empty(t, leftovers)

			// Storing the same directory again gives the same ID and no new blobs.
			blobs, chunks := b.count(t)
			m2, err := b.store.PutDir(ctx, src)
			require.NoError(t, err)
			assert.Equal(t, m.ID, m2.ID)
			blobs2, chunks2 := b.count(t)
			assert.Equal(t, blobs, blobs2)
			assert.Equal(t, chunks, chunks2)

			// An empty existing directory is an acceptable destination.
			empty := t.TempDir()
			_, err = b.store.GetDir(ctx, m.ID, empty)
			require.NoError(t, err)
			assert.Equal(t, files, readTree(t, empty))

			vm, err := artifacts.VerifyDir(ctx, b.store, m.ID)
			require.NoError(t, err)
			assert.Equal(t, m.ID, vm.ID)
		})
	}
}

func TestDirProgressCountsEveryByte(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := artifacts.NewFS(t.TempDir())
	require.NoError(t, err)
	src, _ := modelDir(t)
	var put, get int64
	m, err := artifacts.StoreDir(ctx, s, src, artifacts.DirOptions{Progress: func(n int64) { put += n }})
	require.NoError(t, err)
	assert.Equal(t, m.Size(), put)
	_, err = artifacts.FetchDir(ctx, s, m.ID, filepath.Join(t.TempDir(), "out"), artifacts.DirOptions{Progress: func(n int64) { get += n }})
	require.NoError(t, err)
	assert.Equal(t, m.Size(), get)
	// The second store finds every blob present and still reports the full size.
	put = 0
	_, err = artifacts.StoreDir(ctx, s, src, artifacts.DirOptions{Progress: func(n int64) { put += n }})
	require.NoError(t, err)
	assert.Equal(t, m.Size(), put)
}

func TestGetDirCorruptFileLeavesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, b := range allBackends(t) {
		t.Run(b.name, func(t *testing.T) {
			src, files := modelDir(t)
			m, err := b.store.PutDir(ctx, src)
			require.NoError(t, err)
			b.flip(t, artifacts.SumBytes(files["model.safetensors"]))

			parent := t.TempDir()
			dest := filepath.Join(parent, "m")
			_, err = b.store.GetDir(ctx, m.ID, dest)
			require.ErrorIs(t, err, artifacts.ErrCorrupt)
			assert.Contains(t, err.Error(), "model.safetensors")
			entries, err := os.ReadDir(parent)
			require.NoError(t, err)
			assert.Empty(t, entries, "a failed materialisation must leave neither dest nor a partial dir")

			_, err = artifacts.VerifyDir(ctx, b.store, m.ID)
			require.ErrorIs(t, err, artifacts.ErrCorrupt)
			assert.Contains(t, err.Error(), "model.safetensors")
			assert.NotContains(t, err.Error(), "config.json", "only the damaged file is reported")
		})
	}
}

func TestGetDirRefusesNonEmptyDest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := artifacts.NewFS(t.TempDir())
	require.NoError(t, err)
	src, _ := modelDir(t)
	m, err := s.PutDir(ctx, src)
	require.NoError(t, err)

	dest := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dest, "keep.txt"), []byte("mine"), 0o644))
	_, err = s.GetDir(ctx, m.ID, dest)
	require.ErrorIs(t, err, fs.ErrExist)
	got, err := os.ReadFile(filepath.Join(dest, "keep.txt"))
	require.NoError(t, err)
	assert.Equal(t, "mine", string(got))

	file := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	_, err = s.GetDir(ctx, m.ID, file)
	require.ErrorIs(t, err, fs.ErrExist)
}

func TestGetDirOfPlainBlob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := artifacts.NewFS(t.TempDir())
	require.NoError(t, err)
	ref, err := s.Put(ctx, bytes.NewReader([]byte(`{"just": "json"}`)))
	require.NoError(t, err)
	_, err = s.GetDir(ctx, ref.SHA256, filepath.Join(t.TempDir(), "x"))
	require.ErrorIs(t, err, artifacts.ErrNotManifest)
	_, err = s.GetDir(ctx, artifacts.SumBytes([]byte("absent")), filepath.Join(t.TempDir(), "x"))
	require.ErrorIs(t, err, artifacts.ErrNotFound)
}

// TestHostileManifestRejected stores hand-made manifests whose paths try to leave
// the destination; materialising them must fail before anything is written.
func TestHostileManifestRejected(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, b := range allBackends(t) {
		file, err := b.store.Put(ctx, bytes.NewReader([]byte("payload")))
		require.NoError(t, err)
		for _, p := range []string{
			"../escape", "a/../../escape", "/etc/cron.d/x", "./a", "a//b", "a/", "", ".", "..", `a\..\b`, "a\x00b",
		} {
			entry := map[string]any{"path": p, "sha256": file.SHA256, "size": file.Size}
			raw, err := json.Marshal(map[string]any{"format": artifacts.ManifestFormat, "files": []any{entry}})
			require.NoError(t, err)
			ref, err := b.store.Put(ctx, bytes.NewReader(raw))
			require.NoError(t, err)

			parent := t.TempDir()
			_, err = b.store.GetDir(ctx, ref.SHA256, filepath.Join(parent, "dest"))
			require.Error(t, err, "%s: path %q", b.name, p)
			assert.Contains(t, err.Error(), "invalid manifest", "%s: path %q", b.name, p)
			entries, err := os.ReadDir(parent)
			require.NoError(t, err)
			assert.Empty(t, entries, "%s: path %q", b.name, p)
		}
	}
}

func TestManifestValidation(t *testing.T) {
	t.Parallel()
	sha := artifacts.SumBytes([]byte("x"))
	tests := []struct {
		name  string
		files []artifacts.FileEntry
		err   string
	}{
		{"ok", []artifacts.FileEntry{{Path: "b", SHA256: sha, Size: 1}, {Path: "a/c", SHA256: sha, Size: 1}}, ""},
		{"empty", nil, "lists no files"},
		{"duplicate", []artifacts.FileEntry{{Path: "a", SHA256: sha}, {Path: "a", SHA256: sha}}, "listed twice"},
		{"file is also a dir", []artifacts.FileEntry{{Path: "a", SHA256: sha}, {Path: "a-x", SHA256: sha}, {Path: "a/b", SHA256: sha}}, `parent "a" is also listed`},
		{"bad digest", []artifacts.FileEntry{{Path: "a", SHA256: "abc"}}, `manifest file "a": invalid sha256`},
		{"negative size", []artifacts.FileEntry{{Path: "a", SHA256: sha, Size: -1}}, "negative size"},
		{"traversal", []artifacts.FileEntry{{Path: "../a", SHA256: sha}}, "escapes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			canon, err := artifacts.Manifest{Files: tc.files}.Canonical()
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			m, err := artifacts.ParseManifest(canon)
			require.NoError(t, err)
			assert.Equal(t, "a/c", m.Files[0].Path, "canonical order is sorted")
			assert.Equal(t, artifacts.SumBytes(canon), m.ID)
		})
	}
}

func TestParseManifestRejectsNonCanonical(t *testing.T) {
	t.Parallel()
	sha := artifacts.SumBytes([]byte("x"))
	canon, err := artifacts.Manifest{Files: []artifacts.FileEntry{{Path: "a", SHA256: sha, Size: 1}}}.Canonical()
	require.NoError(t, err)
	_, err = artifacts.ParseManifest(canon)
	require.NoError(t, err)
	for name, raw := range map[string]string{
		"indented":      "{\n  \"format\": \"" + artifacts.ManifestFormat + "\", \"files\": [{\"path\": \"a\", \"sha256\": \"" + sha + "\", \"size\": 1}]}",
		"unsorted":      `{"format":"` + artifacts.ManifestFormat + `","files":[{"path":"b","sha256":"` + sha + `","size":1},{"path":"a","sha256":"` + sha + `","size":1}]}`,
		"wrong format":  `{"format":"other","files":[]}`,
		"unknown field": `{"format":"` + artifacts.ManifestFormat + `","files":[],"extra":1}`,
		"not json":      "model weights",
	} {
		_, err := artifacts.ParseManifest([]byte(raw))
		assert.Error(t, err, name)
	}
}

func TestValidatePath(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"config.json", "a/b/c.bin", "weird name.txt", "..hidden", "a/..b"} {
		assert.NoError(t, artifacts.ValidatePath(ok), ok)
	}
	for _, bad := range []string{"", ".", "..", "../x", "a/../../x", "a/..", "/abs", "a//b", "./a", "a/./b", "a/", `a\b`, "a\x00"} {
		assert.Error(t, artifacts.ValidatePath(bad), "%q", bad)
	}
}

func TestScanDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "real.bin"), []byte("abc"), 0o644))
	target := filepath.Join(t.TempDir(), "blob")
	require.NoError(t, os.WriteFile(target, []byte("linked"), 0o644))
	// Hugging Face snapshots are symlinks into a blob cache: they are followed.
	require.NoError(t, os.Symlink(target, filepath.Join(dir, "linked.bin")))
	files, err := artifacts.ScanDir(dir)
	require.NoError(t, err)
	assert.Equal(t, []artifacts.FileEntry{{Path: "linked.bin", Size: 6}, {Path: "real.bin", Size: 3}}, files)

	require.NoError(t, os.Symlink(t.TempDir(), filepath.Join(dir, "subdir-link")))
	_, err = artifacts.ScanDir(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "symlink to a directory")

	_, err = artifacts.ScanDir(t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "holds no files")

	_, err = artifacts.ScanDir(filepath.Join(dir, "real.bin"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not a directory")
}

func TestIsManifest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, b := range allBackends(t) {
		src, _ := modelDir(t)
		m, err := b.store.PutDir(ctx, src)
		require.NoError(t, err)
		is, err := artifacts.IsManifest(ctx, b.store, m.ID)
		require.NoError(t, err)
		assert.True(t, is, b.name)
		for _, f := range m.Files {
			is, err := artifacts.IsManifest(ctx, b.store, f.SHA256)
			require.NoError(t, err, "%s %s", b.name, f.Path)
			assert.False(t, is, "%s %s", b.name, f.Path)
		}
		_, err = artifacts.IsManifest(ctx, b.store, artifacts.SumBytes([]byte("absent")))
		assert.ErrorIs(t, err, artifacts.ErrNotFound, b.name)
	}
}
