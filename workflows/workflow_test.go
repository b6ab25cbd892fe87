package workflows

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

// fakeActivities stand in for package activities: they record every call and return
// deterministic artifact IDs ("<stage>-r<round>-v<variant>", "avg-<stage>-r<round>").
type fakeActivities struct {
	mu    sync.Mutex
	calls []string
	reqs  map[string][]any
	plan  Plan
	// fail, when set, is returned by the activity whose call string it prefixes.
	failOn string
	fail   error
}

func newFake(p Plan) *fakeActivities {
	return &fakeActivities{plan: p, reqs: map[string][]any{}}
}

func (f *fakeActivities) record(call string, name string, req any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
	f.reqs[name] = append(f.reqs[name], req)
	if f.fail != nil && strings.HasPrefix(call, f.failOn) {
		return f.fail
	}
	return nil
}

func (f *fakeActivities) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeActivities) StartRun(_ context.Context, req StartRunRequest) (Plan, error) {
	p := f.plan
	if req.Input.Rounds > 0 {
		p.Rounds = req.Input.Rounds
	}
	if req.ContinueFrom != "" {
		p.InitialPolicy = req.ContinueFrom
	}
	return p, f.record("StartRun", ActStartRun, req)
}

func (f *fakeActivities) BeginRound(_ context.Context, r RoundRef) error {
	return f.record(fmt.Sprintf("BeginRound r%d policy=%s", r.Round, r.Policy), ActBeginRound, r)
}

func (f *fakeActivities) train(stage string, r TrainRequest) (ModelResult, error) {
	id := fmt.Sprintf("%s-r%d-v%d", stage, r.Round, r.Variant)
	err := f.record(fmt.Sprintf("Train %s r%d v%d init=%s ref=%s", stage, r.Round, r.Variant, r.Init, r.Reference), stage, r)
	return ModelResult{ArtifactID: id, Steps: 10}, err
}

func (f *fakeActivities) TrainReward(_ context.Context, r TrainRequest) (ModelResult, error) {
	return f.train(StageReward, r)
}

func (f *fakeActivities) TrainSFT(_ context.Context, r TrainRequest) (ModelResult, error) {
	return f.train(StageSFT, r)
}

func (f *fakeActivities) TrainDPO(_ context.Context, r TrainRequest) (ModelResult, error) {
	return f.train(StageDPO, r)
}

func (f *fakeActivities) Average(_ context.Context, r AverageRequest) (ModelResult, error) {
	err := f.record(fmt.Sprintf("Average %s r%d %s ref=%s", r.Stage, r.Round, strings.Join(r.Inputs, ","), r.Reference), ActAverage, r)
	return ModelResult{ArtifactID: fmt.Sprintf("avg-%s-r%d", r.Stage, r.Round)}, err
}

func (f *fakeActivities) Evaluate(_ context.Context, r EvalRequest) (EvalResult, error) {
	err := f.record(fmt.Sprintf("Evaluate %s r%d model=%s ref=%s", r.Stage, r.Round, r.Model, r.Reference), ActEvaluate, r)
	return EvalResult{Metrics: map[string]float64{"accuracy": float64(r.Round) / 10}}, err
}

func (f *fakeActivities) SampleShard(_ context.Context, r SampleRequest) (SampleResult, error) {
	err := f.record(fmt.Sprintf("Sample r%d shard %d/%d policy=%s rm=%s", r.Round, r.Shard, r.Shards, r.Policy, r.RewardModel), ActSampleShard, r)
	return SampleResult{Shard: r.Shard, Prompts: 4, Candidates: 16, Selected: 4, MeanReward: 0.5}, err
}

func (f *fakeActivities) Annotate(_ context.Context, r AnnotateRequest) (AnnotateResult, error) {
	err := f.record(fmt.Sprintf("Annotate r%d kind=%s policy=%s dataset=%s", r.Round, r.Kind, r.Policy, r.Dataset), ActAnnotate, r)
	return AnnotateResult{Dataset: "ann", Pairs: 8}, err
}

