package activities

import (
	"context"
	"fmt"
	"strings"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/datastore/jsonl"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/dpo"
	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
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
		metrics, err = a.evalPolicy(ctx, cfg, n, dir, pool)
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

// evalPolicy answers the held-out prompts greedily and scores the answers against the
// ground truth in the prompts' metadata.
func (a *Activities) evalPolicy(ctx context.Context, cfg *configs.Config, n dataNames, dir string, pool *kernels.Pool) (map[string]float64, error) {
	prompts, err := a.evalPrompts(ctx, cfg, n)
	if err != nil {
		return nil, err
	}
	m, tok, _, err := loadCausal(ctx, dir, pool)
	if err != nil {
		return nil, err
	}
	answers, finished, err := greedyAnswers(ctx, m, tok, prompts, cfg.Eval.MaxNewTokens)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{"prompts": float64(len(prompts))}
	var graded, correct, formatted, length float64
	perFam := map[string][2]float64{}
	for i, p := range prompts {
		length += float64(len(answers[i]))
		if finished[i] && !demotask.HasTailRepetition(answers[i]) && strings.TrimSpace(answers[i]) != "" {
			formatted++
		}
		it, ok := item(p)
		if !ok {
			continue
		}
		graded++
		f := perFam[string(it.Family)]
		f[1]++
		if it.Correct(answers[i]) {
			correct++
			f[0]++
		}
		perFam[string(it.Family)] = f
	}
	if len(prompts) > 0 {
		out["format_compliance"] = formatted / float64(len(prompts))
		out["mean_length"] = length / float64(len(prompts))
	}
	if graded > 0 {
		out["accuracy"] = correct / graded
		for fam, f := range perFam {
			out["accuracy_"+fam] = f[0] / f[1]
		}
	}
	return out, nil
}

// greedyAnswers decodes each prompt's greedy answer; finished says it ended with a stop
// token rather than at the length limit.
func greedyAnswers(ctx context.Context, m *transformer.Model, tok *tokenizer.Tokenizer, prompts []datastore.Prompt, maxNew int) ([]string, []bool, error) {
	if len(prompts) == 0 {
		return nil, nil, nil
	}
	eng, err := inference.NewEngine(m, inference.Options{MaxBatch: 64})
	if err != nil {
		return nil, nil, err
	}
	enc := &datasets.Encoder{Tok: tok}
	stops := stopTokens(tok)
	reqs := make([]inference.Request, len(prompts))
	for i, p := range prompts {
		ids, err := enc.EncodePrompt(jsonl.ToPrompt(p).Prompt)
		if err != nil {
			return nil, nil, invalid("eval prompt %s: %v", p.ID, err)
		}
		mx := min(maxNew, m.Config.MaxPositionEmbeddings-len(ids))
		if mx <= 0 {
			return nil, nil, invalid("eval prompt %s has %d tokens, no room left in the context window of %d", p.ID, len(ids), m.Config.MaxPositionEmbeddings)
		}
		reqs[i] = inference.Request{Prompt: ids, Samples: 1, Params: inference.Params{MaxNewTokens: mx, Greedy: true, StopTokens: stops}}
	}
	outs, err := eng.GenerateBatch(ctx, reqs, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("generate: %w", err)
	}
	answers := make([]string, len(outs))
	finished := make([]bool, len(outs))
	for i, o := range outs {
		c := o[0]
		toks := c.Tokens
		if c.FinishReason == inference.FinishStop && len(toks) > 0 {
			toks = toks[:len(toks)-1]
			finished[i] = true
		}
		answers[i] = cleanText(tok.Decode(toks))
	}
	return answers, finished, nil
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
