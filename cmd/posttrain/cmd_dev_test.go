package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"

	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/devserver"
	"github.com/posttrain/posttrain/pgserver"
)

// syncBuffer is a bytes.Buffer the command writes to while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestDevEndToEnd runs `posttrain dev --json` in-process on a fresh data directory (the
// private PostgreSQL cluster, migrations, Temporal with the UI, the worker), checks the
// UI answers and the worker polls the task queue, then cancels it and sees everything
// stop.
func TestDevEndToEnd(t *testing.T) {
	_, err := pgserver.FindBinaries()
	require.NoError(t, err, "posttrain dev needs the PostgreSQL server binaries")
	t.Setenv("POSTTRAIN_DATABASE_URL", "")
	root := t.TempDir()
	if os.Geteuid() == 0 { // the private cluster runs as the postgres account
		require.NoError(t, os.Chmod(root, 0o755))
		require.NoError(t, os.Chmod(filepath.Dir(root), 0o755))
	}
	dataDir := filepath.Join(root, "data")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	cmd := newRootCmd()
	cmd.SetArgs([]string{"dev", "--json", "--data-dir", dataDir, "--port", "0"})
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()

	var info devInfo
	var resp *http.Response
	require.Eventually(t, func() bool {
		select {
		case err := <-done:
			require.NoError(t, err, stderr.String())
			t.Fatal("dev returned before being cancelled")
		default:
		}
		return json.Unmarshal([]byte(stdout.String()), &info) == nil
	}, 3*time.Minute, 100*time.Millisecond, "dev printed its JSON; stderr: %s", stderr.String())

	assert.Equal(t, "default", info.Namespace)
	assert.Equal(t, "posttrain", info.TaskQueue)
	assert.Equal(t, "PostTraining", info.WorkflowType)
	assert.Equal(t, info.UIURL+"/namespaces/default/workflows/start-workflow", info.StartWorkflowURL)
	assert.Equal(t, filepath.Join(dataDir, devserver.SubDir, devserver.DBFileName), info.TemporalDB)
	assert.FileExists(t, info.TemporalDB)
	assert.DirExists(t, filepath.Join(dataDir, "postgres"), "the private cluster")
	assert.Contains(t, info.Database, "127.0.0.1")
	assert.Contains(t, stderr.String(), "ready in")

	resp, err = http.Get(info.StartWorkflowURL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	c, err := client.Dial(client.Options{HostPort: info.TemporalAddress, Logger: sdklog.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))})
	require.NoError(t, err)
	defer c.Close()
	require.Eventually(t, func() bool {
		r, err := c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
			Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: "posttrain", Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
			TaskQueueType: enumspb.TASK_QUEUE_TYPE_WORKFLOW,
		})
		return err == nil && len(r.GetPollers()) > 0
	}, 30*time.Second, 200*time.Millisecond, "the worker polls the task queue")

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(2 * time.Minute):
		t.Fatal("dev did not stop within 2 minutes of being cancelled")
	}
	assert.Contains(t, stderr.String(), "stopped")
	_, err = http.Get(info.UIURL)
	assert.Error(t, err, "the UI is down")
	assert.NoFileExists(t, filepath.Join(dataDir, "postgres", "postmaster.pid"), "PostgreSQL stopped")
}

// TestDevPorts resolves the embedded server's ports from the flags and the config.
func TestDevPorts(t *testing.T) {
	cases := []struct {
		name     string
		args     []string
		sets     []string
		grpc, ui int
		err      string
	}{
		{"defaults", nil, nil, 7233, 8233, ""},
		{"port from temporal.address", nil, []string{"temporal.address=127.0.0.1:7300"}, 7300, 8233, ""},
		{"ui_port 0 disables the UI", nil, []string{"temporal.ui_port=0"}, 7233, devserver.NoUI, ""},
		{"--port moves the UI", []string{"--port", "7400"}, nil, 7400, 8400, ""},
		{"--port 0 picks free ports", []string{"--port", "0"}, nil, 0, 0, ""},
		{"--ui-port wins", []string{"--port", "7400", "--ui-port", "9000"}, nil, 7400, 9000, ""},
		{"--ui-port -1", []string{"--ui-port", "-1"}, nil, 7233, devserver.NoUI, ""},
		{"bad port", []string{"--port", "70000"}, nil, 0, 0, "--port 70000"},
		{"bad ui port", []string{"--ui-port", "-5"}, nil, 0, 0, "--ui-port -5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := configs.Load(configs.Sources{Env: map[string]string{}, Sets: tc.sets})
			require.NoError(t, err)
			f := &devFlags{}
			cmd := newDevCmd(&globalOptions{})
			require.NoError(t, cmd.ParseFlags(tc.args))
			f.port, _ = cmd.Flags().GetInt("port")
			f.uiPort, _ = cmd.Flags().GetInt("ui-port")
			grpc, ui, err := devPorts(cmd, f, cfg)
			if tc.err != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.grpc, grpc)
			assert.Equal(t, tc.ui, ui)
		})
	}
}
