package activities

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/workflows"
)

// StartRun resolves the run's config (preset, overrides and the input's fields),
// snapshots it into the runs table under the workflow ID, registers the base model and
// the task's datasets, and returns the plan. Retrying it returns the same plan: the
// first snapshot wins.
func (a *Activities) StartRun(ctx context.Context, req workflows.StartRunRequest) (workflows.Plan, error) {
	in := req.Input
	if err := in.Validate(); err != nil {
		return workflows.Plan{}, invalid("%v", err)
	}
	runID := req.WorkflowID
	cfg, err := a.resolveConfig(ctx, req)
	if err != nil {
		return workflows.Plan{}, err
	}
	snap, err := cfg.Snapshot()
	if err != nil {
		return workflows.Plan{}, err
	}
	run, err := a.db.CreateRun(ctx, datastore.Run{
		ID: runID, WorkflowID: req.WorkflowID, TemporalRunID: req.TemporalRunID,
		Series: in.Series, Preset: presetName(in.Preset), Config: snap, Status: datastore.StatusRunning,
	})
	if err != nil {
		return workflows.Plan{}, err
	}
	// A retry (or a restarted workflow with the same ID) keeps the first snapshot.
	if cfg, err = configs.FromJSON(run.Config); err != nil {
		return workflows.Plan{}, invalid("run %s: %v", runID, err)
	}
	n := names(cfg, runID)
	if err := a.ensureDemoData(ctx, cfg, n); err != nil {
		return workflows.Plan{}, err
	}
	for _, ds := range []string{n.Prompts, n.SFT} {
		if _, err := a.db.RecordDatasetArtifact(ctx, ds, "", 0); err != nil {
			return workflows.Plan{}, invalid("dataset %s: %v", ds, err)
		}
	}
	if _, err := a.db.CreateDataset(ctx, datastore.Dataset{Name: n.Annotations, Kind: datastore.KindPreferences,
		Source: "run " + runID, Description: "preference annotations collected by the run, tagged by round"}); err != nil {
		return workflows.Plan{}, err
	}
	initial := cfg.Model.Base
	if req.ContinueFrom != "" {
		initial = req.ContinueFrom
	} else if in.Series != "" {
		prev, err := a.db.LatestSeriesResult(ctx, in.Series)
		switch {
		case err == nil:
			initial = prev.ResultArtifactID
		case !errors.Is(err, datastore.ErrNotFound):
			return workflows.Plan{}, err
		}
	}
	hb := 10 * time.Second // cancellation arrives within ~8 s (heartbeats go out every 80% of it)
	if in.HeartbeatTimeout != "" {
		hb, _ = time.ParseDuration(in.HeartbeatTimeout) // validated above
	}
	var annTimeout time.Duration
	if in.AnnotationTimeout != "" {
		annTimeout, _ = time.ParseDuration(in.AnnotationTimeout)
	}
	if err := a.db.SetRunStatus(ctx, runID, datastore.StatusRunning, ""); err != nil {
		return workflows.Plan{}, err
	}
	return workflows.Plan{
		RunID: runID, Rounds: cfg.Rounds,
		RewardVariants: cfg.Reward.Variants, SFTVariants: cfg.SFT.Variants, DPOVariants: cfg.DPO.Variants,
		Shards: max(cfg.Sampling.Shards, 1), Annotator: cfg.Annotator.Kind, RequireApproval: in.RequireApproval,
		AnnotationTimeout: annTimeout, HeartbeatTimeout: hb, Seed: cfg.Model.Seed,
		BaseModel: cfg.Model.Base, InitialPolicy: initial,
		RewardInit: cfg.Reward.Init, SamplingPolicy: cfg.Sampling.Policy, SFTInit: cfg.SFT.Init,
		DPOInit: cfg.DPO.Init, DPOReference: cfg.DPO.Reference,
		Prompts: n.Prompts, EvalPrompts: n.EvalPrompts, SFTData: n.SFT, Preferences: n.Preferences,
		EvalPreferences: n.EvalPreferences, Annotations: n.Annotations,
		NeedInitialAnnotations: n.Preferences == "",
		TrainingQueue:          cfg.Temporal.TrainingTaskQueue, SamplingQueue: cfg.Temporal.SamplingTaskQueue,
	}, nil
}

func presetName(p string) string {
	if p == "" {
		return configs.DefaultPreset
	}
	return p
}

