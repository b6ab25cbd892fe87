package workflows

import (
	"fmt"

	"go.temporal.io/sdk/workflow"
)

// round runs one PostTrainingRound: it holds the round's state while its stages run.
type round struct {
	in     RoundInput
	plan   Plan
	paused bool
	parent *workflow.Execution
	res    RoundResult
	secs   map[string]float64
}

// PostTrainingRound is one round of the Llama 3 loop (a child workflow of PostTraining):
// reward-model variants, average, evaluation; rejection sampling over prompt shards;
// SFT variants, average, evaluation; DPO variants, average, evaluation; the summary.
func PostTrainingRound(ctx workflow.Context, in RoundInput) (RoundResult, error) {
	if err := in.Plan.Validate(); err != nil {
		return RoundResult{}, invalid(err)
	}
	r := &round{in: in, plan: in.Plan, res: RoundResult{Round: in.Round, Metrics: map[string]float64{}}, secs: map[string]float64{}}
	if info := workflow.GetInfo(ctx); info.ParentWorkflowExecution != nil {
		r.parent = info.ParentWorkflowExecution
	}
	r.listen(ctx)

	begin := RoundRef{RunID: r.plan.RunID, Round: in.Round, Policy: in.Policy}
	if err := workflow.ExecuteActivity(bookkeepingCtx(ctx), ActBeginRound, begin).Get(ctx, nil); err != nil {
		return RoundResult{}, fmt.Errorf("round %d: begin: %w", in.Round, err)
	}
	steps := []struct {
		stage string
		run   func(workflow.Context) error
	}{
		{StageReward, r.reward},
		{StageSampling, r.sampling},
		{StageSFT, r.sft},
		{StageDPO, r.dpo},
	}
	for _, s := range steps {
		if err := r.stage(ctx, s.stage, s.run); err != nil {
			return RoundResult{}, err
		}
	}
	err := r.stage(ctx, StageSummary, func(ctx workflow.Context) error {
		sum := RoundSummary{RunID: r.plan.RunID, Result: r.res, StageSeconds: r.secs}
		return workflow.ExecuteActivity(bookkeepingCtx(ctx), ActFinishRound, sum).Get(ctx, nil)
	})
	if err != nil {
		return RoundResult{}, err
	}
	return r.res, nil
}

// listen handles the pause and resume signals the parent forwards.
func (r *round) listen(ctx workflow.Context) {
	pause := workflow.GetSignalChannel(ctx, SignalPause)
	resume := workflow.GetSignalChannel(ctx, SignalResume)
	workflow.Go(ctx, func(ctx workflow.Context) {
		for {
			sel := workflow.NewSelector(ctx)
			sel.AddReceive(pause, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.paused = true })
			sel.AddReceive(resume, func(c workflow.ReceiveChannel, _ bool) { c.Receive(ctx, nil); r.paused = false })
			sel.Select(ctx)
		}
	})
}

// stage waits while paused, tells the parent, runs fn and reports the outcome.
func (r *round) stage(ctx workflow.Context, name string, fn func(workflow.Context) error) error {
	if err := workflow.Await(ctx, func() bool { return !r.paused }); err != nil {
		return err
	}
	r.report(ctx, RoundProgress{Round: r.in.Round, Stage: name, State: StageRunning})
	start := workflow.Now(ctx)
	err := fn(ctx)
	r.secs[name] = workflow.Now(ctx).Sub(start).Seconds()
	if err != nil {
		r.report(ctx, RoundProgress{Round: r.in.Round, Stage: name, State: StageFailed})
		return fmt.Errorf("round %d: %s: %w", r.in.Round, name, err)
	}
	r.report(ctx, RoundProgress{Round: r.in.Round, Stage: name, State: StageCompleted, Metrics: r.stageMetrics(name)})
	return nil
}

// stageMetrics are the round's metrics of one stage.
func (r *round) stageMetrics(stage string) map[string]float64 {
	prefix := MetricKey(r.in.Round, stage, "")
	out := map[string]float64{}
	for _, k := range workflow.DeterministicKeys(r.res.Metrics) {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			out[k] = r.res.Metrics[k]
		}
	}
	return out
}

// report signals the parent without waiting: progress is advisory and must not slow
// the round down.
func (r *round) report(ctx workflow.Context, p RoundProgress) {
	if r.parent == nil {
		return
	}
	workflow.SignalExternalWorkflow(ctx, r.parent.ID, r.parent.RunID, SignalRoundProgress, p)
}

// model picks a stage's start point.
func (r *round) model(from string) string {
	switch from {
	case FromPrevious:
		return r.in.Policy // round 1: the plan's initial policy
	case FromSFT:
		if r.res.SFTModel != "" {
			return r.res.SFTModel
		}
	}
	return r.plan.BaseModel
}

