package catalog_test

import (
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/artifacts/catalog"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
)

func writeFiles(t *testing.T, dir string, files map[string][]byte) {
	for p, b := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, b, 0o644))
	}
}

func random(t *testing.T, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// fixture records a dataset file, a model directory trained on it, and a second
// model initialised from the first.
type fixture struct {
	cat                 *catalog.Catalog
	root                string
	data, model, model2 datastore.Artifact
	modelFiles          map[string][]byte
	dataBytes           []byte
}

func newFixture(t *testing.T, backend string) fixture {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	db := datastore.New(pool)
	root := filepath.Join(t.TempDir(), "store")
	cat := catalog.New(db, pool, artifacts.Options{Backend: backend, Root: root, ChunkSize: 4096})
	f := fixture{cat: cat, root: root}

	f.dataBytes = []byte("{\"prompt\": \"2+2?\", \"completion\": \"4\"}\n")
	dataFile := filepath.Join(t.TempDir(), "sft.jsonl")
	require.NoError(t, os.WriteFile(dataFile, f.dataBytes, 0o644))
	f.modelFiles = map[string][]byte{
		"config.json":       []byte(`{"dim": 32}`),
		"model.safetensors": random(t, 20_000),
		"tokenizer.json":    []byte(`{"model": {}}`),
	}
	modelDir := t.TempDir()
	writeFiles(t, modelDir, f.modelFiles)
	model2Dir := t.TempDir()
	writeFiles(t, model2Dir, map[string][]byte{"config.json": []byte(`{"dim": 32, "v": 2}`), "model.safetensors": random(t, 5000)})

	var err error
	var started, added int64
	p := catalog.Progress{Start: func(n int64) { started += n }, Add: func(n int64) { added += n }}
	f.data, err = cat.Put(ctx, catalog.PutRequest{Path: dataFile, Artifact: datastore.Artifact{Kind: "dataset"}}, p)
	require.NoError(t, err)
	f.model, err = cat.Put(ctx, catalog.PutRequest{Path: modelDir, Artifact: datastore.Artifact{Kind: "model", Metadata: map[string]any{"stage": "sft"}}}, p)
	require.NoError(t, err)
	f.model2, err = cat.Put(ctx, catalog.PutRequest{Path: model2Dir, Artifact: datastore.Artifact{Kind: "model"}}, catalog.Progress{})
	require.NoError(t, err)
	assert.Equal(t, started, added, "progress must reach the announced total")
	assert.EqualValues(t, int64(len(f.dataBytes))+f.model.Size, added)
	require.NoError(t, db.AddLineage(ctx, f.data.ID, f.model.ID, "train_data"))
	require.NoError(t, db.AddLineage(ctx, f.model.ID, f.model2.ID, "init"))
	return f
}

func TestCatalog(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, backend := range []string{artifacts.BackendFS, artifacts.BackendPostgres} {
		t.Run(backend, func(t *testing.T) {
			f := newFixture(t, backend)
			assert.Equal(t, artifacts.URI(backend, f.model.SHA256), f.model.URI)
			assert.Equal(t, artifacts.SumBytes(f.dataBytes), f.data.SHA256)
			assert.EqualValues(t, 3, f.model.Metadata["files"])

			list, err := f.cat.List(ctx, datastore.ArtifactFilter{Kind: "model"})
			require.NoError(t, err)
			assert.Len(t, list, 2)

			d, err := f.cat.Show(ctx, f.model.ID)
			require.NoError(t, err)
			assert.Empty(t, d.StoreError)
			assert.True(t, d.Directory)
			require.Len(t, d.Files, 3)
			assert.Equal(t, "config.json", d.Files[0].Path)
			require.Len(t, d.Parents, 1)
			assert.Equal(t, f.data.ID, d.Parents[0].Parent)
			assert.Equal(t, "train_data", d.Parents[0].Role)
			require.Len(t, d.Children, 1)
			assert.Equal(t, f.model2.ID, d.Children[0].Child)
			assert.Equal(t, "init", d.Children[0].Role)
			d2, err := f.cat.Show(ctx, f.model2.ID)
			require.NoError(t, err)
			assert.Len(t, d2.Ancestry, 2, "model2's ancestry reaches the dataset through model")
			dd, err := f.cat.Show(ctx, f.data.ID)
			require.NoError(t, err)
			assert.False(t, dd.Directory)

			out := filepath.Join(t.TempDir(), "model")
			res, err := f.cat.Get(ctx, f.model.ID, out, catalog.Progress{})
			require.NoError(t, err)
			assert.True(t, res.Directory)
			assert.Equal(t, 3, res.Files)
			for p, want := range f.modelFiles {
				got, err := os.ReadFile(filepath.Join(out, p))
				require.NoError(t, err)
				assert.Equal(t, want, got, p)
			}
			outFile := filepath.Join(t.TempDir(), "data.jsonl")
			var total, added int64
			res, err = f.cat.Get(ctx, f.data.ID, outFile, catalog.Progress{Start: func(n int64) { total = n }, Add: func(n int64) { added += n }})
			require.NoError(t, err)
			assert.False(t, res.Directory)
			got, err := os.ReadFile(outFile)
			require.NoError(t, err)
			assert.Equal(t, f.dataBytes, got)
			assert.EqualValues(t, len(f.dataBytes), total)
			assert.Equal(t, total, added)
			_, err = f.cat.Get(ctx, f.data.ID, outFile, catalog.Progress{})
			assert.ErrorIs(t, err, fs.ErrExist, "get must not overwrite a file")

			results, err := f.cat.Verify(ctx, nil, nil)
			require.NoError(t, err)
			require.Len(t, results, 3)
			for _, r := range results {
				assert.True(t, r.OK(), "%s: %s %s", r.ID, r.Status, r.Detail)
			}

			// Re-putting identical content returns the same artifact.
			again, err := f.cat.Put(ctx, catalog.PutRequest{Path: outFile, Artifact: datastore.Artifact{Kind: "dataset"}}, catalog.Progress{})
			require.NoError(t, err)
			assert.Equal(t, f.data.ID, again.ID)
		})
	}
}

func TestVerifyReportsCorruptAndMissing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, artifacts.BackendFS)
	blob := func(sha string) string { return filepath.Join(f.root, "blobs", "sha256", sha[:2], sha) }

	weights := artifacts.SumBytes(f.modelFiles["model.safetensors"])
	p := blob(weights)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	b[100] ^= 1
	require.NoError(t, os.Chmod(p, 0o644))
	require.NoError(t, os.WriteFile(p, b, 0o644))
	require.NoError(t, os.Remove(blob(f.data.SHA256)))

	var seen []string
	results, err := f.cat.Verify(ctx, []string{f.model.ID, f.data.ID, f.model2.ID}, func(r catalog.VerifyResult) { seen = append(seen, r.ID) })
	require.NoError(t, err)
	require.Len(t, results, 3)
	assert.Equal(t, []string{f.model.ID, f.data.ID, f.model2.ID}, seen)
	assert.Equal(t, catalog.StatusCorrupt, results[0].Status)
	assert.Contains(t, results[0].Detail, "model.safetensors")
	assert.True(t, results[0].Directory)
	assert.Equal(t, catalog.StatusMissing, results[1].Status)
	assert.Equal(t, catalog.StatusOK, results[2].Status)

	// A get of the damaged model fails and writes nothing.
	parent := t.TempDir()
	_, err = f.cat.Get(ctx, f.model.ID, filepath.Join(parent, "m"), catalog.Progress{})
	require.ErrorIs(t, err, artifacts.ErrCorrupt)
	entries, err := os.ReadDir(parent)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestResolve(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, artifacts.BackendFS)

	e, err := f.cat.Resolve(ctx, f.model.ID)
	require.NoError(t, err)
	assert.True(t, e.Recorded)
	assert.Equal(t, "fs", e.Backend)

	// A content digest that is not a recorded ID resolves to the default store.
	sha := artifacts.SumBytes(f.modelFiles["config.json"])
	e, err = f.cat.Resolve(ctx, sha)
	require.NoError(t, err)
	assert.False(t, e.Recorded)
	assert.Equal(t, sha, e.SHA256)
	results, err := f.cat.Verify(ctx, []string{sha}, nil)
	require.NoError(t, err)
	assert.Equal(t, catalog.StatusOK, results[0].Status)

	_, err = f.cat.Resolve(ctx, "model-doesnotexist")
	assert.ErrorIs(t, err, datastore.ErrNotFound)

	// Without a database only digests resolve, and the error says how to fix it.
	noDB := catalog.New(nil, nil, artifacts.Options{Root: f.root})
	_, err = noDB.Resolve(ctx, f.model.ID)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "POSTTRAIN_DATABASE_URL")
	res, err := noDB.Get(ctx, f.model.SHA256, filepath.Join(t.TempDir(), "m"), catalog.Progress{})
	require.NoError(t, err)
	assert.True(t, res.Directory)

	// A mistyped store root is an error, not an empty store.
	wrongRoot := catalog.New(nil, nil, artifacts.Options{Root: filepath.Join(t.TempDir(), "nope")})
	_, err = wrongRoot.Get(ctx, f.model.SHA256, filepath.Join(t.TempDir(), "m"), catalog.Progress{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--artifact-root")
}
