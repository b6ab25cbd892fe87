// Package worker builds the Temporal workers of posttrain: one on the main task queue
// with both workflows and every activity registered, plus optional workers on separate
// training and sampling queues (so that work can run on other machines), each with a
// cap on concurrent activities.
package worker

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/client"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/posttrain/posttrain/activities"
	"github.com/posttrain/posttrain/workflows"
)

// Options say which queues to poll and how much work to take at once.
type Options struct {
	// TaskQueue is the workflows' queue ("" = workflows.DefaultTaskQueue); the
	// activities run there too unless routed elsewhere.
	TaskQueue string
	// TrainingQueue and SamplingQueue, when set and different from TaskQueue, get
	// their own workers (the config's temporal.training_task_queue and
	// sampling_task_queue route the activities there).
	TrainingQueue string
	SamplingQueue string
	// MaxConcurrentActivities caps the activities each worker runs at once (0 = 2:
	// training is CPU-bound, more in parallel only slows each one down).
	MaxConcurrentActivities int
	// MaxConcurrentWorkflowTasks caps workflow tasks (0 = the SDK's default).
	MaxConcurrentWorkflowTasks int
	// OnlyQueues, when non-empty, limits this process to those of the queues above
	// (e.g. a machine that only samples).
	OnlyQueues []string
	// Identity names the worker in the Web UI ("" = the SDK's default).
	Identity string
	// ProgressInterval, when set, is the longest a heartbeat (and so the progress that
	// `posttrain run watch`, `posttrain demo` and the Web UI show) waits before it is
	// sent. 0 keeps the SDK's throttle of 80% of the heartbeat timeout, which leaves a
	// progress bar still for tens of seconds; a local server can take one a second.
	ProgressInterval time.Duration
}

// Workers are the started or startable workers of one process.
type Workers struct {
	workers []sdkworker.Worker
	queues  []string
}

// Queues lists the task queues polled, in start order.
func (w *Workers) Queues() []string { return append([]string(nil), w.queues...) }

// New builds the workers for c: deps are the activities' dependencies (datastore pool,
// artifact store, data directory).
func New(c client.Client, deps activities.Deps, opts Options) (*Workers, error) {
	if c == nil {
		return nil, errors.New("worker: no Temporal client")
	}
	acts, err := activities.New(deps)
	if err != nil {
		return nil, err
	}
	return NewWithActivities(c, acts, opts)
}

// NewWithActivities builds the workers around already-built activities.
func NewWithActivities(c client.Client, acts *activities.Activities, opts Options) (*Workers, error) {
	if opts.TaskQueue == "" {
		opts.TaskQueue = workflows.DefaultTaskQueue
	}
	if opts.MaxConcurrentActivities <= 0 {
		opts.MaxConcurrentActivities = 2
	}
	want := func(q string) bool {
		if len(opts.OnlyQueues) == 0 {
			return true
		}
		for _, o := range opts.OnlyQueues {
			if o == q {
				return true
			}
		}
		return false
	}
	ws := &Workers{}
	seen := map[string]bool{}
	for _, q := range []string{opts.TaskQueue, opts.TrainingQueue, opts.SamplingQueue} {
		if q == "" || seen[q] || !want(q) {
			continue
		}
		seen[q] = true
		w := sdkworker.New(c, q, sdkworker.Options{
			MaxConcurrentActivityExecutionSize:     opts.MaxConcurrentActivities,
			MaxConcurrentWorkflowTaskExecutionSize: opts.MaxConcurrentWorkflowTasks,
			Identity:                               opts.Identity,
			MaxHeartbeatThrottleInterval:           opts.ProgressInterval,
			// Training heartbeats carry checkpoints: let an activity finish saving when
			// the worker stops.
			WorkerStopTimeout: 30 * time.Second,
		})
		if q == opts.TaskQueue {
			Register(w)
		}
		w.RegisterActivity(acts)
		ws.workers = append(ws.workers, w)
		ws.queues = append(ws.queues, q)
	}
	if len(ws.workers) == 0 {
		return nil, fmt.Errorf("worker: none of the queues %v is in %v", []string{opts.TaskQueue, opts.TrainingQueue, opts.SamplingQueue}, opts.OnlyQueues)
	}
	return ws, nil
}

// Register registers both workflows under their documented names on r.
func Register(r interface {
	RegisterWorkflowWithOptions(any, workflow.RegisterOptions)
}) {
	r.RegisterWorkflowWithOptions(workflows.PostTraining, workflow.RegisterOptions{Name: workflows.WorkflowType})
	r.RegisterWorkflowWithOptions(workflows.PostTrainingRound, workflow.RegisterOptions{Name: workflows.RoundWorkflowType})
}

// Start starts every worker; on an error the ones started are stopped.
func (w *Workers) Start() error {
	for i, wk := range w.workers {
		if err := wk.Start(); err != nil {
			for _, s := range w.workers[:i] {
				s.Stop()
			}
			return fmt.Errorf("start worker on %s: %w", w.queues[i], err)
		}
	}
	return nil
}

// Stop stops every worker.
func (w *Workers) Stop() {
	for _, wk := range w.workers {
		wk.Stop()
	}
}

// Run starts the workers and blocks until interrupt is closed (e.g.
// sdkworker.InterruptCh()), then stops them.
func (w *Workers) Run(interrupt <-chan any) error {
	if err := w.Start(); err != nil {
		return err
	}
	<-interrupt
	w.Stop()
	return nil
}
