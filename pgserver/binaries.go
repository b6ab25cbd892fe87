package pgserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ErrNoBinaries is returned (wrapped) when the PostgreSQL server programs are not
// installed; the message says which Debian package to install.
var ErrNoBinaries = errors.New("PostgreSQL server binaries not found")

// InstallHint is the command that installs the server binaries on Debian and Ubuntu.
const InstallHint = "apt-get install -y postgresql"

// DefaultLibGlob is where Debian's postgresql packages put versioned server binaries.
const DefaultLibGlob = "/usr/lib/postgresql/*/bin"

// Binaries are the server programs Start needs, all from one installation.
type Binaries struct {
	Dir      string
	InitDB   string
	PgCtl    string
	Postgres string
}

var serverPrograms = []string{"initdb", "pg_ctl", "postgres"}

// FindBinaries locates initdb, pg_ctl and postgres: first through PATH (following
// symlinks, so /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin counts), then in
// DefaultLibGlob, highest major version first. All three must sit in one directory
// so they come from the same release.
func FindBinaries() (Binaries, error) {
	return findBinaries(os.Getenv("PATH"), DefaultLibGlob)
}

func findBinaries(pathEnv, libGlob string) (Binaries, error) {
	var dirs []string
	for _, prog := range serverPrograms {
		p, err := lookPathIn(prog, pathEnv)
		if err != nil {
			continue
		}
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		dirs = append(dirs, filepath.Dir(p))
	}
	libDirs, _ := filepath.Glob(libGlob) // the pattern is constant and well formed
	slices.SortFunc(libDirs, func(a, b string) int { return versionOf(b) - versionOf(a) })
	dirs = append(dirs, libDirs...)
	seen := map[string]bool{}
	for _, d := range dirs {
		if seen[d] {
			continue
		}
		seen[d] = true
		if b, ok := binariesIn(d); ok {
			return b, nil
		}
	}
	return Binaries{}, fmt.Errorf("%w (looked for %s in PATH and %s): install them with `%s` (Debian/Ubuntu), or set POSTTRAIN_DATABASE_URL to use a running server",
		ErrNoBinaries, strings.Join(serverPrograms, ", "), libGlob, InstallHint)
}

// lookPathIn is exec.LookPath against an explicit PATH value.
func lookPathIn(prog, pathEnv string) (string, error) {
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, prog)
		if isExecutable(p) {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}

func binariesIn(dir string) (Binaries, bool) {
	b := Binaries{
		Dir:      dir,
		InitDB:   filepath.Join(dir, "initdb"),
		PgCtl:    filepath.Join(dir, "pg_ctl"),
		Postgres: filepath.Join(dir, "postgres"),
	}
	return b, isExecutable(b.InitDB) && isExecutable(b.PgCtl) && isExecutable(b.Postgres)
}

var versionDir = regexp.MustCompile(`/(\d+)(?:\.\d+)?/bin$`)

// versionOf returns the major version in a path like /usr/lib/postgresql/15/bin.
func versionOf(dir string) int {
	m := versionDir.FindStringSubmatch(filepath.ToSlash(dir))
	if m == nil {
		return -1
	}
	v, _ := strconv.Atoi(m[1])
	return v
}

var versionOutput = regexp.MustCompile(`\(PostgreSQL\) (\d+)(?:\.(\d+))?`)

// MajorVersion runs `postgres --version` and returns the major version (e.g. 15).
func (b Binaries) MajorVersion() (int, error) {
	out, err := exec.Command(b.Postgres, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", b.Postgres, err)
	}
	m := versionOutput.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("%s --version: unrecognised output %q", b.Postgres, strings.TrimSpace(string(out)))
	}
	v, _ := strconv.Atoi(string(m[1]))
	return v, nil
}
