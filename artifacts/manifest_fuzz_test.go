package artifacts_test

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/artifacts"
)

// FuzzParseManifest feeds arbitrary bytes to ParseManifest, the gate between a stored
// blob and files written to disk: it must never panic, and a manifest it accepts must
// be canonical, name only safe relative paths, and hash to its ID.
func FuzzParseManifest(f *testing.F) {
	sha := artifacts.SumBytes([]byte("x"))
	good := artifacts.Manifest{Files: []artifacts.FileEntry{{Path: "config.json", SHA256: sha, Size: 1}, {Path: "sub/model.safetensors", SHA256: sha, Size: 1}}}
	canon, err := good.Canonical()
	require.NoError(f, err)
	f.Add(canon)
	f.Add(bytes.Replace(canon, []byte("config.json"), []byte("../escape"), 1))
	f.Add([]byte(`{"format":"` + artifacts.ManifestFormat + `","files":[{"path":"a","sha256":"` + sha + `","size":-1}]}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := artifacts.ParseManifest(data)
		if err != nil {
			return
		}
		require.NotEmpty(t, m.Files)
		for _, e := range m.Files {
			require.NoError(t, artifacts.ValidatePath(e.Path))
			require.NoError(t, artifacts.ValidateSHA256(e.SHA256))
			require.GreaterOrEqual(t, e.Size, int64(0))
		}
		again, err := m.Canonical()
		require.NoError(t, err)
		require.Equal(t, data, again, "accepted manifests are canonical")
		require.Equal(t, artifacts.SumBytes(data), m.ID)
	})
}