func (f *fakeActivities) FinishRound(_ context.Context, s RoundSummary) error {
	return f.record(fmt.Sprintf("FinishRound r%d final=%s", s.Result.Round, s.Result.FinalModel), ActFinishRound, s)
}

func (f *fakeActivities) FinishRun(_ context.Context, r FinishRunRequest) error {
	return f.record(fmt.Sprintf("FinishRun %s final=%s", r.Status, r.FinalModel), ActFinishRun, r)
}

func (f *fakeActivities) CancelRun(_ context.Context, runID string) error {
	return f.record("CancelRun "+runID, ActCancelRun, runID)
}

func testPlan() Plan {
	return Plan{
		RunID: "wf", Rounds: 2, RewardVariants: 2, SFTVariants: 1, DPOVariants: 2, Shards: 3,
		Annotator: AnnotatorSimulated, Seed: 7, BaseModel: "base", InitialPolicy: "base",
		RewardInit: FromBase, SamplingPolicy: FromPrevious, SFTInit: FromBase, DPOInit: FromSFT, DPOReference: FromSFT,
		HeartbeatTimeout: 10 * time.Second,
	}
}

// newEnv returns a test environment with both workflows and the fake activities.
func newEnv(t *testing.T, f *fakeActivities) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	suite.SetLogger(log.NewStructuredLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	env := suite.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(PostTraining, workflow.RegisterOptions{Name: WorkflowType})
	env.RegisterWorkflowWithOptions(PostTrainingRound, workflow.RegisterOptions{Name: RoundWorkflowType})
	for name, fn := range map[string]any{
		ActStartRun: f.StartRun, ActBeginRound: f.BeginRound, ActTrainReward: f.TrainReward,
		ActTrainSFT: f.TrainSFT, ActTrainDPO: f.TrainDPO, ActAverage: f.Average, ActEvaluate: f.Evaluate,
		ActSampleShard: f.SampleShard, ActAnnotate: f.Annotate, ActFinishRound: f.FinishRound,
		ActFinishRun: f.FinishRun, ActCancelRun: f.CancelRun,
	} {
		env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
	return env
}

// indexOf returns the position of the first call with the prefix, or -1.
func indexOf(calls []string, prefix string) int {
	for i, c := range calls {
		if strings.HasPrefix(c, prefix) {
			return i
		}
	}
	return -1
}

func countPrefix(calls []string, prefix string) int {
	n := 0
	for _, c := range calls {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

func TestRoundsRunStagesInOrderAndChainModels(t *testing.T) {
	f := newFake(testPlan())
	env := newEnv(t, f)
	env.ExecuteWorkflow(WorkflowType, RunInput{})
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())
	var res RunResult
	require.NoError(t, env.GetWorkflowResult(&res))
	require.Equal(t, "avg-dpo-r2", res.FinalModel)
	require.Len(t, res.Rounds, 2)

	calls := f.Calls()
	for r := 1; r <= 2; r++ {
		// Stage order within the round.
		order := []string{
			fmt.Sprintf("BeginRound r%d", r),
			fmt.Sprintf("Train reward r%d", r),
			fmt.Sprintf("Average reward r%d", r),
			fmt.Sprintf("Evaluate reward r%d", r),
			fmt.Sprintf("Sample r%d", r),
			fmt.Sprintf("Train sft r%d", r),
			fmt.Sprintf("Evaluate sft r%d", r),
			fmt.Sprintf("Train dpo r%d", r),
			fmt.Sprintf("Average dpo r%d", r),
			fmt.Sprintf("Evaluate dpo r%d", r),
			fmt.Sprintf("FinishRound r%d final=avg-dpo-r%d", r, r),
		}
		last := -1
		for _, step := range order {
			i := indexOf(calls, step)
			require.Greater(t, i, last, "round %d: %q out of order in %v", r, step, calls)
			last = i
		}
		// Fan-out: 2 reward variants, 3 shards, 1 SFT variant (no average), 2 DPO variants.
		require.Equal(t, 2, countPrefix(calls, fmt.Sprintf("Train reward r%d", r)))
		require.Equal(t, 3, countPrefix(calls, fmt.Sprintf("Sample r%d", r)))
		require.Equal(t, 1, countPrefix(calls, fmt.Sprintf("Train sft r%d", r)))
		require.Equal(t, -1, indexOf(calls, fmt.Sprintf("Average sft r%d", r)))
		require.Equal(t, 2, countPrefix(calls, fmt.Sprintf("Train dpo r%d", r)))
		// The recipe: RM and SFT from the base model, DPO from and against the round's SFT model.
		require.Contains(t, calls, fmt.Sprintf("Train reward r%d v1 init=base ref=", r))
		require.Contains(t, calls, fmt.Sprintf("Train sft r%d v0 init=base ref=", r))
		require.Contains(t, calls, fmt.Sprintf("Train dpo r%d v1 init=sft-r%d-v0 ref=sft-r%d-v0", r, r, r))
		// The DPO soup gets the reference its greedy score needs; the reward soup none.
		require.Contains(t, calls, fmt.Sprintf("Average dpo r%d dpo-r%d-v0,dpo-r%d-v1 ref=sft-r%d-v0", r, r, r, r))
		require.Contains(t, calls, fmt.Sprintf("Average reward r%d reward-r%d-v0,reward-r%d-v1 ref=", r, r, r))
		require.Contains(t, calls, fmt.Sprintf("Sample r%d shard 2/3 policy=%s rm=avg-reward-r%d", r, map[int]string{1: "base", 2: "avg-dpo-r1"}[r], r))
	}
	// Round chaining: round 2 samples with round 1's averaged DPO model, annotations
	// for round 2 are collected from it between the rounds, none after the last.
	require.Contains(t, calls, "BeginRound r2 policy=avg-dpo-r1")
	ann := indexOf(calls, "Annotate r1 kind=simulated policy=avg-dpo-r1")
	require.Greater(t, ann, indexOf(calls, "FinishRound r1"))
	require.Less(t, ann, indexOf(calls, "BeginRound r2"))
	require.Equal(t, -1, indexOf(calls, "Annotate r2"))
	require.Equal(t, "FinishRun completed final=avg-dpo-r2", calls[len(calls)-1])

	// Variant seeds are the plan's seed + variant.
	for _, r := range f.reqs[StageDPO] {
		req := r.(TrainRequest)
		require.Equal(t, int64(7+req.Variant), req.Seed)
	}
}

func TestInitialAnnotationsAndConfigurableStarts(t *testing.T) {
	p := testPlan()
	p.Rounds, p.NeedInitialAnnotations = 2, true
	p.RewardInit, p.SFTInit, p.DPOReference, p.SamplingPolicy = FromPrevious, FromPrevious, FromBase, FromBase
	f := newFake(p)
	env := newEnv(t, f)
	env.ExecuteWorkflow(WorkflowType, RunInput{Preset: "demo"})
	require.NoError(t, env.GetWorkflowError())
	calls := f.Calls()
	require.Less(t, indexOf(calls, "Annotate r0 kind=simulated policy=base"), indexOf(calls, "BeginRound r1"))
	require.NotEqual(t, -1, indexOf(calls, "Annotate r0"))
	// Round 2: RM from round 1's RM, SFT from round 1's final model, DPO reference the
	// base model, sampling with the base model.
	require.Contains(t, calls, "Train reward r2 v0 init=avg-reward-r1 ref=")
	require.Contains(t, calls, "Train sft r2 v0 init=avg-dpo-r1 ref=")
	require.Contains(t, calls, "Train dpo r2 v0 init=sft-r2-v0 ref=base")
	require.Contains(t, calls, "Sample r2 shard 0/3 policy=base rm=avg-reward-r2")
}

func TestPauseHoldsTheRunBetweenStages(t *testing.T) {
	f := newFake(testPlan())
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPause, nil) }, 0)
	var during []string
	var st Status
	env.RegisterDelayedCallback(func() {
		during = f.Calls()
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.SignalWorkflow(SignalResume, nil)
	}, time.Hour)
	env.ExecuteWorkflow(WorkflowType, RunInput{})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{"StartRun"}, during, "no stage may start while paused")
	require.True(t, st.Paused)
	require.Equal(t, StatePaused, st.State)
	require.Contains(t, f.Calls(), "FinishRun completed final=avg-dpo-r2")
}

