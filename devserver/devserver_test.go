package devserver

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// startTest starts a server on free ports in dir and closes it when the test ends.
func startTest(t *testing.T, opts Options) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	s, err := Start(ctx, opts)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		assert.NoError(t, s.Close(ctx))
	})
	return s
}

func dialTest(t *testing.T, s *Server) client.Client {
	t.Helper()
	c, err := client.Dial(client.Options{HostPort: s.FrontendAddress(), Namespace: s.Namespace(), Logger: nopLogger()})
	require.NoError(t, err)
	t.Cleanup(c.Close)
	return c
}

func portOf(t *testing.T, hostPort string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostPort)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}

// TestStartServesFrontendAndUI starts a file-backed server on free ports and checks
// the frontend, the namespace's search attributes, the UI (its settings allow starting
// workflows), the data directory lock and the taken-port errors.
func TestStartServesFrontendAndUI(t *testing.T) {
	dir := t.TempDir()
	var errs bytes.Buffer
	s := startTest(t, Options{DataDir: dir, Log: &errs})

	assert.Equal(t, DefaultNamespace, s.Namespace())
	assert.True(t, strings.HasPrefix(s.FrontendAddress(), "127.0.0.1:"), s.FrontendAddress())
	assert.True(t, strings.HasPrefix(s.UIURL(), "http://127.0.0.1:"), s.UIURL())
	assert.Equal(t, filepath.Join(dir, SubDir, DBFileName), s.DBPath())
	assert.FileExists(t, s.DBPath())
	assert.FileExists(t, s.LogPath())
	assert.Equal(t, s.UIURL()+"/namespaces/default/workflows/start-workflow", s.StartWorkflowURL())

	c := dialTest(t, s)
	ctx := context.Background()
	sa, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: s.Namespace()})
	require.NoError(t, err)
	assert.Equal(t, enumspb.INDEXED_VALUE_TYPE_INT, sa.GetCustomAttributes()["PosttrainRound"])
	assert.Equal(t, enumspb.INDEXED_VALUE_TYPE_KEYWORD, sa.GetCustomAttributes()["PosttrainStage"])

	for _, path := range []string{"/", "/namespaces/default/workflows/start-workflow"} {
		resp, err := http.Get(s.UIURL() + path)
		require.NoError(t, err, path)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, string(body), "<html", path)
	}
	resp, err := http.Get(s.UIURL() + "/api/v1/settings")
	require.NoError(t, err)
	var settings struct {
		StartWorkflowDisabled bool
		DefaultNamespace      string
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&settings))
	resp.Body.Close()
	assert.False(t, settings.StartWorkflowDisabled)
	assert.Equal(t, "default", settings.DefaultNamespace)

	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"same data dir", Options{DataDir: dir}, "in use by another process"},
		{"gRPC port taken", Options{DataDir: t.TempDir(), GRPCPort: portOf(t, s.FrontendAddress()), UIPort: NoUI}, "Temporal gRPC port " + strconv.Itoa(portOf(t, s.FrontendAddress())) + " on 127.0.0.1 is already in use"},
		{"UI port taken", Options{DataDir: t.TempDir(), UIPort: portOf(t, strings.TrimPrefix(s.UIURL(), "http://"))}, "Temporal Web UI port"},
		{"no data dir", Options{}, "no data directory"},
		{"bad IP", Options{DataDir: t.TempDir(), IP: "localhost:1"}, "is not an IP address"},
		{"bad port", Options{DataDir: t.TempDir(), GRPCPort: 70000}, "out of range"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(ctx, tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	assert.Empty(t, errs.String(), "a healthy server surfaces no errors")
}

// waitForSignal is the workflow of the restart test: it blocks until signalled.
func waitForSignal(ctx workflow.Context) (string, error) {
	var v string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &v)
	return "got " + v, nil
}

func startWorker(t *testing.T, c client.Client, queue string) worker.Worker {
	t.Helper()
	w := worker.New(c, queue, worker.Options{})
	w.RegisterWorkflowWithOptions(waitForSignal, workflow.RegisterOptions{Name: "WaitForSignal"})
	require.NoError(t, w.Start())
	return w
}

// TestRestartKeepsWorkflowsInFlight starts a workflow that waits for a signal, stops
// the server, starts a new one on the same SQLite file, signals, and sees the workflow
// complete.
func TestRestartKeepsWorkflowsInFlight(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	first, err := Start(ctx, Options{DataDir: dir, UIPort: NoUI})
	require.NoError(t, err)
	c1, err := client.Dial(client.Options{HostPort: first.FrontendAddress(), Logger: nopLogger()})
	require.NoError(t, err)
	w1 := startWorker(t, c1, "restart-test")
	run, err := c1.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "restart-me", TaskQueue: "restart-test"}, "WaitForSignal")
	require.NoError(t, err)
	// Wait until the worker has run the first workflow task (the wait is recorded).
	require.Eventually(t, func() bool {
		d, err := c1.DescribeWorkflowExecution(ctx, "restart-me", "")
		return err == nil && d.GetWorkflowExecutionInfo().GetHistoryLength() >= 4
	}, 30*time.Second, 100*time.Millisecond)
	w1.Stop()
	c1.Close()
	require.NoError(t, first.Close(ctx))

	second := startTest(t, Options{DataDir: dir, UIPort: NoUI})

	c2 := dialTest(t, second)
	d, err := c2.DescribeWorkflowExecution(ctx, "restart-me", run.GetRunID())
	require.NoError(t, err)
	assert.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, d.GetWorkflowExecutionInfo().GetStatus())
	w2 := startWorker(t, c2, "restart-test")
	defer w2.Stop()
	require.NoError(t, c2.SignalWorkflow(ctx, "restart-me", "", "go", "again"))
	var out string
	require.NoError(t, c2.GetWorkflow(ctx, "restart-me", run.GetRunID()).Get(ctx, &out))
	assert.Equal(t, "got again", out)

}

// TestEphemeral runs a server that keeps nothing on disk.
func TestEphemeral(t *testing.T) {
	s := startTest(t, Options{Ephemeral: true, UIPort: NoUI, Namespace: "scratch"})
	assert.Empty(t, s.DBPath())
	assert.Empty(t, s.UIURL())
	assert.Empty(t, s.StartWorkflowURL())
	c := dialTest(t, s)
	ns, err := c.WorkflowService().DescribeNamespace(context.Background(), nsRequest("scratch"))
	require.NoError(t, err)
	assert.Equal(t, "scratch", ns.GetNamespaceInfo().GetName())
}

func nsRequest(name string) *workflowservice.DescribeNamespaceRequest {
	return &workflowservice.DescribeNamespaceRequest{Namespace: name}
}

func nopLogger() sdklog.Logger { return sdklog.NewStructuredLogger(nopSlog()) }
