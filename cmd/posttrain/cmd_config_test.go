package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/internal/pgtest"
)

// runDSCLI runs the CLI in-process with a clean config environment and returns stdout.
func runDSCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	t.Setenv(datastore.EnvDatabaseURL, "")
	t.Setenv("POSTTRAIN_DATA_DIR", t.TempDir()) // no private cluster to find
	out, _, err := runCLI(t, args...)
	return out, err
}

func TestConfigShow(t *testing.T) {
	out, err := runDSCLI(t, "config", "show")
	require.NoError(t, err)
	assert.Contains(t, out, "rounds: 6\n")
	assert.Contains(t, out, "  beta: 0.1\n")
	assert.Contains(t, out, "  nll_norm: per-sequence-mean\n")

	out, err = runDSCLI(t, "config", "show", "--preset", "demo", "--set", "dpo.beta=0.25",
		"--set", "datastore.url=postgres://alice:s3cret@db:5432/pt", "--json")
	require.NoError(t, err)
	var c struct {
		DPO       map[string]any `json:"dpo"`
		Sampling  map[string]any `json:"sampling"`
		Datastore map[string]any `json:"datastore"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &c))
	assert.Equal(t, 0.25, c.DPO["beta"])
	assert.Equal(t, float64(8), c.Sampling["k"], "the demo preset")
	assert.Equal(t, "postgres://alice:xxxxx@db:5432/pt", c.Datastore["url"])
	assert.NotContains(t, out, "s3cret")

	_, err = runDSCLI(t, "config", "show", "--set", "dpo.beta=0")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "dpo.beta: must be > 0")

	_, err = runDSCLI(t, "config", "show", "--set", "dpo.betta=1")
	require.ErrorContains(t, err, "unknown key dpo.betta")

	cfgFile := filepath.Join(t.TempDir(), "c.yaml")
	require.NoError(t, os.WriteFile(cfgFile, []byte("sampling:\n  k: 30\n"), 0o600))
	out, err = runDSCLI(t, "config", "show", "--config", cfgFile)
	require.NoError(t, err)
	assert.Contains(t, out, "  k: 30\n")
}

func TestConfigPresetsAndKeys(t *testing.T) {
	out, err := runDSCLI(t, "config", "presets")
	require.NoError(t, err)
	assert.Contains(t, out, "default")
	assert.Contains(t, out, "demo ")
	out, err = runDSCLI(t, "config", "presets", "--json")
	require.NoError(t, err)
	var ps []presetInfo
	require.NoError(t, json.Unmarshal([]byte(out), &ps))
	require.GreaterOrEqual(t, len(ps), 2)
	assert.NotEmpty(t, ps[0].Description)

	out, err = runDSCLI(t, "config", "keys")
	require.NoError(t, err)
	assert.Contains(t, out, "POSTTRAIN_DPO_BETA")
	assert.Contains(t, out, "list of int")
}

func TestMigrateCLI(t *testing.T) {
	dsn := pgtest.NewEmptyDatabase(t)
	out, err := runDSCLI(t, "migrate", "--database-url", dsn)
	require.NoError(t, err)
	assert.Contains(t, out, "applied 0001_runs.sql")
	assert.Contains(t, out, "schema now at version")

	out, err = runDSCLI(t, "migrate", "--database-url", dsn, "--json")
	require.NoError(t, err)
	var res struct {
		Applied  []string `json:"applied"`
		Versions []int    `json:"versions"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Empty(t, res.Applied, "the second run is a no-op")
	assert.GreaterOrEqual(t, len(res.Versions), 5)

	_, err = runDSCLI(t, "migrate")
	require.ErrorContains(t, err, "no database configured")

	_, err = runDSCLI(t, "migrate", "--database-url", "postgres://alice:s3cret@127.0.0.1:1/x?connect_timeout=2")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret")
}

func TestDataCLI(t *testing.T) {
	dsn := pgtest.NewEmptyDatabase(t)
	dir := t.TempDir()
	good := filepath.Join(dir, "pairs.jsonl")
	require.NoError(t, os.WriteFile(good, []byte(
		`{"prompt": "2+2?", "chosen": "4", "rejected": "5"}`+"\n"+
			`{"prompt": [{"role": "user", "content": "3+3?"}], "chosen": [{"role": "assistant", "content": "6"}], "rejected": [{"role": "assistant", "content": "7"}], "split": "eval"}`+"\n"), 0o600))
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte(
		`{"prompt": "2+2?", "chosen": "4", "rejected": "5"}`+"\n"+`{"prompt": "x", "chosen": "", "rejected": "5"}`+"\n"), 0o600))

	// A bad file names its line and imports nothing (the schema is migrated on import).
	_, err := runDSCLI(t, "data", "import", "--kind", "preferences", bad, "--database-url", dsn)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad.jsonl:2: field chosen: empty response")
	out, err := runDSCLI(t, "data", "list", "--json", "--database-url", dsn)
	require.NoError(t, err)
	assert.JSONEq(t, "[]", out)

	out, err = runDSCLI(t, "data", "import", "--kind", "preferences", good, "--database-url", dsn)
	require.NoError(t, err)
	assert.Contains(t, out, `dataset "pairs" (preferences): 2 rows, 2 new, 0 already present`)
	out, err = runDSCLI(t, "data", "import", "--kind", "preferences", good, "--database-url", dsn, "--json")
	require.NoError(t, err)
	var res map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &res))
	assert.Equal(t, float64(0), res["inserted"])
	assert.Equal(t, float64(2), res["duplicates"])

	out, err = runDSCLI(t, "data", "list", "--database-url", dsn)
	require.NoError(t, err)
	assert.Contains(t, out, "pairs")
	assert.Contains(t, out, "preferences")

	exported := filepath.Join(dir, "out.jsonl")
	out, err = runDSCLI(t, "data", "export", "--kind", "preferences", "--dataset", "pairs", exported, "--database-url", dsn)
	require.NoError(t, err)
	assert.Contains(t, out, "exported 2 rows")
	b, err := os.ReadFile(exported)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 2)
	assert.JSONEq(t, `{"prompt": "2+2?", "chosen": "4", "rejected": "5"}`, lines[0])

	out, err = runDSCLI(t, "data", "export", "--kind", "preferences", "--dataset", "pairs", "--split", "eval", "-", "--database-url", dsn)
	require.NoError(t, err)
	assert.Contains(t, out, `"split":"eval"`)
	assert.Equal(t, 1, strings.Count(out, "\n"))

	_, err = runDSCLI(t, "data", "export", "--kind", "sft", "--dataset", "pairs", "-", "--database-url", dsn)
	require.ErrorContains(t, err, `dataset "pairs" holds preferences, not sft`)
	_, err = runDSCLI(t, "data", "import", good, "--database-url", dsn)
	require.ErrorContains(t, err, "--kind is required")
	_, err = runDSCLI(t, "data", "import", "--kind", "pairs", good, "--database-url", dsn)
	require.ErrorContains(t, err, `--kind "pairs"`)
}