func TestRoundPausesBetweenStages(t *testing.T) {
	f := newFake(testPlan())
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.SignalWorkflow(SignalPause, nil) }, 0)
	var during []string
	env.RegisterDelayedCallback(func() {
		during = f.Calls()
		env.SignalWorkflow(SignalResume, nil)
	}, time.Hour)
	env.ExecuteWorkflow(RoundWorkflowType, RoundInput{Plan: testPlan(), Round: 1, Policy: "base"})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, []string{"BeginRound r1 policy=base"}, during)
	var rr RoundResult
	require.NoError(t, env.GetWorkflowResult(&rr))
	require.Equal(t, RoundResult{Round: 1, RewardModel: "avg-reward-r1", SFTModel: "sft-r1-v0", FinalModel: "avg-dpo-r1",
		Metrics: map[string]float64{
			"round-1/reward/accuracy": 0.1, "round-1/sft/accuracy": 0.1, "round-1/dpo/accuracy": 0.1,
			"round-1/sampling/prompts": 12, "round-1/sampling/candidates": 48, "round-1/sampling/selected": 12,
			"round-1/sampling/mean_reward": 0.5,
		}}, rr)
}

// updateResult collects what an update's callbacks said.
type updateResult struct {
	rejected, accepted error
	done               bool
}

