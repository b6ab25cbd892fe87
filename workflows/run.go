package workflows

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Typed search attribute keys.
var (
	roundKey = temporal.NewSearchAttributeKeyInt64(SearchAttrRound)
	stageKey = temporal.NewSearchAttributeKeyKeyword(SearchAttrStage)
)

// datasetName is what a submitted annotations dataset name may look like.
var datasetName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$`)

// run is the PostTraining workflow's state.
type run struct {
	st          Status
	plan        Plan
	approved    map[int]bool
	annotations map[int]string
	childID     string
	// waitApproval is the round waiting for approval (0: none); waitAnnotations the
	// round whose annotations are awaited when awaitingAnnotations is set (0 is the
	// initial data).
	waitApproval, waitAnnotations int
	awaitingAnnotations           bool
}

// PostTraining is the whole post-training run: StartRun resolves the config into a
// Plan, then each round runs as a PostTrainingRound child workflow, each round samples
// with the previous round's final model, and annotations for the next round are
// collected between rounds. See the package documentation for the input.
func PostTraining(ctx workflow.Context, in RunInput) (RunResult, error) {
	info := workflow.GetInfo(ctx)
	w := &run{
		st:          Status{RunID: info.WorkflowExecution.ID, State: StateStarting, Metrics: map[string]float64{}},
		approved:    map[int]bool{},
		annotations: map[int]string{},
	}
	if err := w.register(ctx); err != nil {
		return RunResult{}, err
	}
	if err := in.Validate(); err != nil {
		return RunResult{}, w.fail(ctx, invalid(err))
	}
	req := StartRunRequest{WorkflowID: info.WorkflowExecution.ID, TemporalRunID: info.WorkflowExecution.RunID, Input: in}
	if workflow.HasLastCompletionResult(ctx) {
		var prev RunResult
		if err := workflow.GetLastCompletionResult(ctx, &prev); err == nil {
			req.ContinueFrom = prev.FinalModel
		}
	}
	if err := workflow.ExecuteActivity(bookkeepingCtx(ctx), ActStartRun, req).Get(ctx, &w.plan); err != nil {
		return RunResult{}, w.fail(ctx, fmt.Errorf("start run: %w", err))
	}
	if err := w.plan.Validate(); err != nil {
		return RunResult{}, w.fail(ctx, invalid(err))
	}
	w.st.Rounds, w.st.State = w.plan.Rounds, w.activeState()
	res, err := w.rounds(ctx)
	if err != nil {
		return RunResult{}, w.fail(ctx, err)
	}
	fin := FinishRunRequest{RunID: w.plan.RunID, Status: StateCompleted, FinalModel: res.FinalModel}
	if err := workflow.ExecuteActivity(bookkeepingCtx(ctx), ActFinishRun, fin).Get(ctx, nil); err != nil {
		return RunResult{}, w.fail(ctx, fmt.Errorf("finish run: %w", err))
	}
	w.st.State, w.st.FinalModel = StateCompleted, res.FinalModel
	return res, nil
}

// rounds runs the initial annotations (when there is no preference data) and the rounds.
func (w *run) rounds(ctx workflow.Context) (RunResult, error) {
	res := RunResult{RunID: w.plan.RunID}
	if w.plan.NeedInitialAnnotations {
		if err := w.annotate(ctx, 0, w.plan.InitialPolicy); err != nil {
			return res, err
		}
	}
	policy, prevRM := w.plan.InitialPolicy, ""
	for n := 1; n <= w.plan.Rounds; n++ {
		if err := w.awaitResume(ctx); err != nil {
			return res, err
		}
		w.st.Round, w.st.Stage = n, StageReward
		w.upsert(ctx)
		rr, err := w.round(ctx, n, policy, prevRM)
		if err != nil {
			return res, err
		}
		res.Rounds = append(res.Rounds, rr)
		res.FinalModel = rr.FinalModel
		policy, prevRM = rr.FinalModel, rr.RewardModel
		if w.plan.RequireApproval {
			if err := w.awaitApproval(ctx, n); err != nil {
				return res, err
			}
		}
		if n < w.plan.Rounds {
			if err := w.annotate(ctx, n, policy); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// round runs round n as a child workflow.
func (w *run) round(ctx workflow.Context, n int, policy, prevRM string) (RoundResult, error) {
	w.childID = RoundWorkflowID(workflow.GetInfo(ctx).WorkflowExecution.ID, n)
	cctx := workflow.WithChildOptions(ctx, workflow.ChildWorkflowOptions{
		WorkflowID:          w.childID,
		ParentClosePolicy:   enumspb.PARENT_CLOSE_POLICY_REQUEST_CANCEL,
		WaitForCancellation: true,
	})
	in := RoundInput{Plan: w.plan, Round: n, Policy: policy, PreviousRM: prevRM}
	fut := workflow.ExecuteChildWorkflow(cctx, RoundWorkflowType, in)
	// A pause that arrived before the child started is forwarded once it runs.
	if err := fut.GetChildWorkflowExecution().Get(ctx, nil); err == nil && w.st.Paused {
		workflow.SignalExternalWorkflow(ctx, w.childID, "", SignalPause, nil)
	}
	var rr RoundResult
	err := fut.Get(ctx, &rr)
	w.childID = ""
	if err != nil {
		return rr, err
	}
	for _, k := range workflow.DeterministicKeys(rr.Metrics) {
		w.st.Metrics[k] = rr.Metrics[k]
	}
	return rr, nil
}

// annotate collects the preference annotations round n produces for round n+1 (n = 0:
// the initial data) with the plan's annotator.
func (w *run) annotate(ctx workflow.Context, n int, policy string) error {
	if err := w.awaitResume(ctx); err != nil {
		return err
	}
	w.st.Round, w.st.Stage = n, StageAnnotate
	w.upsert(ctx)
	w.stageEvent(ctx, RoundProgress{Round: n, Stage: StageAnnotate, State: StageRunning})
	req := AnnotateRequest{RunID: w.plan.RunID, Round: n, Kind: w.plan.Annotator, Policy: policy, Seed: w.plan.Seed}
	if w.plan.Annotator == AnnotatorHuman {
		ds, err := w.awaitAnnotations(ctx, n)
		if err != nil {
			return err
		}
		req.Dataset = ds
	}
	var res AnnotateResult
	if err := workflow.ExecuteActivity(annotateCtx(ctx, w.plan), ActAnnotate, req).Get(ctx, &res); err != nil {
		w.stageEvent(ctx, RoundProgress{Round: n, Stage: StageAnnotate, State: StageFailed})
		return fmt.Errorf("round %d: annotate: %w", n, err)
	}
	w.stageEvent(ctx, RoundProgress{Round: n, Stage: StageAnnotate, State: StageCompleted,
		Metrics: map[string]float64{MetricKey(n, StageAnnotate, "pairs"): float64(res.Pairs)}})
	return nil
}

// awaitAnnotations waits durably for the submit-annotations update of round n.
func (w *run) awaitAnnotations(ctx workflow.Context, n int) (string, error) {
	w.waitAnnotations, w.awaitingAnnotations, w.st.WaitingRound, w.st.State = n, true, n, StateWaitingAnnotations
	defer func() {
		w.waitAnnotations, w.awaitingAnnotations, w.st.WaitingRound, w.st.State = 0, false, 0, StateRunning
	}()
	cond := func() bool { return w.annotations[n] != "" }
	if w.plan.AnnotationTimeout > 0 {
		ok, err := workflow.AwaitWithTimeout(ctx, w.plan.AnnotationTimeout, cond)
		if err != nil {
			return "", err
		}
		if !ok {
			return "", temporal.NewNonRetryableApplicationError(
				fmt.Sprintf("round %d: no annotations were submitted within %s", n, w.plan.AnnotationTimeout), ErrAnnotationTimeout, nil)
		}
	} else if err := workflow.Await(ctx, cond); err != nil {
		return "", err
	}
	return w.annotations[n], nil
}

// awaitApproval waits durably for approve-round of round n.
func (w *run) awaitApproval(ctx workflow.Context, n int) error {
	w.waitApproval, w.st.WaitingRound, w.st.State = n, n, StateWaitingApproval
	defer func() { w.waitApproval, w.st.WaitingRound, w.st.State = 0, 0, w.activeState() }()
	return workflow.Await(ctx, func() bool { return w.approved[n] })
}

// activeState is the state of a run that is not waiting: running or paused.
func (w *run) activeState() string {
	if w.st.Paused {
		return StatePaused
	}
	return StateRunning
}

// awaitResume blocks while the run is paused.
func (w *run) awaitResume(ctx workflow.Context) error {
	return workflow.Await(ctx, func() bool { return !w.st.Paused })
}

// register installs the query, signal and update handlers.
func (w *run) register(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (Status, error) { return w.snapshot(), nil }); err != nil {
		return fmt.Errorf("register status query: %w", err)
	}
	err := workflow.SetUpdateHandlerWithOptions(ctx, UpdateApproveRound,
		func(ctx workflow.Context, req ApproveRequest) (string, error) {
			w.approved[req.Round] = true
			return fmt.Sprintf("round %d approved", req.Round), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(req ApproveRequest) error {
			switch {
			case !w.plan.RequireApproval:
				return errors.New("this run does not require approval (start it with require_approval)")
			case w.waitApproval == 0:
				return fmt.Errorf("no round is waiting for approval (the run is at round %d, stage %s)", w.st.Round, w.st.Stage)
			case req.Round != w.waitApproval:
				return fmt.Errorf("round %d is not the one waiting for approval: round %d is", req.Round, w.waitApproval)
			}
			return nil
		}})
	if err != nil {
		return fmt.Errorf("register %s: %w", UpdateApproveRound, err)
	}
	err = workflow.SetUpdateHandlerWithOptions(ctx, UpdateSubmitAnnotations,
		func(ctx workflow.Context, req SubmitAnnotationsRequest) (string, error) {
			n := w.waitAnnotations
			w.annotations[n] = req.Dataset
			return fmt.Sprintf("annotations for round %d accepted from dataset %s", n+1, req.Dataset), nil
		},
		workflow.UpdateHandlerOptions{Validator: func(req SubmitAnnotationsRequest) error {
			switch {
			case w.plan.Annotator != AnnotatorHuman:
				return fmt.Errorf("this run's annotator is %q, not human", w.plan.Annotator)
			case !w.awaitingAnnotations:
				return fmt.Errorf("the run is not waiting for annotations (round %d, stage %s)", w.st.Round, w.st.Stage)
			case req.Round != 0 && req.Round != w.waitAnnotations:
				return fmt.Errorf("annotations for round %d were submitted but the run waits for round %d's", req.Round, w.waitAnnotations)
			case !datasetName.MatchString(req.Dataset):
				return fmt.Errorf("dataset %q is not a dataset name: upload the file first (posttrain annotations submit uploads it and sends its name)", req.Dataset)
			}
			return nil
		}})
	if err != nil {
		return fmt.Errorf("register %s: %w", UpdateSubmitAnnotations, err)
	}
	pause := workflow.GetSignalChannel(ctx, SignalPause)
	resume := workflow.GetSignalChannel(ctx, SignalResume)
	progress := workflow.GetSignalChannel(ctx, SignalRoundProgress)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(pause, func(c workflow.ReceiveChannel, _ bool) {
				c.Receive(ctx, nil)
				w.setPaused(ctx, true)
			})
			sel.AddReceive(resume, func(c workflow.ReceiveChannel, _ bool) {
				c.Receive(ctx, nil)
				w.setPaused(ctx, false)
			})
			sel.AddReceive(progress, func(c workflow.ReceiveChannel, _ bool) {
				var p RoundProgress
				c.Receive(ctx, &p)
				w.stageEvent(ctx, p)
			})
			sel.Select(ctx)
		}
	})
	return nil
}

// setPaused records a pause or resume and forwards it to the running round.
func (w *run) setPaused(ctx workflow.Context, paused bool) {
	w.st.Paused = paused
	switch {
	case w.st.State == StateWaitingApproval || w.st.State == StateWaitingAnnotations:
		// The wait shows; the pause shows in Paused and takes effect after it.
	case paused && (w.st.State == StateRunning || w.st.State == StateStarting):
		w.st.State = StatePaused
	case !paused && w.st.State == StatePaused:
		w.st.State = StateRunning
	}
	if w.childID != "" {
		sig := SignalResume
		if paused {
			sig = SignalPause
		}
		workflow.SignalExternalWorkflow(ctx, w.childID, "", sig, nil)
	}
}

// stageEvent records a stage's start or end and upserts the search attributes.
func (w *run) stageEvent(ctx workflow.Context, p RoundProgress) {
	now := workflow.Now(ctx)
	i := -1
	for j := range w.st.Stages {
		if w.st.Stages[j].Round == p.Round && w.st.Stages[j].Stage == p.Stage {
			i = j
		}
	}
	if i < 0 {
		w.st.Stages = append(w.st.Stages, StageStatus{Round: p.Round, Stage: p.Stage, StartedAt: now})
		i = len(w.st.Stages) - 1
	}
	s := &w.st.Stages[i]
	s.State = p.State
	if p.State != StageRunning {
		s.FinishedAt = now
	}
	for _, k := range workflow.DeterministicKeys(p.Metrics) {
		w.st.Metrics[k] = p.Metrics[k]
	}
	if p.State == StageRunning && (p.Round != w.st.Round || p.Stage != w.st.Stage) {
		w.st.Round, w.st.Stage = p.Round, p.Stage
		w.upsert(ctx)
	}
}

// upsert publishes the round and stage as search attributes.
func (w *run) upsert(ctx workflow.Context) {
	err := workflow.UpsertTypedSearchAttributes(ctx, roundKey.ValueSet(int64(w.st.Round)), stageKey.ValueSet(w.st.Stage))
	if err != nil {
		workflow.GetLogger(ctx).Warn("upsert search attributes", "error", err)
	}
}

// snapshot copies the status for the query (the caller must not see later changes).
func (w *run) snapshot() Status {
	s := w.st
	s.Stages = append([]StageStatus(nil), w.st.Stages...)
	s.Metrics = make(map[string]float64, len(w.st.Metrics))
	for k, v := range w.st.Metrics {
		s.Metrics[k] = v
	}
	return s
}

// fail records the end of a failed or cancelled run in PostgreSQL (on a disconnected
// context, so it runs even though the workflow's context is cancelled) and returns err.
func (w *run) fail(ctx workflow.Context, err error) error {
	cancelled := temporal.IsCanceledError(err) || errors.Is(ctx.Err(), workflow.ErrCanceled)
	w.st.State, w.st.Error = StateFailed, err.Error()
	if cancelled {
		w.st.State = StateCancelled
	}
	if w.plan.RunID == "" {
		return err // nothing was recorded yet
	}
	dctx, _ := workflow.NewDisconnectedContext(ctx)
	dctx = workflow.WithActivityOptions(dctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy:         retryPolicy(maxAttempts),
	})
	var cerr error
	if cancelled {
		cerr = workflow.ExecuteActivity(dctx, ActCancelRun, w.plan.RunID).Get(dctx, nil)
	} else {
		req := FinishRunRequest{RunID: w.plan.RunID, Status: StateFailed, Error: err.Error()}
		cerr = workflow.ExecuteActivity(dctx, ActFinishRun, req).Get(dctx, nil)
	}
	if cerr != nil {
		workflow.GetLogger(ctx).Error("record the run's end", "error", cerr)
	}
	return err
}

// invalid wraps err as a non-retryable invalid-input failure.
func invalid(err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), ErrInvalidInput, err)
}
