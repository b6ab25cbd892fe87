// Package badinputs runs the bad-input corpus in testdata/badinputs through the real
// posttrain binary: every case must fail with a clear error naming the problem and where
// it is, never panic, never print a DSN password, and leave PostgreSQL untouched.
package badinputs

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
)

// corpusCase is one entry of testdata/badinputs/manifest.json.
type corpusCase struct {
	Name   string   `json:"name"`
	Args   []string `json:"args"`
	Expect []string `json:"expect"`
	Note   string   `json:"note,omitempty"`
}

type manifest struct {
	Doc   string       `json:"doc"`
	Cases []corpusCase `json:"cases"`
}

// secretPassword appears in corpus files and in the database URL given to the binary;
// it must never be printed.
const secretPassword = "hunter2secret"

func corpusDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "testdata", "badinputs"))
	require.NoError(t, err)
	return dir
}

// buildBinary compiles cmd/posttrain once for the test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "posttrain")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/posttrain/posttrain/cmd/posttrain")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)
	return bin
}

type result struct {
	code           int
	stdout, stderr string
}

func run(t *testing.T, bin, workDir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = workDir
	// Keep the user's environment from changing the config under test.
	cmd.Env = append(os.Environ(), "POSTTRAIN_DATABASE_URL=", "HOME="+workDir)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err, "run %v", args)
	}
	return result{code: code, stdout: so.String(), stderr: se.String()}
}

// tableCounts returns the row count of every table in the database's public schema.
func tableCounts(t *testing.T, pool *pgxpool.Pool) map[string]int64 {
	t.Helper()
	ctx := context.Background()
	rows, err := pool.Query(ctx, `SELECT table_name FROM information_schema.tables
		WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`)
	require.NoError(t, err)
	var names []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, names, "migrated database has no tables")
	counts := make(map[string]int64, len(names))
	for _, n := range names {
		var c int64
		// Table names come from the catalog, quoted as identifiers: not user input.
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM "`+strings.ReplaceAll(n, `"`, `""`)+`"`).Scan(&c))
		counts[n] = c
	}
	return counts
}

// withPassword returns dsn as a URL with a password set, so that a leak would show in
// output. The test server trusts local connections, so the password is not checked.
func withPassword(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(cfg.User, secretPassword),
		Host:     net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))),
		Path:     "/" + cfg.Database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

func TestBadInputCorpus(t *testing.T) {
	corpus := corpusDir(t)
	raw, err := os.ReadFile(filepath.Join(corpus, "manifest.json"))
	require.NoError(t, err)
	var m manifest
	require.NoError(t, json.Unmarshal(raw, &m))
	require.NotEmpty(t, m.Cases)

	bin := buildBinary(t)
	work := t.TempDir()

	// Fixtures: a micro causal LM and a reward model trained one step from it.
	micro := filepath.Join(work, "micro")
	r := run(t, bin, work, "model", "init", "--config", filepath.Join(corpus, "micro-config.json"), "--seed", "1", "--out", micro)
	require.Zero(t, r.code, r.stderr)
	rm := filepath.Join(work, "rm")
	r = run(t, bin, work, "reward", "train", "--model", micro, "--train", filepath.Join(corpus, "fixtures", "good_pairs_ids.jsonl"),
		"--out", rm, "--steps", "1", "--warmup", "0", "--batch", "2", "--threads", "1")
	require.Zero(t, r.code, r.stderr)

	dsn := pgtest.NewEmptyDatabase(t)
	pool := pgtest.Open(t, dsn)
	require.NoError(t, datastore.Migrate(context.Background(), pool))
	dbURL := withPassword(t, dsn)

	expand := func(a string) string {
		return strings.NewReplacer("{corpus}", corpus, "{db}", dbURL, "{micro}", micro, "{rm}", rm).Replace(a)
	}

	// Control: a good file does write rows, so the unchanged counts below mean something.
	before := tableCounts(t, pool)
	r = run(t, bin, work, "data", "import", "--database-url", dbURL, "--kind", "preferences", "--dataset", "control",
		filepath.Join(corpus, "fixtures", "good_pairs_ids.jsonl"))
	require.Zero(t, r.code, r.stderr)
	after := tableCounts(t, pool)
	assert.Equal(t, before["preference_pairs"]+2, after["preference_pairs"], "control import must add its 2 rows")

	// The DSN password never shows: config show (YAML and JSON, from --set and from the
	// environment) and a failed connection.
	secretURL := "postgres://alice:" + secretPassword + "@127.0.0.1:1/pt?sslmode=disable"
	for _, args := range [][]string{
		{"config", "show", "--set", "datastore.url=" + secretURL},
		{"config", "show", "--json", "--set", "datastore.url=" + secretURL},
		{"migrate", "--database-url", secretURL},
		{"data", "import", "--kind", "prompts", "--database-url", secretURL, filepath.Join(corpus, "fixtures", "good_pairs_ids.jsonl")},
	} {
		r := run(t, bin, work, args...)
		out := r.stdout + r.stderr
		assert.NotContains(t, out, secretPassword, "%v", args[:2])
		if args[0] == "config" {
			assert.Zero(t, r.code, r.stderr)
			assert.Contains(t, out, "alice:xxxxx@", "the DSN is shown redacted")
		} else {
			assert.Equal(t, 1, r.code, "connection refused is an error")
			assert.Contains(t, out, "127.0.0.1:1")
		}
	}

	seen := map[string]bool{}
	for _, c := range m.Cases {
		require.False(t, seen[c.Name], "duplicate case %s", c.Name)
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			require.NotEmpty(t, c.Expect, "case needs expected substrings")
			args := make([]string, len(c.Args))
			for i, a := range c.Args {
				args[i] = expand(a)
			}
			before := tableCounts(t, pool)
			r := run(t, bin, work, args...)
			after := tableCounts(t, pool)

			assert.NotZero(t, r.code, "must fail; stdout: %s", r.stdout)
			assert.Equal(t, 1, r.code, "an input error exits 1 (2 would be a Go panic)")
			out := r.stdout + r.stderr
			for _, sub := range c.Expect {
				assert.Contains(t, r.stderr, sub, "error must name %q", sub)
			}
			for _, bad := range []string{"panic:", "goroutine ", "runtime error", secretPassword} {
				assert.NotContains(t, out, bad)
			}
			assert.LessOrEqual(t, strings.Count(strings.TrimSpace(r.stderr), "\n"), 2,
				"the error is a short message, not a dump: %s", r.stderr)
			assert.Equal(t, before, after, "no rows may be written")
		})
	}
}
