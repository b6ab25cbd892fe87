package jsonl_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/datastore/jsonl"
	"github.com/posttrain/posttrain/internal/pgtest"
)

// TestImportLineLimitByDefault: an import with default options (what `annotations
// submit` and `data import` use) refuses a line over DefaultMaxLineBytes, naming the
// line, and imports nothing of the file.
func TestImportLineLimitByDefault(t *testing.T) {
	pool := pgtest.NewDB(t)
	s := datastore.New(pool)
	path := filepath.Join(t.TempDir(), "annotations.jsonl")
	huge := `{"prompt":"` + strings.Repeat("a", jsonl.DefaultMaxLineBytes) + `","chosen":"b","rejected":"c"}`
	body := `{"prompt":"p","chosen":"b","rejected":"c"}` + "\n" + huge + "\n"
	require.NoError(t, os.WriteFile(path, []byte(body), 0o644))
	_, err := jsonl.ImportFile(context.Background(), s, path, jsonl.ImportOptions{Kind: datastore.KindPreferences, Dataset: "ann"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "annotations.jsonl:2")
	assert.Contains(t, err.Error(), "longer than "+strconv.Itoa(jsonl.DefaultMaxLineBytes)+" bytes")
	var n int64
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM preference_pairs`).Scan(&n))
	assert.Zero(t, n, "nothing of the file is imported")
}