func (u *updateResult) callbacks() *testsuite.TestUpdateCallback {
	return &testsuite.TestUpdateCallback{
		OnReject:   func(err error) { u.rejected = err },
		OnAccept:   func() { u.done = true },
		OnComplete: func(any, error) {},
	}
}

func TestApproveRoundValidatesTheRound(t *testing.T) {
	p := testPlan()
	p.RequireApproval = true
	f := newFake(p)
	env := newEnv(t, f)
	var wrong, right updateResult
	var before []string
	var st Status
	env.RegisterDelayedCallback(func() {
		before = f.Calls()
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.UpdateWorkflow(UpdateApproveRound, "wrong", wrong.callbacks(), ApproveRequest{Round: 2})
		env.UpdateWorkflow(UpdateApproveRound, "right", right.callbacks(), ApproveRequest{Round: 1})
	}, time.Hour)
	var second updateResult
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateApproveRound, "second", second.callbacks(), ApproveRequest{Round: 2})
	}, 2*time.Hour)
	env.ExecuteWorkflow(WorkflowType, RunInput{RequireApproval: true})
	require.NoError(t, env.GetWorkflowError())

	require.Equal(t, StateWaitingApproval, st.State)
	require.Equal(t, 1, st.WaitingRound)
	require.Equal(t, -1, indexOf(before, "Annotate r1"), "annotations wait for approval")
	require.Equal(t, -1, indexOf(before, "BeginRound r2"))
	require.Error(t, wrong.rejected)
	require.Contains(t, wrong.rejected.Error(), "round 2 is not the one waiting for approval: round 1 is")
	require.NoError(t, right.rejected)
	require.True(t, right.done)
	require.True(t, second.done)
	require.Contains(t, f.Calls(), "FinishRun completed final=avg-dpo-r2")
}

func TestApproveRoundRejectedWithoutRequireApproval(t *testing.T) {
	f := newFake(testPlan())
	env := newEnv(t, f)
	var u updateResult
	env.RegisterDelayedCallback(func() {
		env.UpdateWorkflow(UpdateApproveRound, "u", u.callbacks(), ApproveRequest{Round: 1})
	}, 0)
	env.ExecuteWorkflow(WorkflowType, RunInput{})
	require.NoError(t, env.GetWorkflowError())
	require.ErrorContains(t, u.rejected, "does not require approval")
}