// variants trains n variants of a stage in parallel and returns their models in
// variant order.
func (r *round) variants(ctx workflow.Context, activity string, n int, req TrainRequest) ([]string, error) {
	tctx := trainingCtx(ctx, r.plan)
	futures := make([]workflow.Future, n)
	for v := range n {
		q := req
		q.RunID, q.Round, q.Variant, q.Seed = r.plan.RunID, r.in.Round, v, r.plan.Seed+int64(v)
		futures[v] = workflow.ExecuteActivity(tctx, activity, q)
	}
	out := make([]string, n)
	var firstErr error
	for v, f := range futures {
		var m ModelResult
		if err := f.Get(ctx, &m); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("variant %d: %w", v, err)
			}
			continue
		}
		out[v] = m.ArtifactID
	}
	return out, firstErr
}

// averageAndEvaluate averages a stage's variants (a single variant is used as is) and
// evaluates the result, recording its metrics.
func (r *round) averageAndEvaluate(ctx workflow.Context, stage string, models []string, reference string) (string, error) {
	model := models[0]
	if len(models) > 1 {
		var m ModelResult
		req := AverageRequest{RunID: r.plan.RunID, Round: r.in.Round, Stage: stage, Inputs: models, Reference: reference}
		if err := workflow.ExecuteActivity(evalCtx(ctx, r.plan), ActAverage, req).Get(ctx, &m); err != nil {
			return "", fmt.Errorf("average: %w", err)
		}
		model = m.ArtifactID
	}
	prev := ""
	if r.in.Round > 1 {
		prev = r.in.Policy
	}
	var ev EvalResult
	req := EvalRequest{RunID: r.plan.RunID, Round: r.in.Round, Stage: stage, Model: model, Reference: reference, Previous: prev}
	if err := workflow.ExecuteActivity(evalCtx(ctx, r.plan), ActEvaluate, req).Get(ctx, &ev); err != nil {
		return "", fmt.Errorf("evaluate: %w", err)
	}
	for _, k := range workflow.DeterministicKeys(ev.Metrics) {
		r.res.Metrics[MetricKey(r.in.Round, stage, k)] = ev.Metrics[k]
	}
	return model, nil
}

func (r *round) reward(ctx workflow.Context) error {
	init := r.plan.BaseModel
	if r.plan.RewardInit == FromPrevious && r.in.PreviousRM != "" {
		init = r.in.PreviousRM
	}
	models, err := r.variants(ctx, ActTrainReward, r.plan.RewardVariants, TrainRequest{Init: init})
	if err != nil {
		return err
	}
	r.res.RewardModel, err = r.averageAndEvaluate(ctx, StageReward, models, "")
	return err
}

func (r *round) sampling(ctx workflow.Context) error {
	policy := r.in.Policy
	if r.plan.SamplingPolicy == FromBase {
		policy = r.plan.BaseModel
	}
	sctx := samplingCtx(ctx, r.plan)
	futures := make([]workflow.Future, r.plan.Shards)
	for s := range r.plan.Shards {
		req := SampleRequest{RunID: r.plan.RunID, Round: r.in.Round, Shard: s, Shards: r.plan.Shards,
			Policy: policy, RewardModel: r.res.RewardModel, Seed: r.plan.Seed}
		futures[s] = workflow.ExecuteActivity(sctx, ActSampleShard, req)
	}
	var prompts, cands, selected int
	var rewardSum float64
	var firstErr error
	for s, f := range futures {
		var res SampleResult
		if err := f.Get(ctx, &res); err != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("shard %d: %w", s, err)
			}
			continue
		}
		prompts += res.Prompts
		cands += res.Candidates
		selected += res.Selected
		rewardSum += res.MeanReward * float64(res.Candidates)
	}
	if firstErr != nil {
		return firstErr
	}
	if selected == 0 {
		// SFT still has the curated data; an untrained policy often finishes no sample
		// within max_new_tokens, and truncated samples are never selected.
		workflow.GetLogger(ctx).Warn("rejection sampling selected no sample; SFT uses the curated data only",
			"round", r.in.Round, "candidates", cands, "prompts", prompts)
	}
	key := func(n string) string { return MetricKey(r.in.Round, StageSampling, n) }
	r.res.Metrics[key("prompts")] = float64(prompts)
	r.res.Metrics[key("candidates")] = float64(cands)
	r.res.Metrics[key("selected")] = float64(selected)
	if cands > 0 {
		r.res.Metrics[key("mean_reward")] = rewardSum / float64(cands)
	}
	return nil
}

func (r *round) sft(ctx workflow.Context) error {
	models, err := r.variants(ctx, ActTrainSFT, r.plan.SFTVariants, TrainRequest{Init: r.model(r.plan.SFTInit)})
	if err != nil {
		return err
	}
	r.res.SFTModel, err = r.averageAndEvaluate(ctx, StageSFT, models, "")
	return err
}

func (r *round) dpo(ctx workflow.Context) error {
	ref := r.model(r.plan.DPOReference)
	models, err := r.variants(ctx, ActTrainDPO, r.plan.DPOVariants, TrainRequest{Init: r.model(r.plan.DPOInit), Reference: ref})
	if err != nil {
		return err
	}
	r.res.FinalModel, err = r.averageAndEvaluate(ctx, StageDPO, models, ref)
	return err
}
