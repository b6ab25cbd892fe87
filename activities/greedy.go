package activities

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/posttrain/posttrain/averaging"
	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/dpo"
	"github.com/posttrain/posttrain/kernels"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/sft"
	"github.com/posttrain/posttrain/transformer"
	"github.com/posttrain/posttrain/workflows"
)

// stageScore is a stage's held-out score for greedy soups.
type stageScore struct {
	metric string // what the score is, e.g. "val_loss"
	dir    averaging.Direction
	source string // the dataset the held-out rows come from
	rows   int    // held-out rows scored
	score  averaging.ScoreFunc
	refID  string // the DPO reference artifact ("" for other stages)
}

// greedyOutcome is what the greedy soup adds to the Average activity's result.
type greedyOutcome struct {
	res     *averaging.Result
	meta    map[string]any
	parents [][2]string
}

// greedyAverage builds a greedy soup of a stage's variants (dirs[i] holds req.Inputs[i]),
// scoring with the stage's own held-out data: a reward model's pair accuracy on the
// held-out preferences, an SFT model's loss on the held-out SFT examples (else on the
// held-out prompts' ground-truth conversations), a DPO model's reward accuracy on the
// held-out preferences against the reference. Every candidate's fate is recorded as
// metrics (stage "average", variant = the stage, step = the order tried) and in the
// artifact's metadata; only kept variants get a "variant" lineage edge. Without
// held-out data there is nothing to rank by, so the soup falls back to uniform and
// says so in the metadata.
func (a *Activities) greedyAverage(ctx context.Context, cfg *configs.Config, req workflows.AverageRequest, dirs []string, out string, opts averaging.Options, pl *pulse) (greedyOutcome, error) {
	pool := a.pool(cfg)
	defer pool.Close()
	sc, err := a.greedyScore(ctx, cfg, req, dirs[0], pool)
	if err != nil {
		return greedyOutcome{}, err
	}
	if sc == nil {
		res, err := averaging.Uniform(ctx, out, dirs, opts)
		if err != nil {
			return greedyOutcome{}, err
		}
		parents := make([][2]string, len(req.Inputs))
		for i, id := range req.Inputs {
			parents[i] = [2]string{"variant", id}
		}
		return greedyOutcome{res: res, parents: parents, meta: map[string]any{"configured_method": configs.AverageGreedy,
			"greedy_fallback": fmt.Sprintf("no held-out %s data: uniform soup", req.Stage)}}, nil
	}
	// Every candidate is scored alone, then each but the best in a trial soup.
	done, total := 0, 2*len(dirs)-1
	score := func(ctx context.Context, dir string) (float64, error) {
		s, err := sc.score(ctx, dir)
		done++
		pl.Set(ctx, workflows.Progress{Stage: datastore.StageAverage, Step: done, Total: total})
		return s, err
	}
	g, err := averaging.Greedy(ctx, out, dirs, averaging.GreedyOptions{Options: opts, Score: score, Direction: sc.dir})
	if err != nil {
		return greedyOutcome{}, err
	}

	// Candidates are directories; map them back to artifact IDs (a directory given twice
	// is the same artifact twice, taken in input order).
	byDir := map[string][]int{}
	for i, d := range dirs {
		byDir[d] = append(byDir[d], i)
	}
	weights := make([]float64, len(dirs))
	kept := make([]string, 0, len(g.Ingredients))
	steps := make([]map[string]any, 0, len(g.Steps))
	var parents [][2]string
	if sc.refID != "" {
		parents = append(parents, [2]string{"reference", sc.refID})
	}
	key := datastore.StageKey{RunID: req.RunID, Round: req.Round, Kind: datastore.StageAverage, Variant: req.Stage}
	metric := func(step int, name string, v float64) datastore.Metric {
		return datastore.Metric{RunID: key.RunID, Round: key.Round, Stage: key.Kind, Variant: key.Variant, Step: int64(step), Name: name, Value: v}
	}
	ms := make([]datastore.Metric, 0, 4*len(g.Steps)+3)
	for n, s := range g.Steps {
		idx := byDir[s.Candidate]
		if len(idx) == 0 {
			return greedyOutcome{}, fmt.Errorf("greedy soup: step %d names %s, which is not an input", n+1, s.Candidate)
		}
		i := idx[0]
		byDir[s.Candidate] = idx[1:]
		id := req.Inputs[i]
		keptF := 0.0
		if s.Kept {
			keptF = 1
			kept = append(kept, id)
			parents = append(parents, [2]string{"variant", id})
		}
		steps = append(steps, map[string]any{"candidate": id, "input": i, "score": s.Score, "soup_score": s.SoupScore, "kept": s.Kept})
		ms = append(ms, metric(n+1, "greedy_candidate", float64(i)), metric(n+1, "greedy_score", s.Score),
			metric(n+1, "greedy_soup_score", s.SoupScore), metric(n+1, "greedy_kept", keptF))
	}
	for _, id := range kept {
		for i, in := range req.Inputs {
			if in == id {
				weights[i] = 1 / float64(len(kept))
				break
			}
		}
	}
	ms = append(ms, metric(0, "greedy_kept_count", float64(len(kept))), metric(0, "greedy_final_score", g.Score),
		metric(0, "greedy_held_out", float64(sc.rows)))
	if err := a.db.RecordMetrics(ctx, ms); err != nil {
		return greedyOutcome{}, err
	}
	meta := map[string]any{
		"weights": weights, "kept": kept, "greedy_steps": steps, "score_metric": sc.metric, "direction": g.Direction,
		"score": g.Score, "held_out_dataset": sc.source, "held_out_rows": sc.rows,
	}
	if sc.refID != "" {
		meta["reference"] = sc.refID
	}
	return greedyOutcome{res: &g.Result, meta: meta, parents: parents}, nil
}