func TestSubmitAnnotationsFeedsTheHumanAnnotator(t *testing.T) {
	p := testPlan()
	p.Annotator = AnnotatorHuman
	f := newFake(p)
	env := newEnv(t, f)
	var badName, badRound, good updateResult
	var st Status
	env.RegisterDelayedCallback(func() {
		v, err := env.QueryWorkflow(QueryStatus)
		require.NoError(t, err)
		require.NoError(t, v.Get(&st))
		env.UpdateWorkflow(UpdateSubmitAnnotations, "a", badName.callbacks(), SubmitAnnotationsRequest{Dataset: "{\"chosen\": \"x\"}"})
		env.UpdateWorkflow(UpdateSubmitAnnotations, "b", badRound.callbacks(), SubmitAnnotationsRequest{Round: 2, Dataset: "wf-human-r1"})
		env.UpdateWorkflow(UpdateSubmitAnnotations, "c", good.callbacks(), SubmitAnnotationsRequest{Round: 1, Dataset: "wf-human-r1"})
	}, time.Hour)
	env.ExecuteWorkflow(WorkflowType, RunInput{})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, StateWaitingAnnotations, st.State)
	require.Equal(t, 1, st.WaitingRound)
	require.ErrorContains(t, badName.rejected, "is not a dataset name")
	require.ErrorContains(t, badRound.rejected, "waits for round 1's")
	require.NoError(t, good.rejected)
	calls := f.Calls()
	i := indexOf(calls, "Annotate r1 kind=human policy=avg-dpo-r1 dataset=wf-human-r1")
	require.NotEqual(t, -1, i, "%v", calls)
	require.Less(t, i, indexOf(calls, "BeginRound r2"))
}

func TestAnnotationTimeoutFailsTheRun(t *testing.T) {
	p := testPlan()
	p.Annotator, p.AnnotationTimeout = AnnotatorHuman, 2*time.Hour
	f := newFake(p)
	env := newEnv(t, f)
	env.ExecuteWorkflow(WorkflowType, RunInput{})
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "round 1: no annotations were submitted within 2h0m0s")
	require.Contains(t, f.Calls(), "FinishRun failed final=")
}

func TestCancellationRunsTheCleanup(t *testing.T) {
	p := testPlan()
	p.Annotator = AnnotatorHuman
	f := newFake(p)
	env := newEnv(t, f)
	env.RegisterDelayedCallback(func() { env.CancelWorkflow() }, time.Hour)
	env.ExecuteWorkflow(WorkflowType, RunInput{})
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.True(t, temporal.IsCanceledError(err), "%v", err)
	calls := f.Calls()
	require.Equal(t, "CancelRun wf", calls[len(calls)-1])
	require.Equal(t, -1, indexOf(calls, "FinishRun"))
}

func TestNonRetryableActivityErrorFailsTheRun(t *testing.T) {
	f := newFake(testPlan())
	f.failOn = "Train dpo r1 v1"
	f.fail = temporal.NewNonRetryableApplicationError("dpo: loss is NaN at step 7 (diverged)", ErrDiverged, nil)
	env := newEnv(t, f)
	env.ExecuteWorkflow(WorkflowType, RunInput{})
	err := env.GetWorkflowError()
	require.Error(t, err)
	require.Contains(t, err.Error(), "dpo: loss is NaN at step 7 (diverged)")
	calls := f.Calls()
	require.Equal(t, 1, countPrefix(calls, "Train dpo r1 v1"), "a non-retryable error is not retried")
	require.Equal(t, -1, indexOf(calls, "BeginRound r2"))
	require.Equal(t, "FinishRun failed final=", calls[len(calls)-1])
	fin := f.reqs[ActFinishRun][0].(FinishRunRequest)
	require.Contains(t, fin.Error, "loss is NaN at step 7")
}

func TestRetryableActivityErrorIsRetried(t *testing.T) {
	f := newFake(testPlan())
	f.failOn = "Sample r1 shard 1/3"
	f.fail = fmt.Errorf("connection reset")
	env := newEnv(t, f)
	env.ExecuteWorkflow(WorkflowType, RunInput{Rounds: 1})
	require.Error(t, env.GetWorkflowError())
	require.Equal(t, maxAttempts, countPrefix(f.Calls(), "Sample r1 shard 1/3"))
}

