package activities

import (
	"context"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/dpo"
	"github.com/posttrain/posttrain/evaluation"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/workflows"
)

// Evaluate measures a stage's model on held-out data and stores the metrics (stage
// "eval", variant = the evaluated stage): a reward model's loss, accuracy and margin on
// held-out pairs; a policy's exact-match accuracy (overall and per capability), format
// compliance and mean length from greedy answers to the held-out prompts, plus for DPO
// the DPO metrics against the reference on held-out pairs.
func (a *Activities) Evaluate(ctx context.Context, req workflows.EvalRequest) (workflows.EvalResult, error) {
	cfg, err := a.config(ctx, req.RunID)
	if err != nil {
		return workflows.EvalResult{}, err
	}
	n := names(cfg, req.RunID)
	key := datastore.StageKey{RunID: req.RunID, Round: req.Round, Kind: datastore.StageEval, Variant: req.Stage}
	st, err := a.db.StartStage(ctx, key, attempt(ctx))
	if err != nil {
		return workflows.EvalResult{}, err
	}
	if st.Status == datastore.StatusCompleted {
		if ms, err := a.db.ListMetrics(ctx, datastore.MetricFilter{RunID: req.RunID, Round: req.Round, Stage: datastore.StageEval, Variant: req.Stage}); err == nil && len(ms) > 0 {
			out := map[string]float64{}
			for _, m := range ms {
				out[m.Name] = m.Value
			}
			return workflows.EvalResult{Metrics: out}, nil
		}
	}
	pl := startPulse(ctx, workflows.Progress{Stage: datastore.StageEval}, pulseEvery)
	defer pl.Stop()
	dir, err := a.modelDir(ctx, req.Model)
	if err != nil {
		return workflows.EvalResult{}, a.finishFailed(ctx, st.ID, err)
	}
	pool := a.pool(cfg)
	defer pool.Close()
	heldOut, err := a.evalPairs(ctx, cfg, n, req.Round)
	if err != nil {
		return workflows.EvalResult{}, a.finishFailed(ctx, st.ID, err)
	}
	var metrics map[string]float64
	switch req.Stage {
	case workflows.StageReward:
		metrics, err = a.evalReward(ctx, cfg, dir, pool, heldOut)
	case workflows.StageSFT, workflows.StageDPO:
		metrics, err = a.evalPolicy(ctx, cfg, n, dir, req.Previous, pool)
		if err == nil && req.Stage == workflows.StageDPO && req.Reference != "" && len(heldOut) > 0 {
			var dm map[string]float64
			if dm, err = a.evalDPO(ctx, cfg, dir, req.Reference, pool, heldOut); err == nil {
				for k, v := range dm {
					metrics[k] = v
				}
			}
		}
	default:
		err = invalid("evaluate: unknown stage %q", req.Stage)
	}
	if err != nil {
		return workflows.EvalResult{}, a.finishFailed(ctx, st.ID, classify("evaluate "+req.Stage, err))
	}
	ms := make([]datastore.Metric, 0, len(metrics))
	for _, k := range sortedKeys(metrics) {
		ms = append(ms, datastore.Metric{RunID: req.RunID, Round: req.Round, Stage: datastore.StageEval, Variant: req.Stage, Name: k, Value: metrics[k]})
	}
	if err := a.db.RecordMetrics(ctx, ms); err != nil {
		return workflows.EvalResult{}, a.finishFailed(ctx, st.ID, err)
	}
	if err := a.db.FinishStage(ctx, st.ID, datastore.StatusCompleted, req.Model, ""); err != nil {
		return workflows.EvalResult{}, err
	}
	return workflows.EvalResult{Metrics: metrics}, nil
}

// evalPairs are the held-out preference pairs known before the round's end.
func (a *Activities) evalPairs(ctx context.Context, cfg *configs.Config, n dataNames, round int) ([]datastore.PreferencePair, error) {
	if cfg.Datasets.EvalPreferences != "" {
		return a.preferences(ctx, n.EvalPreferences, "", nil)
	}
	return a.preferences(ctx, n.Annotations, datastore.SplitEval, func(r int) bool { return r < round })
}

