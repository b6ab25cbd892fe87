package activities

import (
	"context"
	"fmt"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/datastore/jsonl"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/sampling"
	"github.com/posttrain/posttrain/workflows"
)

// SampleShard runs rejection sampling on one shard of the round's prompts: K samples
// per prompt from the policy, scored by the round's reward model, the best kept. Each
// prompt's candidates are upserted as soon as it finishes, so a retried shard skips the
// prompts already in PostgreSQL and rewrites nothing twice.
func (a *Activities) SampleShard(ctx context.Context, req workflows.SampleRequest) (workflows.SampleResult, error) {
	cfg, err := a.config(ctx, req.RunID)
	if err != nil {
		return workflows.SampleResult{}, err
	}
	n := names(cfg, req.RunID)
	key := datastore.StageKey{RunID: req.RunID, Round: req.Round, Kind: datastore.StageSampling, Variant: fmt.Sprintf("shard-%d", req.Shard)}
	st, err := a.db.StartStage(ctx, key, attempt(ctx))
	if err != nil {
		return workflows.SampleResult{}, err
	}
	pl := startPulse(ctx, workflows.Progress{Stage: datastore.StageSampling}, pulseEvery)
	defer pl.Stop()
	all, err := a.trainPrompts(ctx, n)
	if err != nil {
		return workflows.SampleResult{}, a.finishFailed(ctx, st.ID, err)
	}
	rows := roundSlice(all, cfg.Sampling.PromptsPerRound, req.Round, 0)
	if req.Shards < 1 || req.Shard < 0 || req.Shard >= req.Shards {
		return workflows.SampleResult{}, a.finishFailed(ctx, st.ID, invalid("shard %d of %d does not exist", req.Shard, req.Shards))
	}
	var shardPrompts int
	if st.Status != datastore.StatusCompleted {
		if shardPrompts, err = a.sample(ctx, cfg, req, rows); err != nil {
			return workflows.SampleResult{}, a.finishFailed(ctx, st.ID, classify("sampling", err))
		}
	}
	res, err := a.shardResult(ctx, req)
	if err != nil {
		return workflows.SampleResult{}, err
	}
	if shardPrompts == 0 {
		shardPrompts = len(rows) / req.Shards
	}
	res.Prompts = shardPrompts
	if err := a.db.FinishStage(ctx, st.ID, datastore.StatusCompleted, "", ""); err != nil {
		return workflows.SampleResult{}, err
	}
	return res, nil
}

// sample encodes the round's prompts (all of them, so prompt indices and seeds match an
// unsharded run), takes the request's shard and samples it; it returns the shard's size.
func (a *Activities) sample(ctx context.Context, cfg *configs.Config, req workflows.SampleRequest, rows []datastore.Prompt) (int, error) {
	done := map[string]bool{}
	prev, err := a.db.ListCandidates(ctx, datastore.CandidateFilter{RunID: req.RunID, Round: req.Round})
	if err != nil {
		return 0, err
	}
	for _, c := range prev {
		done[c.PromptID] = true
	}
	policyDir, err := a.modelDir(ctx, req.Policy)
	if err != nil {
		return 0, err
	}
	rmDir, err := a.modelDir(ctx, req.RewardModel)
	if err != nil {
		return 0, err
	}
	pool := a.pool(cfg)
	defer pool.Close()
	policy, tok, _, err := loadCausal(ctx, policyDir, pool)
	if err != nil {
		return 0, err
	}
	rm, err := checkpoint.LoadAsClassifier(ctx, rmDir, pool, checkpoint.ScoreInit{})
	if err != nil {
		return 0, invalid("%v", err)
	}
	s := cfg.Sampling
	scorer, err := reward.NewScorer(rm, max(s.BatchSize, 1), rm.Config.MaxPositionEmbeddings)
	if err != nil {
		return 0, invalid("%v", err)
	}
	var systems []string
	if sys := s.SystemPrompt(req.Round); sys != "" {
		systems = []string{sys}
	}
	drows := make([]datasets.Prompt, len(rows))
	for i, r := range rows {
		drows[i] = jsonl.ToPrompt(r)
		drows[i].ID = r.ID
	}
	prompts, err := sampling.EncodePrompts(drows, datasets.Encoder{Tok: tok, MaxLen: policy.Config.MaxPositionEmbeddings}, systems)
	if err != nil {
		return 0, invalid("%v", err)
	}
	opts := sampling.Options{
		K:      s.K,
		Params: sampling.Params{Temperature: s.Temperature, TopK: s.TopK, TopP: s.TopP, MaxNewTokens: s.MaxNewTokens, StopTokens: stopTokens(tok)},
		Seed:   uint64(req.Seed)*1000003 + uint64(req.Round), KVBudget: s.KVBudgetBytes,
		Select:    sampling.Selection{TopN: s.TopN, MinReward: s.MinReward, Dedup: s.Dedup},
		Verifier:  answerVerifier(s.Verify, rows),
		Done:      done,
		Tokenizer: tok,
		Progress: func(p sampling.Progress) {
			heartbeat(ctx, workflows.Progress{Stage: datastore.StageSampling, Step: p.PromptsDone, Total: p.PromptsTotal})
		},
		OnPrompt: func(p *sampling.Prompt, cands []sampling.Candidate) error {
			rows := make([]datastore.Candidate, len(cands))
			for i, c := range cands {
				rows[i] = datastore.Candidate{RunID: req.RunID, Round: req.Round, PromptID: p.ID, SampleIndex: c.SampleIndex,
					Text: cleanText(c.Text), TokenIDs: c.Tokens, Reward: c.Reward, Verified: c.Verified, Selected: c.Selected, Shard: req.Shard}
			}
			return a.db.RecordCandidates(context.WithoutCancel(ctx), rows)
		},
	}
	shard, err := sampling.Shard(prompts, req.Shards, req.Shard)
	if err != nil {
		return 0, invalid("%v", err)
	}
	_, err = sampling.Run(ctx, policy, scorer, shard, opts)
	return len(shard), err
}

// answerVerifier is the sampling.verify check: with "answer", a candidate must match the
// prompt's reference answer (metadata.answer); prompts without one are not checked. It
// returns nil (no verifier) for "none".
func answerVerifier(mode string, rows []datastore.Prompt) sampling.Verifier {
	if mode != configs.VerifyAnswer {
		return nil
	}
	answers := make(map[string]string, len(rows))
	for _, r := range rows {
		if ans, ok := r.Metadata["answer"].(string); ok {
			answers[r.ID] = ans
		}
	}
	return sampling.AnswerVerifier(func(p *sampling.Prompt) string { return answers[p.ID] })
}

// shardResult counts the shard's candidates in PostgreSQL.
func (a *Activities) shardResult(ctx context.Context, req workflows.SampleRequest) (workflows.SampleResult, error) {
	cands, err := a.db.ListCandidates(ctx, datastore.CandidateFilter{RunID: req.RunID, Round: req.Round})
	if err != nil {
		return workflows.SampleResult{}, err
	}
	res := workflows.SampleResult{Shard: req.Shard}
	var sum float64
	for _, c := range cands {
		if c.Shard != req.Shard {
			continue
		}
		res.Candidates++
		sum += c.Reward
		if c.Selected {
			res.Selected++
		}
	}
	if res.Candidates > 0 {
		res.MeanReward = sum / float64(res.Candidates)
	}
	return res, nil
}
