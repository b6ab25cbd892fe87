package devstack

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	taskqueuepb "go.temporal.io/api/taskqueue/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/devserver"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/workflows"
)

// testConfig is the default config on a fresh database and data directory.
func testConfig(t *testing.T, dsn string) *configs.Config {
	t.Helper()
	cfg, err := configs.Load(configs.Sources{Env: map[string]string{}, Sets: []string{"data_dir=" + t.TempDir(), "datastore.url=" + dsn}})
	require.NoError(t, err)
	return cfg
}

// pollers lists the workflow pollers of a task queue.
func pollers(ctx context.Context, t *testing.T, c client.Client, queue string) []*taskqueuepb.PollerInfo {
	t.Helper()
	resp, err := c.WorkflowService().DescribeTaskQueue(ctx, &workflowservice.DescribeTaskQueueRequest{
		Namespace: "default", TaskQueue: &taskqueuepb.TaskQueue{Name: queue, Kind: enumspb.TASK_QUEUE_KIND_NORMAL},
		TaskQueueType: enumspb.TASK_QUEUE_TYPE_WORKFLOW,
	})
	require.NoError(t, err)
	return resp.GetPollers()
}

// TestStackEmbeddedAndExternal starts the whole stack (migrated datastore, embedded
// Temporal with its UI, the posttrain worker), then a second, worker-only stack against
// the first one's frontend, and stops both.
func TestStackEmbeddedAndExternal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dsn := pgtest.NewEmptyDatabase(t)

	st, err := Start(ctx, Options{Config: testConfig(t, dsn)})
	require.NoError(t, err)
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = st.Close(context.Background())
		}
	})
	assert.Nil(t, st.Postgres, "a configured DSN needs no private cluster")
	require.NotNil(t, st.Temporal)
	assert.Equal(t, st.Temporal.FrontendAddress(), st.Address())
	assert.Equal(t, "default", st.Namespace())
	assert.Equal(t, workflows.DefaultTaskQueue, st.TaskQueue())
	assert.Equal(t, []string{workflows.DefaultTaskQueue}, st.Worker.Queues())
	assert.Positive(t, st.ReadyIn)

	versions, err := datastore.AppliedVersions(ctx, st.Pool)
	require.NoError(t, err)
	assert.NotEmpty(t, versions, "migrations applied")

	resp, err := http.Get(st.StartWorkflowURL())
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	require.Eventually(t, func() bool { return len(pollers(ctx, t, st.Client, st.TaskQueue())) > 0 },
		30*time.Second, 200*time.Millisecond, "the worker polls the task queue")

	// A worker-only stack on the same cluster.
	ext, err := Start(ctx, Options{Config: testConfig(t, dsn), TemporalAddress: st.Address()})
	require.NoError(t, err)
	assert.Nil(t, ext.Temporal)
	assert.Empty(t, ext.UIURL())
	assert.Empty(t, ext.StartWorkflowURL())
	assert.Equal(t, st.Address(), ext.Address())
	require.NoError(t, ext.Close(ctx))
	// The embedded server is untouched by the other stack's Close.
	_, err = st.Client.WorkflowService().GetSystemInfo(ctx, &workflowservice.GetSystemInfoRequest{})
	require.NoError(t, err)

	uiURL := st.UIURL()
	require.NoError(t, st.Close(ctx))
	closed = true
	_, err = http.Get(uiURL)
	assert.Error(t, err, "the UI is down after Close")
}

// TestStartErrors names what is wrong before starting anything.
func TestStartErrors(t *testing.T) {
	cfg, err := configs.Load(configs.Sources{Env: map[string]string{}})
	require.NoError(t, err)
	noDir := *cfg
	noDir.DataDir = ""
	badPort := *cfg
	badPort.DataDir = t.TempDir()
	badPort.Datastore.URL = "postgres://postgres@127.0.0.1:1/nothing?sslmode=disable&connect_timeout=2"
	cases := []struct {
		name string
		opts Options
		want string
	}{
		{"no config", Options{}, "no config"},
		{"no data dir", Options{Config: &noDir}, "data_dir is empty"},
		{"database down", Options{Config: &badPort, UIPort: devserver.NoUI}, "127.0.0.1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(context.Background(), tc.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