func TestInvalidInputFailsBeforeAnyWork(t *testing.T) {
	tests := []struct {
		name string
		in   RunInput
		want string
	}{
		{"negative rounds", RunInput{Rounds: -1}, "input rounds: must be >= 0, got -1"},
		{"annotator", RunInput{Annotator: "crowd"}, `input annotator: "crowd" is not simulated, file or human`},
		{"timeout", RunInput{AnnotationTimeout: "soon"}, `input annotation_timeout: "soon" is not a positive duration`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake(testPlan())
			env := newEnv(t, f)
			env.ExecuteWorkflow(WorkflowType, tc.in)
			err := env.GetWorkflowError()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
			require.Empty(t, f.Calls())
		})
	}
}

func TestScheduledRunContinuesFromLastCompletion(t *testing.T) {
	f := newFake(testPlan())
	env := newEnv(t, f)
	env.SetLastCompletionResult(RunResult{RunID: "prev", FinalModel: "model-prev"})
	env.ExecuteWorkflow(WorkflowType, RunInput{Series: "nightly", Rounds: 1})
	require.NoError(t, env.GetWorkflowError())
	require.Equal(t, "model-prev", f.reqs[ActStartRun][0].(StartRunRequest).ContinueFrom)
	require.Contains(t, f.Calls(), "BeginRound r1 policy=model-prev")
}

func TestStatusReportsStagesAndMetrics(t *testing.T) {
	f := newFake(testPlan())
	env := newEnv(t, f)
	env.ExecuteWorkflow(WorkflowType, RunInput{})
	require.NoError(t, env.GetWorkflowError())
	v, err := env.QueryWorkflow(QueryStatus)
	require.NoError(t, err)
	var st Status
	require.NoError(t, v.Get(&st))
	require.Equal(t, StateCompleted, st.State)
	require.Equal(t, "avg-dpo-r2", st.FinalModel)
	require.Equal(t, 0.2, st.Metrics["round-2/dpo/accuracy"])
	require.Equal(t, 8.0, st.Metrics["round-1/annotate/pairs"])
	var names []string
	for _, s := range st.Stages {
		require.Equal(t, StageCompleted, s.State, "%+v", s)
		names = append(names, fmt.Sprintf("%d/%s", s.Round, s.Stage))
	}
	require.Equal(t, []string{"1/reward", "1/sampling", "1/sft", "1/dpo", "1/summary", "1/annotate",
		"2/reward", "2/sampling", "2/sft", "2/dpo", "2/summary"}, names)
}

func TestActivitiesRouteToTheirTaskQueues(t *testing.T) {
	p := testPlan()
	p.Rounds, p.TrainingQueue, p.SamplingQueue = 1, "gpu", "sampling"
	f := newFake(p)
	env := newEnv(t, f)
	var mu sync.Mutex
	queues := map[string]map[string]bool{}
	env.SetOnActivityStartedListener(func(info *activity.Info, _ context.Context, _ converter.EncodedValues) {
		mu.Lock()
		defer mu.Unlock()
		if queues[info.ActivityType.Name] == nil {
			queues[info.ActivityType.Name] = map[string]bool{}
		}
		queues[info.ActivityType.Name][info.TaskQueue] = true
	})
	env.ExecuteWorkflow(WorkflowType, RunInput{})
	require.NoError(t, env.GetWorkflowError())
	want := map[string]string{
		ActTrainReward: "gpu", ActTrainSFT: "gpu", ActTrainDPO: "gpu", ActAverage: "gpu", ActEvaluate: "gpu",
		ActSampleShard: "sampling",
	}
	for act, q := range want {
		require.Equal(t, map[string]bool{q: true}, queues[act], act)
	}
	for _, act := range []string{ActStartRun, ActBeginRound, ActFinishRound, ActFinishRun} {
		require.Len(t, queues[act], 1, act)
		require.NotContains(t, queues[act], "gpu", act)
		require.NotContains(t, queues[act], "sampling", act)
	}
}