func (a *Activities) evalReward(ctx context.Context, cfg *configs.Config, dir string, pool *kernels.Pool, rows []datastore.PreferencePair) (map[string]float64, error) {
	if len(rows) == 0 {
		return map[string]float64{"pairs": 0}, nil
	}
	m, err := checkpoint.LoadAsClassifier(ctx, dir, pool, checkpoint.ScoreInit{})
	if err != nil {
		return nil, invalid("%v", err)
	}
	tok, _, err := loadTokenizer(dir)
	if err != nil {
		return nil, err
	}
	enc := &datasets.Encoder{Tok: tok, MaxLen: min(cfg.Model.MaxSeqLen, m.Config.MaxPositionEmbeddings)}
	encoded, err := encodePreferences(enc, rows)
	if err != nil {
		return nil, err
	}
	res, _, err := reward.Evaluate(ctx, m, encoded, reward.DefaultEvalOptions())
	if err != nil {
		return nil, err
	}
	return map[string]float64{"pairs": float64(res.N), "loss": res.Loss, "accuracy": res.Accuracy, "mean_margin": res.MeanMargin}, nil
}

func (a *Activities) evalDPO(ctx context.Context, cfg *configs.Config, dir, refID string, pool *kernels.Pool, rows []datastore.PreferencePair) (map[string]float64, error) {
	refDir, err := a.modelDir(ctx, refID)
	if err != nil {
		return nil, err
	}
	policy, tok, _, err := loadCausal(ctx, dir, pool)
	if err != nil {
		return nil, err
	}
	ref, _, _, err := loadCausal(ctx, refDir, pool)
	if err != nil {
		return nil, err
	}
	pairs, err := dpoPairs(cfg, tok, policy, rows)
	if err != nil {
		return nil, err
	}
	res, err := dpo.Evaluate(ctx, policy, ref, pairs, dpoOptions(cfg, ""))
	if err != nil {
		return nil, err
	}
	return map[string]float64{"dpo_loss": res.DPOLoss, "dpo_margin": res.Margin, "dpo_accuracy": res.Accuracy,
		"rewards_chosen": res.RewardsChosen, "rewards_rejected": res.RewardsRejected}, nil
}

// evalPolicy answers the held-out prompts greedily (package evaluation) and scores the
// answers against the ground truth in the prompts' metadata; with a previous model, the
// win rate against its answers too.
func (a *Activities) evalPolicy(ctx context.Context, cfg *configs.Config, n dataNames, dir, previous string, pool *kernels.Pool) (map[string]float64, error) {
	prompts, err := a.evalPrompts(ctx, cfg, n)
	if err != nil {
		return nil, err
	}
	items := make([]demotask.Item, 0, len(prompts))
	for _, p := range prompts {
		// Prompts without a ground truth (metadata.answer) cannot be graded: a user's
		// dataset evaluates its reward model and DPO margins only.
		if it, ok := item(p); ok {
			items = append(items, it)
		}
	}
	if len(items) == 0 {
		return map[string]float64{"prompts": float64(len(prompts)), "graded": 0}, nil
	}
	opts := evaluation.Options{MaxNewTokens: cfg.Eval.MaxNewTokens, Progress: func(done, total int) {
		heartbeat(ctx, workflows.Progress{Stage: datastore.StageEval, Step: done, Total: total})
	}}
	if previous != "" {
		pdir, err := a.modelDir(ctx, previous)
		if err != nil {
			return nil, err
		}
		pm, ptok, _, err := loadCausal(ctx, pdir, pool)
		if err != nil {
			return nil, err
		}
		prev, err := evaluation.Run(ctx, pm, ptok, items, opts)
		if err != nil {
			return nil, err
		}
		opts.Previous = prev.Texts()
	}
	m, tok, _, err := loadCausal(ctx, dir, pool)
	if err != nil {
		return nil, err
	}
	rep, err := evaluation.Run(ctx, m, tok, items, opts)
	if err != nil {
		return nil, err
	}
	return rep.Metrics, nil
}

// stopTokens are the end-of-turn and end-of-text ids the tokenizer has.
func stopTokens(tok *tokenizer.Tokenizer) []int32 {
	var out []int32
	for _, id := range []int32{tok.EOT(), tok.EOS()} {
		if id >= 0 {
			out = append(out, id)
		}
	}
	return out
}
