package workflows

import (
	"io"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// TestReplayRecordedHistories replays histories recorded from the integration test's
// two-round run (go test ./worker -run TestTwoRounds with
// POSTTRAIN_RECORD_HISTORY=$PWD/workflows/testdata): a change to the workflow code that
// would break runs in flight fails here.
func TestReplayRecordedHistories(t *testing.T) {
	tests := []struct{ name, file string }{
		{"run", "testdata/posttraining.json"},
		{"round", "testdata/posttraining_round.json"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := os.Open(tc.file)
			require.NoError(t, err)
			defer f.Close()
			h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
			require.NoError(t, err)
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(PostTraining, workflow.RegisterOptions{Name: WorkflowType})
			r.RegisterWorkflowWithOptions(PostTrainingRound, workflow.RegisterOptions{Name: RoundWorkflowType})
			logger := log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
			err = r.ReplayWorkflowHistoryWithOptions(logger, h,
				worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: workflowID(t, h)}})
			require.NoError(t, err)
		})
	}
}

// workflowID recovers the recorded workflow's ID, which child IDs derive from: a run's
// from its first round's child ID, a round's from its parent's ID.
func workflowID(t *testing.T, h *historypb.History) string {
	t.Helper()
	for _, e := range h.GetEvents() {
		switch e.GetEventType() {
		case enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
			if p := e.GetWorkflowExecutionStartedEventAttributes().GetParentWorkflowExecution(); p != nil {
				return RoundWorkflowID(p.GetWorkflowId(), 1)
			}
		case enumspb.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED:
			return strings.TrimSuffix(e.GetStartChildWorkflowExecutionInitiatedEventAttributes().GetWorkflowId(), "-round-1")
		}
	}
	t.Fatal("history names no workflow ID")
	return ""
}