// resolveConfig loads the config and folds the input's fields into it, registering the
// base model so that model.base is an artifact ID in the snapshot.
func (a *Activities) resolveConfig(ctx context.Context, req workflows.StartRunRequest) (*configs.Config, error) {
	in := req.Input
	env := a.d.Env
	if env == nil {
		env = processEnv()
	}
	cfg, err := configs.Load(configs.Sources{Preset: in.Preset, Sets: in.Overrides, Env: env})
	if err != nil {
		return nil, invalid("config: %v", err)
	}
	if in.Rounds > 0 {
		cfg.Rounds = in.Rounds
	}
	if in.Annotator != "" {
		cfg.Annotator.Kind = in.Annotator
	}
	if in.Seed != 0 {
		cfg.Model.Seed = in.Seed
	}
	d := in.Datasets
	for _, f := range []struct {
		dst *string
		v   string
	}{{&cfg.Datasets.Prompts, d.Prompts}, {&cfg.Datasets.EvalPrompts, d.EvalPrompts}, {&cfg.Datasets.SFT, d.SFT},
		{&cfg.Datasets.Preferences, d.Preferences}, {&cfg.Datasets.EvalPreferences, d.EvalPreferences}} {
		if f.v != "" {
			*f.dst = f.v
		}
	}
	for _, ds := range []string{cfg.Datasets.Prompts, cfg.Datasets.EvalPrompts, cfg.Datasets.SFT, cfg.Datasets.Preferences, cfg.Datasets.EvalPreferences} {
		if ds == "" {
			continue
		}
		if _, err := a.db.GetDataset(ctx, ds); err != nil {
			return nil, invalid("dataset %s: %v (import it with posttrain data import)", ds, err)
		}
	}
	if cfg.Annotator.Kind == configs.AnnotatorFile {
		if cfg.Annotator.File == "" {
			return nil, invalid("annotator.kind is file but annotator.file is empty")
		}
		if _, err := os.Stat(cfg.Annotator.File); err != nil {
			return nil, invalid("annotator.file: %v", err)
		}
	}
	base := cfg.Model.Base
	if in.BaseModel != "" {
		base = in.BaseModel
	}
	id, err := a.registerBase(ctx, base)
	if err != nil {
		return nil, err
	}
	cfg.Model.Base = id
	if err := cfg.Validate(); err != nil {
		return nil, invalid("config: %v", err)
	}
	return cfg, nil
}

// registerBase turns the base model reference (an artifact ID, a model directory, or ""
// for the shipped model) into an artifact ID.
func (a *Activities) registerBase(ctx context.Context, base string) (string, error) {
	if base != "" {
		if _, err := a.db.GetArtifact(ctx, base); err == nil {
			return base, nil
		} else if !errors.Is(err, datastore.ErrNotFound) {
			return "", err
		}
	}
	dir := base
	if dir == "" {
		if a.d.DefaultBaseModel == nil {
			return "", invalid("no base model: set model.base (an artifact ID or a model directory) or the input's base_model")
		}
		var err error
		if dir, err = a.d.DefaultBaseModel(ctx); err != nil {
			return "", invalid("shipped base model: %v", err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, checkpoint.ConfigFile)); err != nil {
		return "", invalid("base model %q is neither an artifact ID nor a model directory: %v", base, err)
	}
	if _, _, err := loadTokenizer(dir); err != nil {
		return "", err
	}
	art, err := a.putModel(ctx, dir, "model", datastore.StageKey{}, 0, map[string]any{"role": "base", "source": dir}, nil)
	if err != nil {
		return "", err
	}
	return art.ID, nil
}

// BeginRound records that a round started and the policy it samples with.
func (a *Activities) BeginRound(ctx context.Context, r workflows.RoundRef) error {
	if _, err := a.db.StartRound(ctx, r.RunID, r.Round, r.Policy); err != nil {
		return err
	}
	return a.db.SetRoundStatus(ctx, r.RunID, r.Round, datastore.StatusRunning)
}

// FinishRound writes the round's summary: its metrics (upserted, step 0) and the
// rounds row with the final model.
func (a *Activities) FinishRound(ctx context.Context, s workflows.RoundSummary) error {
	r := s.Result
	ms := make([]datastore.Metric, 0, len(s.StageSeconds)+1)
	for stage, secs := range s.StageSeconds {
		ms = append(ms, datastore.Metric{RunID: s.RunID, Round: r.Round, Stage: datastore.StageSummary, Variant: stage, Name: "seconds", Value: secs})
	}
	if err := a.db.RecordMetrics(ctx, ms); err != nil {
		return err
	}
	summary := map[string]any{"reward_model": r.RewardModel, "sft_model": r.SFTModel, "final_model": r.FinalModel,
		"metrics": r.Metrics, "stage_seconds": s.StageSeconds}
	return a.db.FinishRound(ctx, s.RunID, r.Round, datastore.StatusCompleted, r.FinalModel, summary, "")
}

// FinishRun records the run's end and its final model.
func (a *Activities) FinishRun(ctx context.Context, req workflows.FinishRunRequest) error {
	if req.FinalModel != "" {
		if err := a.db.SetRunResult(ctx, req.RunID, req.FinalModel); err != nil {
			return err
		}
	}
	status := datastore.StatusCompleted
	if req.Status == workflows.StateFailed {
		status = datastore.StatusFailed
		if _, err := a.db.CancelStages(ctx, req.RunID); err != nil {
			return err
		}
	}
	return a.db.SetRunStatus(ctx, req.RunID, status, req.Error)
}

// CancelRun is the cleanup of a cancelled run: unfinished stages and the run are marked
// cancelled.
func (a *Activities) CancelRun(ctx context.Context, runID string) error {
	if _, err := a.db.CancelStages(ctx, runID); err != nil {
		return err
	}
	rounds, err := a.db.ListRounds(ctx, runID)
	if err != nil {
		return err
	}
	for _, r := range rounds {
		if r.Status == datastore.StatusRunning || r.Status == datastore.StatusPending || r.Status == datastore.StatusPaused || r.Status == datastore.StatusWaiting {
			if err := a.db.SetRoundStatus(ctx, runID, r.N, datastore.StatusCancelled); err != nil {
				return err
			}
		}
	}
	return a.db.SetRunStatus(ctx, runID, datastore.StatusCancelled, "cancelled")
}

// processEnv is the process environment as a map.
func processEnv() map[string]string {
	out := map[string]string{}
	for _, kv := range os.Environ() {
		for i := 0; i < len(kv); i++ {
			if kv[i] == '=' {
				out[kv[:i]] = kv[i+1:]
				break
			}
		}
	}
	return out
}
