package pgserver

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeInstall writes executable stand-ins for the named programs into dir.
func fakeInstall(t *testing.T, dir string, progs ...string) {
	require.NoError(t, os.MkdirAll(dir, 0o755))
	for _, p := range progs {
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte("#!/bin/sh\n"), 0o755))
	}
}

func TestFindBinaries(t *testing.T) {
	root := t.TempDir()
	lib := filepath.Join(root, "lib")
	fakeInstall(t, filepath.Join(lib, "9", "bin"), "initdb", "pg_ctl", "postgres")
	fakeInstall(t, filepath.Join(lib, "16", "bin"), "initdb", "pg_ctl", "postgres")
	fakeInstall(t, filepath.Join(lib, "17", "bin"), "initdb", "pg_ctl") // incomplete: no postgres
	glob := filepath.Join(lib, "*", "bin")

	// PATH holding symlinks into one installation wins over the versioned dirs.
	pathDir := filepath.Join(root, "path")
	require.NoError(t, os.MkdirAll(pathDir, 0o755))
	for _, p := range serverPrograms {
		require.NoError(t, os.Symlink(filepath.Join(lib, "9", "bin", p), filepath.Join(pathDir, p)))
	}
	notExec := filepath.Join(root, "notexec")
	require.NoError(t, os.MkdirAll(notExec, 0o755))
	for _, p := range serverPrograms {
		require.NoError(t, os.WriteFile(filepath.Join(notExec, p), nil, 0o644))
	}

	tests := []struct {
		name    string
		path    string
		glob    string
		wantDir string
	}{
		{"highest complete version from the lib glob", "", glob, filepath.Join(lib, "16", "bin")},
		{"PATH first, symlinks resolved", pathDir, glob, filepath.Join(lib, "9", "bin")},
		{"non-executable files are ignored", notExec, glob, filepath.Join(lib, "16", "bin")},
		{"nothing anywhere", filepath.Join(root, "empty"), filepath.Join(root, "none", "*", "bin"), ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := findBinaries(tc.path, tc.glob)
			if tc.wantDir == "" {
				require.ErrorIs(t, err, ErrNoBinaries)
				assert.Contains(t, err.Error(), "apt-get install -y postgresql")
				assert.Contains(t, err.Error(), "POSTTRAIN_DATABASE_URL")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantDir, b.Dir)
			assert.Equal(t, filepath.Join(tc.wantDir, "postgres"), b.Postgres)
			assert.Equal(t, filepath.Join(tc.wantDir, "initdb"), b.InitDB)
			assert.Equal(t, filepath.Join(tc.wantDir, "pg_ctl"), b.PgCtl)
		})
	}
}

func TestVersionOf(t *testing.T) {
	for dir, want := range map[string]int{
		"/usr/lib/postgresql/15/bin":  15,
		"/usr/lib/postgresql/9.6/bin": 9,
		"/usr/local/bin":              -1,
	} {
		assert.Equal(t, want, versionOf(dir), dir)
	}
}

func TestLookupAccountMissingUser(t *testing.T) {
	_, err := lookupAccount("posttrain-no-such-user")
	require.Error(t, err)
	for _, want := range []string{"refuses to run as root", "posttrain-no-such-user", "apt-get install -y postgresql", "useradd --system", "POSTTRAIN_DATABASE_URL"} {
		assert.Contains(t, err.Error(), want)
	}
}

func TestCheckReachable(t *testing.T) {
	// An account that owns nothing here and is in no group of ours.
	a := &account{name: "someone", uid: 54321, gid: 54321}
	base := t.TempDir()
	require.NoError(t, os.Chmod(base, 0o755))
	require.NoError(t, os.Chmod(filepath.Dir(base), 0o755))
	open := filepath.Join(base, "open", "data")
	require.NoError(t, os.MkdirAll(open, 0o755))
	assert.NoError(t, a.checkReachable(open))

	closed := filepath.Join(base, "closed")
	require.NoError(t, os.MkdirAll(filepath.Join(closed, "data"), 0o755))
	require.NoError(t, os.Chmod(closed, 0o700))
	err := a.checkReachable(filepath.Join(closed, "data"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), closed+" has mode 0700")
	assert.Contains(t, err.Error(), "chmod o+x "+closed)

	// Search permission alone (no read) is enough.
	require.NoError(t, os.Chmod(closed, 0o711))
	assert.NoError(t, a.checkReachable(filepath.Join(closed, "data")))
}
