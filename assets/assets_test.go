package assets

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/tokenizer"
)

func TestWriteBaseModelLoadsAndIsReused(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	dir, err := WriteBaseModel(root)
	require.NoError(t, err)
	sum, err := BaseModelSHA256()
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(root, "basemodel-"+sum[:12]), dir)

	pool := kernels.NewPool(1)
	defer pool.Close()
	m, err := checkpoint.Load(ctx, dir, pool)
	require.NoError(t, err)
	tok, err := tokenizer.LoadDir(dir)
	require.NoError(t, err)
	assert.Equal(t, tok.VocabSize(), m.Config.VocabSize, "tokenizer and model agree")
	assert.GreaterOrEqual(t, tok.EOT(), int32(0), "the chat template's end-of-turn exists")
	var size int64
	for _, f := range BaseModelFiles() {
		st, err := os.Stat(filepath.Join(dir, f))
		require.NoError(t, err)
		size += st.Size()
	}
	assert.Less(t, size, int64(8<<20), "a few MB at most")

	// A second call reuses the copy; a damaged copy is rewritten.
	again, err := WriteBaseModel(root)
	require.NoError(t, err)
	assert.Equal(t, dir, again)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644))
	fixed, err := WriteBaseModel(root)
	require.NoError(t, err)
	_, err = checkpoint.Load(ctx, fixed, pool)
	require.NoError(t, err)
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary directory is left behind")
}
