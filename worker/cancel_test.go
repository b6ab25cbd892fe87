package worker

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/workflows"
)

func TestCancelStopsTrainingAndMarksStagesCancelled(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: trains a real tiny model")
	}
	db, c, queue := startWorker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	id := "cancel-run-" + fmt.Sprint(time.Now().UnixNano())
	sets := append(append([]string(nil), tinyOverrides...), "sft.steps=100000", "reward.variants=1", "dpo.variants=1")
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, workflows.WorkflowType,
		workflows.RunInput{Preset: "demo", Rounds: 1, Overrides: sets, HeartbeatTimeout: "3s"})
	require.NoError(t, err)

	key := datastore.StageKey{RunID: id, Round: 1, Kind: datastore.StageSFT, Variant: "0"}
	require.Eventually(t, func() bool {
		st, err := db.GetStage(ctx, key)
		return err == nil && st.Status == datastore.StatusRunning && st.CheckpointStep >= 4
	}, 3*time.Minute, 50*time.Millisecond)
	cancelled := time.Now()
	require.NoError(t, c.CancelWorkflow(ctx, id, ""))
	err = run.Get(ctx, nil)
	var ce *temporal.CanceledError
	require.True(t, errors.As(err, &ce), "%v", err)

	// The cleanup ran: the SFT stage that was training is cancelled (it stopped at a
	// step boundary after saving), and so are the round and the run.
	st, err := db.GetStage(ctx, key)
	require.NoError(t, err)
	require.Equal(t, datastore.StatusCancelled, st.Status)
	require.Less(t, st.CheckpointStep, int64(100000))
	r, err := db.GetRun(ctx, id)
	require.NoError(t, err)
	require.Equal(t, datastore.StatusCancelled, r.Status)
	rd, err := db.GetRound(ctx, id, 1)
	require.NoError(t, err)
	require.Equal(t, datastore.StatusCancelled, rd.Status)
	t.Logf("cancel to run closed with stages marked cancelled: %s", time.Since(cancelled).Round(time.Millisecond))
}
