package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/internal/pgtest"
)

// runPosttrain runs the CLI in-process and returns stdout and the error.
func runPosttrain(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := runCLI(t, args...)
	return out, err
}

func TestArtifactsCLI(t *testing.T) {
	dsn := pgtest.NewEmptyDatabase(t)
	storeRoot := filepath.Join(t.TempDir(), "store")
	common := []string{"--database-url", dsn, "--artifact-root", storeRoot}
	run := func(args ...string) (string, error) { return runPosttrain(t, append(args, common...)...) }

	model := t.TempDir()
	weights := bytes.Repeat([]byte{7, 1, 3}, 50_000)
	require.NoError(t, os.WriteFile(filepath.Join(model, "config.json"), []byte(`{"dim": 16}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(model, "model.safetensors"), weights, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(model, "tokenizer.json"), []byte(`{}`), 0o644))

	out, err := run("artifacts", "put", model, "--kind", "model", "--meta", "stage=sft", "--json")
	require.NoError(t, err)
	var put struct{ ID, Kind, URI, SHA256 string }
	require.NoError(t, json.Unmarshal([]byte(out), &put))
	assert.Equal(t, "model", put.Kind)
	assert.True(t, strings.HasPrefix(put.ID, "model-"), put.ID)
	assert.Equal(t, "fs:"+put.SHA256, put.URI)

	out, err = run("artifacts", "list")
	require.NoError(t, err)
	assert.Contains(t, out, "ID")
	assert.Contains(t, out, put.ID)
	out, err = run("artifacts", "list", "--kind", "dataset", "--json")
	require.NoError(t, err)
	assert.JSONEq(t, "[]", out)

	out, err = run("artifacts", "show", put.ID)
	require.NoError(t, err)
	for _, want := range []string{put.SHA256, "model.safetensors", "Parents: none", `"stage": "sft"`} {
		assert.Contains(t, out, want)
	}
	out, err = run("artifacts", "show", put.ID, "--json")
	require.NoError(t, err)
	var shown struct {
		Directory bool
		Files     []struct{ Path string }
		Parents   []any
	}
	require.NoError(t, json.Unmarshal([]byte(out), &shown))
	assert.True(t, shown.Directory)
	assert.Len(t, shown.Files, 3)
	assert.NotNil(t, shown.Parents, "parents is [] in JSON, not null")

	dest := filepath.Join(t.TempDir(), "m")
	out, err = run("artifacts", "get", put.ID, "--out", dest)
	require.NoError(t, err)
	assert.Contains(t, out, "verified")
	got, err := os.ReadFile(filepath.Join(dest, "model.safetensors"))
	require.NoError(t, err)
	assert.Equal(t, weights, got)

	out, err = run("artifacts", "verify")
	require.NoError(t, err)
	assert.Contains(t, out, "1 artifacts verified")

	// Damage the weights blob: verify must fail and say which file.
	blob := filepath.Join(storeRoot, "blobs", "sha256")
	var weightsBlob string
	require.NoError(t, filepath.Walk(blob, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() == int64(len(weights)) {
			weightsBlob = p
		}
		return err
	}))
	require.NotEmpty(t, weightsBlob)
	require.NoError(t, os.Chmod(weightsBlob, 0o644))
	require.NoError(t, os.WriteFile(weightsBlob, append([]byte{0}, weights[1:]...), 0o644))
	out, err = run("artifacts", "verify", put.ID)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "1 of 1 artifacts failed verification")
	assert.Contains(t, out, "CORRUPT")
	assert.Contains(t, out, "model.safetensors")

	_, err = run("artifacts", "show", "model-0000000000000000")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "not found")
}

func TestArtifactsCLIHidesPassword(t *testing.T) {
	_, err := runPosttrain(t, "artifacts", "list", "--database-url", "postgres://bob:hunter2@127.0.0.1:1/x?sslmode=disable")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "hunter2")
	assert.Contains(t, err.Error(), "bob:xxxxx@")
}

func TestArtifactsCLINeedsDatabaseForIDs(t *testing.T) {
	t.Setenv("POSTTRAIN_DATABASE_URL", "")
	t.Chdir(t.TempDir()) // data_dir .posttrain holds no private cluster here
	_, err := runPosttrain(t, "artifacts", "list")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no database configured")
	assert.Contains(t, err.Error(), "POSTTRAIN_DATABASE_URL")
}
