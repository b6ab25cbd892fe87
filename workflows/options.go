package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Timeouts and retries per kind of activity. Training can run for hours per attempt; a
// lost worker is noticed through the heartbeat timeout, and a retry resumes from the
// last checkpoint, so a few attempts are plenty. MaximumAttempts is always set: an
// oversized result or a deterministic bug would otherwise retry forever.
const (
	bookkeepingTimeout = 5 * time.Minute
	trainingTimeout    = 12 * time.Hour
	samplingTimeout    = 6 * time.Hour
	annotateTimeout    = 6 * time.Hour
	// defaultHeartbeat is used before the plan (which may override it) is known.
	defaultHeartbeat = 10 * time.Second
	maxAttempts      = 5
)

func retryPolicy(attempts int32) *temporal.RetryPolicy {
	return &temporal.RetryPolicy{
		InitialInterval:        time.Second,
		BackoffCoefficient:     2,
		MaximumInterval:        time.Minute,
		MaximumAttempts:        attempts,
		NonRetryableErrorTypes: []string{ErrInvalidInput, ErrDiverged},
	}
}

// bookkeepingCtx is for short datastore activities.
func bookkeepingCtx(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: bookkeepingTimeout,
		RetryPolicy:         retryPolicy(maxAttempts),
	})
}

// longCtx is for heartbeating work on queue ("" = the workflow's queue). Cancellation
// waits for the activity to stop, so a trainer can save its checkpoint first.
func longCtx(ctx workflow.Context, queue string, timeout, heartbeat time.Duration) workflow.Context {
	if heartbeat <= 0 {
		heartbeat = defaultHeartbeat
	}
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue:           queue,
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    heartbeat,
		WaitForCancellation: true,
		RetryPolicy:         retryPolicy(maxAttempts),
	})
}

func trainingCtx(ctx workflow.Context, p Plan) workflow.Context {
	return longCtx(ctx, p.TrainingQueue, trainingTimeout, p.HeartbeatTimeout)
}

func samplingCtx(ctx workflow.Context, p Plan) workflow.Context {
	return longCtx(ctx, p.SamplingQueue, samplingTimeout, p.HeartbeatTimeout)
}

// evalCtx runs evaluation and averaging (model-sized work, minutes) on the training queue.
func evalCtx(ctx workflow.Context, p Plan) workflow.Context {
	return longCtx(ctx, p.TrainingQueue, samplingTimeout, p.HeartbeatTimeout)
}

func annotateCtx(ctx workflow.Context, p Plan) workflow.Context {
	return longCtx(ctx, p.SamplingQueue, annotateTimeout, p.HeartbeatTimeout)
}
