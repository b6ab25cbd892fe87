package activities

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/posttrain/posttrain/averaging"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/workflows"
)

// Average builds the stage's model soup from its variants (uniform, weighted or greedy,
// per the config) and records it with a "variant" lineage edge from each input (greedy:
// from each kept input, see greedyAverage).
func (a *Activities) Average(ctx context.Context, req workflows.AverageRequest) (workflows.ModelResult, error) {
	cfg, err := a.config(ctx, req.RunID)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	method, weights := cfg.SFT.Averaging, cfg.SFT.AverageWeights
	kind := "model"
	switch req.Stage {
	case workflows.StageReward:
		method, weights, kind = cfg.Reward.Averaging, cfg.Reward.AverageWeights, "reward_model"
	case workflows.StageDPO:
		method, weights = cfg.DPO.Averaging, cfg.DPO.AverageWeights
	case workflows.StageSFT:
	default:
		return workflows.ModelResult{}, invalid("average: unknown stage %q", req.Stage)
	}
	if len(req.Inputs) == 0 {
		return workflows.ModelResult{}, invalid("average %s: no inputs", req.Stage)
	}
	key := datastore.StageKey{RunID: req.RunID, Round: req.Round, Kind: datastore.StageAverage, Variant: req.Stage}
	st, err := a.db.StartStage(ctx, key, attempt(ctx))
	if err != nil {
		return workflows.ModelResult{}, err
	}
	if st.Status == datastore.StatusCompleted && st.OutputArtifactID != "" {
		return workflows.ModelResult{ArtifactID: st.OutputArtifactID}, nil
	}
	pl := startPulse(ctx, workflows.Progress{Stage: datastore.StageAverage}, pulseEvery)
	defer pl.Stop()
	dirs := make([]string, len(req.Inputs))
	for i, id := range req.Inputs {
		if dirs[i], err = a.modelDir(ctx, id); err != nil {
			return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, err)
		}
	}
	out := filepath.Join(a.workDir(key), "out")
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, err)
	}
	opts := averaging.Options{Overwrite: true, Progress: func(done, total int) {
		heartbeat(ctx, workflows.Progress{Stage: datastore.StageAverage, Step: done, Total: total})
	}}
	var res *averaging.Result
	var greedy greedyOutcome
	switch method {
	case configs.AverageWeighted:
		res, err = averaging.Weighted(ctx, out, dirs, weights, opts)
	case configs.AverageUniform, "":
		res, err = averaging.Uniform(ctx, out, dirs, opts)
	case configs.AverageGreedy:
		if greedy, err = a.greedyAverage(ctx, cfg, req, dirs, out, opts, pl); err == nil {
			res = greedy.res
		}
	default:
		err = invalid("%s.averaging %q: not one of uniform, weighted, greedy", req.Stage, method)
	}
	if err != nil {
		return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, classify(fmt.Sprintf("average %s", req.Stage), err))
	}
	parents := greedy.parents
	if parents == nil {
		for _, id := range req.Inputs {
			parents = append(parents, [2]string{"variant", id})
		}
	}
	meta := map[string]any{"stage": req.Stage, "method": string(res.Method), "weights": res.Weights}
	for k, v := range greedy.meta {
		meta[k] = v // greedy: the steps, and weights per input (0 for a dropped one)
	}
	art, err := a.putModel(ctx, out, kind, key, st.ID, meta, parents)
	if err != nil {
		return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, err)
	}
	if err := a.db.FinishStage(ctx, st.ID, datastore.StatusCompleted, art.ID, ""); err != nil {
		return workflows.ModelResult{}, err
	}
	return workflows.ModelResult{ArtifactID: art.ID}, nil
}