func TestRunsCLI(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewDB(t)
	dsn := pool.Config().ConnString()
	s := datastore.New(pool)
	_, err := s.CreateRun(ctx, datastore.Run{ID: "run-a", WorkflowID: "posttrain-run-a", Preset: "demo", Config: json.RawMessage(`{"rounds":2}`)})
	require.NoError(t, err)
	_, err = s.CreateRun(ctx, datastore.Run{ID: "run-b", Preset: "default"})
	require.NoError(t, err)
	_, err = s.StartRound(ctx, "run-a", 1, "model-base")
	require.NoError(t, err)
	st, err := s.StartStage(ctx, datastore.StageKey{RunID: "run-a", Round: 1, Kind: datastore.StageSFT, Variant: "0"}, 1)
	require.NoError(t, err)
	require.NoError(t, s.SaveCheckpoint(ctx, st.ID, "checkpoint-1", 20))
	require.NoError(t, s.RecordMetrics(ctx, []datastore.Metric{
		{RunID: "run-a", Round: 1, Stage: "sft", Variant: "0", Step: 10, Name: "loss", Value: 2.5},
		{RunID: "run-a", Round: 1, Stage: "sft", Variant: "0", Step: 20, Name: "loss", Value: 1.25},
	}))
	_, err = s.RecordArtifact(ctx, datastore.Artifact{Kind: "model", SHA256: strings.Repeat("ab", 32), Size: 10, RunID: "run-a", Round: 1, ProducedBy: st.ID})
	require.NoError(t, err)

	out, err := runDSCLI(t, "runs", "list", "--database-url", dsn)
	require.NoError(t, err)
	assert.Contains(t, out, "run-a")
	assert.Contains(t, out, "run-b")

	out, err = runDSCLI(t, "runs", "list", "--json", "--database-url", dsn)
	require.NoError(t, err)
	var runs []datastore.Run
	require.NoError(t, json.Unmarshal([]byte(out), &runs))
	assert.Len(t, runs, 2)

	out, err = runDSCLI(t, "runs", "show", "run-a", "--database-url", dsn)
	require.NoError(t, err)
	for _, want := range []string{"posttrain-run-a", "ROUNDS", "model-base", "STAGES", "checkpoint-1@20", "FINAL METRICS", "1.25", "ARTIFACTS", "model-abababab"} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "2.5", "only the final value of a metric")

	out, err = runDSCLI(t, "runs", "show", "run-a", "--json", "--database-url", dsn)
	require.NoError(t, err)
	var d runDetails
	require.NoError(t, json.Unmarshal([]byte(out), &d))
	assert.Equal(t, "run-a", d.Run.ID)
	assert.JSONEq(t, `{"rounds":2}`, string(d.Run.Config))
	require.Len(t, d.Stages, 1)
	assert.Equal(t, int64(20), d.Stages[0].CheckpointStep)
	require.Len(t, d.Metrics, 1)
	require.Len(t, d.Artifacts, 1)

	_, err = runDSCLI(t, "runs", "show", "nope", "--database-url", dsn)
	require.ErrorIs(t, err, datastore.ErrNotFound)

	// An unmigrated database gets a hint.
	empty := pgtest.NewEmptyDatabase(t)
	_, err = runDSCLI(t, "runs", "list", "--database-url", empty)
	require.ErrorContains(t, err, "posttrain migrate")
}
