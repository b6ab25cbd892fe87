package worker

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/posttrain/posttrain/activities"
	"github.com/posttrain/posttrain/artifacts"
	"github.com/posttrain/posttrain/assets"
	"github.com/posttrain/posttrain/internal/pgtest"
	"github.com/posttrain/posttrain/workflows"
)

// BenchmarkOrchestrationOverhead runs a two-round PostTraining workflow on the demo
// preset with the shipped base model and reports the orchestration overhead: the run's
// wall time not covered by any running activity, as a share of the wall time
// (overhead_%), next to the run's seconds. Run it with
//
//	go test ./worker -run '^$' -bench OrchestrationOverhead -benchtime 1x
func BenchmarkOrchestrationOverhead(b *testing.B) {
	pool := pgtest.NewDB(b)
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		store, err := artifacts.NewFS(b.TempDir())
		require.NoError(b, err)
		modelsDir := filepath.Join(b.TempDir(), "models")
		deps := activities.Deps{Pool: pool, Store: store, DataDir: b.TempDir(), Env: map[string]string{},
			DefaultBaseModel: func(context.Context) (string, error) { return assets.WriteBaseModel(modelsDir) }}
		queue := fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i)
		c := server.GetDefaultClient()
		ws, err := New(c, deps, Options{TaskQueue: queue})
		require.NoError(b, err)
		require.NoError(b, ws.Start())
		id := "bench-run-" + fmt.Sprint(time.Now().UnixNano())
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, workflows.WorkflowType,
			workflows.RunInput{Preset: "demo", Rounds: 2})
		require.NoError(b, err)
		require.NoError(b, run.Get(ctx, nil))
		ws.Stop()
		busy, first, last := activityBusy(b, c, id, 2)
		wall := last.Sub(first)
		b.ReportMetric(wall.Seconds(), "run_s")
		b.ReportMetric(busy.Seconds(), "activities_s")
		b.ReportMetric(100*(wall-busy).Seconds()/wall.Seconds(), "overhead_%")
	}
}