// greedyScore builds the stage's held-out score, encoding the rows once with the first
// candidate's tokenizer (the soup checks that all candidates share it). It returns nil
// when the stage has no held-out data yet.
func (a *Activities) greedyScore(ctx context.Context, cfg *configs.Config, req workflows.AverageRequest, first string, pool *kernels.Pool) (*stageScore, error) {
	n := names(cfg, req.RunID)
	tok, _, err := loadTokenizer(first)
	if err != nil {
		return nil, err
	}
	mc, err := transformer.LoadConfig(filepath.Join(first, checkpoint.ConfigFile))
	if err != nil {
		return nil, invalid("%v", err)
	}
	enc := &datasets.Encoder{Tok: tok, MaxLen: min(cfg.Model.MaxSeqLen, mc.MaxPositionEmbeddings)}
	switch req.Stage {
	case workflows.StageReward:
		rows, err := a.evalPairs(ctx, cfg, n, req.Round)
		if err != nil || len(rows) == 0 {
			return nil, err
		}
		encoded, err := encodePreferences(enc, rows)
		if err != nil {
			return nil, err
		}
		return &stageScore{metric: "accuracy", dir: averaging.HigherIsBetter, source: rows[0].Dataset, rows: len(encoded),
			score: func(ctx context.Context, dir string) (float64, error) {
				m, err := checkpoint.Load(ctx, dir, pool)
				if err != nil {
					return 0, invalid("%v", err)
				}
				if !m.Config.IsSequenceClassifier() {
					return 0, invalid("greedy reward soup: %s is not a reward model", dir)
				}
				r, _, err := reward.Evaluate(ctx, m, encoded, reward.DefaultEvalOptions())
				return r.Accuracy, err
			}}, nil
	case workflows.StageSFT:
		rows, source, err := a.heldOutSFT(ctx, cfg, n)
		if err != nil || len(rows) == 0 {
			return nil, err
		}
		encoded, err := encodeSFT(enc, rows)
		if err != nil {
			return nil, err
		}
		return &stageScore{metric: "val_loss", dir: averaging.LowerIsBetter, source: source, rows: len(encoded),
			score: func(ctx context.Context, dir string) (float64, error) {
				m, err := loadPolicy(ctx, dir, pool)
				if err != nil {
					return 0, err
				}
				r, err := sft.Evaluate(ctx, m, encoded)
				return r.Loss, err
			}}, nil
	case workflows.StageDPO:
		rows, err := a.evalPairs(ctx, cfg, n, req.Round)
		if err != nil || len(rows) == 0 {
			return nil, err
		}
		refID, err := a.dpoReference(ctx, req)
		if err != nil {
			return nil, err
		}
		refDir, err := a.modelDir(ctx, refID)
		if err != nil {
			return nil, err
		}
		// The reference is frozen: loaded once, and its log-probs cached (by data and
		// reference hash) in the cache the DPO training uses.
		ref, err := loadPolicy(ctx, refDir, pool)
		if err != nil {
			return nil, err
		}
		pairs, err := dpoPairs(cfg, tok, ref, rows)
		if err != nil {
			return nil, err
		}
		opts := dpoOptions(cfg, filepath.Join(a.d.DataDir, "cache", "refcache"))
		return &stageScore{metric: "dpo_accuracy", dir: averaging.HigherIsBetter, source: rows[0].Dataset, rows: len(pairs),
			refID: refID,
			score: func(ctx context.Context, dir string) (float64, error) {
				policy, err := loadPolicy(ctx, dir, pool)
				if err != nil {
					return 0, err
				}
				r, err := dpo.Evaluate(ctx, policy, ref, pairs, opts)
				return r.Accuracy, err
			}}, nil
	}
	return nil, invalid("average: unknown stage %q", req.Stage)
}

