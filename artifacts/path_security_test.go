package artifacts_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/internal/pgtest"
)

// hostileKeys try to name files outside the store root.
var hostileKeys = []string{
	"../secret",
	"../../secret",
	"/etc/passwd",
	"blobs/../../secret",
	"..%2f..%2fsecret",
	"ab/../../../secret",
	strings.Repeat("../", 20) + "etc/passwd",
	"0000000000000000000000000000000000000000000000000000000000000000/../../secret",
	"\x00",
	"",
}

// storesUnderTest returns an fs store rooted in a fresh directory (with a secret file
// next to the root) and a PostgreSQL store.
func storesUnderTest(t *testing.T) (map[string]artifacts.Store, string) {
	t.Helper()
	parent := t.TempDir()
	secret := filepath.Join(parent, "secret")
	require.NoError(t, os.WriteFile(secret, []byte("top secret"), 0o600))
	fs, err := artifacts.NewFS(filepath.Join(parent, "store"))
	require.NoError(t, err)
	pg, err := artifacts.NewPG(pgtest.NewDB(t), 0)
	require.NoError(t, err)
	return map[string]artifacts.Store{"fs": fs, "postgres": pg}, secret
}

// TestKeysCannotEscapeStoreRoot: every read path rejects a key that is not a sha256
// before it touches the filesystem or a query.
func TestKeysCannotEscapeStoreRoot(t *testing.T) {
	stores, _ := storesUnderTest(t)
	ctx := context.Background()
	for name, s := range stores {
		for _, key := range hostileKeys {
			t.Run(name+"/"+strings.ReplaceAll(key, "/", "_"), func(t *testing.T) {
				rc, err := s.Open(ctx, key)
				if err == nil {
					rc.Close()
				}
				assert.Error(t, err, "Open")
				_, err = s.Stat(ctx, key)
				assert.Error(t, err, "Stat")
				ok, err := s.Has(ctx, key)
				assert.False(t, ok && err == nil, "Has must not find %q", key)
				assert.Error(t, s.Verify(ctx, key), "Verify")
				_, err = s.GetDir(ctx, key, filepath.Join(t.TempDir(), "out"))
				assert.Error(t, err, "GetDir")
			})
		}
	}
}

// TestHostileManifestCannotWriteOutsideDest stores a manifest blob whose file paths
// climb out of the destination, and checks GetDir refuses it and writes nothing
// outside the destination.
func TestHostileManifestCannotWriteOutsideDest(t *testing.T) {
	stores, _ := storesUnderTest(t)
	ctx := context.Background()
	payload := []byte("escaped!")
	for name, s := range stores {
		ref, err := s.Put(ctx, bytes.NewReader(payload))
		require.NoError(t, err)
		for _, p := range []string{"../escape", "../../escape", "/tmp/escape", "a/../../escape", "a\\..\\..\\escape", "./escape"} {
			t.Run(name+"/"+strings.ReplaceAll(p, "/", "_"), func(t *testing.T) {
				// Built by hand: Canonical would refuse these paths.
				m := `{"format":"` + artifacts.ManifestFormat + `","files":[{"path":` + strconv.Quote(p) +
					`,"sha256":"` + ref.SHA256 + `","size":` + strconv.Itoa(len(payload)) + `}]}`
				mref, err := s.Put(ctx, strings.NewReader(m))
				require.NoError(t, err)
				_, err = artifacts.ParseManifest([]byte(m))
				require.Error(t, err, "ParseManifest must reject %q", p)

				work := t.TempDir()
				dest := filepath.Join(work, "sub", "dest")
				require.NoError(t, os.MkdirAll(filepath.Dir(dest), 0o755))
				_, err = s.GetDir(ctx, mref.SHA256, dest)
				require.Error(t, err)
				_, err = artifacts.VerifyDir(ctx, s, mref.SHA256)
				require.Error(t, err)
				// Nothing named escape anywhere under the work directory or /tmp.
				require.NoError(t, filepath.WalkDir(work, func(path string, d os.DirEntry, err error) error {
					require.NoError(t, err)
					assert.NotEqual(t, "escape", d.Name(), "file written at %s", path)
					return nil
				}))
				_, err = os.Stat("/tmp/escape")
				assert.True(t, os.IsNotExist(err), "/tmp/escape must not be written")
			})
		}
	}
}

// TestValidatePathRejectsEscapes covers the path checker the manifest relies on.
func TestValidatePathRejectsEscapes(t *testing.T) {
	for _, p := range []string{"..", "../x", "a/../../x", "/abs", "a\\b", "a/./b", "a//b", "", ".", "a\x00b", "a/.."} {
		assert.Error(t, artifacts.ValidatePath(p), "%q", p)
	}
	for _, p := range []string{"config.json", "a/b/c.bin", "..hidden", "a..b"} {
		assert.NoError(t, artifacts.ValidatePath(p), "%q", p)
	}
}
