package faults

import (
	"bytes"
	"context"
	"encoding/base64"
	"net"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/posttrain/posttrain/datastore"
)

// dsnSecret is a password that must never appear in payloads, snapshots or output.
const dsnSecret = "s3cr3t-hunter2"

// withSecret returns dsn as a URL carrying dsnSecret (the test server trusts local
// connections, so the password is accepted and ignored).
func withSecret(t *testing.T, dsn string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	require.NoError(t, err)
	u := url.URL{Scheme: "postgres", User: url.UserPassword(cfg.User, dsnSecret),
		Host: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), Path: "/" + cfg.Database, RawQuery: "sslmode=disable"}
	return u.String()
}

// TestNoSecretsInPayloadsSnapshotsOrLogs starts a run from the command line while the
// worker's and the client's DSN carry a password (a --set datastore.url override is
// refused before anything is sent), and checks that the password appears in no workflow or activity payload of the history,
// not in the run's config snapshot in PostgreSQL, and not in the worker's or the
// client's output.
func TestNoSecretsInPayloadsSnapshotsOrLogs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	base := tinyBase(t)
	p := newPipeline(t, "secrets")
	secretDSN := withSecret(t, p.spec.dsn)
	p.spec.dsn = secretDSN
	w := p.spec.start(t)

	bin := env.bin.get(t, env.binDir)
	runStart := func(extra ...string) (string, error) {
		args := append([]string{"run", "start", "--id", p.runID,
			"--temporal-address", env.server.GetFrontendHostPort(), "--namespace", env.server.GetDefaultNamespace(),
			"--preset", "demo", "--rounds", "1", "--set", "temporal.task_queue=" + p.spec.queue,
			"--set", "model.base=" + base}, extra...)
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = append(os.Environ(), "POSTTRAIN_DATABASE_URL="+secretDSN, "HOME="+p.dataDir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	// A DSN given as a per-run override would be stored in the history: refused.
	out, err := runStart("--set", "datastore.url="+secretDSN)
	require.Error(t, err)
	assert.Contains(t, out, "datastore.url cannot be set per run")
	assert.NotContains(t, out, dsnSecret)
	_, err = env.server.GetDefaultClient().DescribeWorkflowExecution(ctx, p.runID, "")
	require.Error(t, err, "the refused run must not have started")

	out, err = runStart()
	require.NoError(t, err, out)
	assert.NotContains(t, out, dsnSecret)

	// Wait for the config snapshot, then stop the run: the payloads so far are enough.
	c := env.server.GetDefaultClient()
	db := datastore.New(p.pool)
	waitFor(t, "the run's config snapshot", 3*time.Minute, func() (bool, error) {
		_, err := db.GetRun(ctx, p.runID)
		return err == nil, nil
	})
	run, err := db.GetRun(ctx, p.runID)
	require.NoError(t, err)
	assert.NotContains(t, string(run.Config), dsnSecret, "config snapshot in the runs table")
	time.Sleep(2 * time.Second) // let a first stage start and heartbeat
	require.NoError(t, c.TerminateWorkflow(ctx, p.runID, "", "secrets test done"))

	var payloads strings.Builder
	ids := []string{p.runID, p.runID + "-round-1"}
	for _, id := range ids {
		it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				break // the round may not have started
			}
			b, err := protojson.Marshal(e)
			require.NoError(t, err)
			payloads.Write(b)
		}
	}
	require.NotEmpty(t, payloads.String())
	// Payloads are base64 JSON in protojson; check the decoded form as well as the raw.
	hist := decodePayloads(payloads.String())
	assert.Contains(t, hist, "model.base", "the history was decoded (the run input is in it)")
	assert.NotContains(t, hist, dsnSecret, "workflow history payloads")
	assert.NotContains(t, w.out.String(), dsnSecret, "worker output")
}

// payloadData matches the base64 data field of a payload in protojson.
var payloadData = regexp.MustCompile(`"data":"([A-Za-z0-9+/=]*)"`)

// decodePayloads returns the protojson text followed by every payload's decoded data.
func decodePayloads(js string) string {
	var b strings.Builder
	b.WriteString(js)
	for _, m := range payloadData.FindAllStringSubmatch(js, -1) {
		if raw, err := base64.StdEncoding.DecodeString(m[1]); err == nil {
			b.WriteByte('\n')
			b.Write(raw)
		}
	}
	return b.String()
}