// heldOutSFT are the SFT validation rows: the SFT dataset's eval split (what the SFT
// training validates on), else the held-out prompts with their ground-truth answers as
// conversations.
func (a *Activities) heldOutSFT(ctx context.Context, cfg *configs.Config, n dataNames) ([]datastore.SFTExample, string, error) {
	val, err := a.db.ListSFTExamples(ctx, datastore.DataFilter{Dataset: n.SFT, Split: datastore.SplitEval})
	if err != nil {
		return nil, "", err
	}
	if len(val) > 0 {
		return val, n.SFT, nil
	}
	prompts, err := a.evalPrompts(ctx, cfg, n)
	if err != nil {
		return nil, "", err
	}
	out := make([]datastore.SFTExample, 0, len(prompts))
	for i, p := range prompts {
		it, ok := item(p)
		if !ok {
			continue
		}
		conv := it.Conversation(it.Answer)
		msgs := make([]datastore.Message, len(conv))
		for j, m := range conv {
			msgs[j] = datastore.Message{Role: m.Role, Content: m.Content}
		}
		out = append(out, datastore.SFTExample{ID: p.ID, Dataset: n.EvalPrompts, Ord: int64(i), Messages: msgs})
	}
	return out, n.EvalPrompts, nil
}

// dpoReference is the DPO variants' reference: the request's, else the "reference"
// parent recorded on the first variant (requests from before the field existed).
func (a *Activities) dpoReference(ctx context.Context, req workflows.AverageRequest) (string, error) {
	if req.Reference != "" {
		return req.Reference, nil
	}
	edges, err := a.db.Lineage(ctx, req.Inputs[0])
	if err != nil {
		return "", err
	}
	for _, e := range edges {
		if e.Depth == 1 && e.Role == "reference" {
			return e.Parent, nil
		}
	}
	return "", invalid("greedy dpo soup: no reference model (the request names none and variant %s records none)", req.Inputs[0])
}

// loadPolicy loads a causal LM (not a reward model) from dir.
func loadPolicy(ctx context.Context, dir string, pool *kernels.Pool) (*transformer.Model, error) {
	m, err := checkpoint.Load(ctx, dir, pool)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if m.Config.IsSequenceClassifier() {
		return nil, invalid("model %s is a reward model; this soup needs causal LMs", dir)
	}
	return m, nil
}
