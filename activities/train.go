package activities

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/posttrain/posttrain/checkpoint"
	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/datastore/jsonl"
	"github.com/posttrain/posttrain/dpo"
	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/sft"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/transformer"
	"github.com/posttrain/posttrain/workflows"
)

// trainOutcome is what a stage's training body returns.
type trainOutcome struct {
	model     *transformer.Model
	tokJSON   []byte
	steps     int
	startStep int
	metrics   map[string]float64
}

// trainBody trains into outDir (resuming the run saved there when resume is set),
// reporting every update to progress.
type trainBody func(ctx context.Context, outDir string, resume bool, progress func(trainer.Progress)) (trainOutcome, error)

// stageRun is one training variant's bookkeeping.
type stageRun struct {
	key          datastore.StageKey
	artifactKind string
	every        int
	parents      [][2]string
	meta         map[string]any
}

// train runs a training variant durably: a completed stage returns its recorded output;
// otherwise the variant trains in its local work directory, resuming the checkpoint a
// previous attempt left there (the heartbeat details name it), heartbeating progress
// with the last saved checkpoint, and the final model is stored and recorded with its
// lineage and metrics.
func (a *Activities) train(ctx context.Context, sr stageRun, body trainBody) (workflows.ModelResult, error) {
	st, err := a.db.StartStage(ctx, sr.key, attempt(ctx))
	if err != nil {
		return workflows.ModelResult{}, err
	}
	if st.Status == datastore.StatusCompleted && st.OutputArtifactID != "" {
		return a.recordedResult(ctx, sr.key, st)
	}
	dir := a.workDir(sr.key)
	runDir := filepath.Join(dir, "run")
	host, _ := os.Hostname()
	resume := trainer.HasState(runDir)
	if hb, ok := lastHeartbeat(ctx); ok && hb.CheckpointDir != "" && hb.CheckpointDir != runDir {
		// The checkpoint lives on another worker's disk: start over here.
		resume = false
	}
	if !resume {
		if err := os.RemoveAll(runDir); err != nil {
			return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, fmt.Errorf("clear %s: %w", runDir, err))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, err)
	}

	pl := startPulse(ctx, workflows.Progress{Stage: sr.key.Kind, CheckpointStep: int(st.CheckpointStep), CheckpointDir: runDir, CheckpointHost: host}, pulseEvery)
	defer pl.Stop()
	var mu sync.Mutex
	var pending []datastore.Metric
	saved := int(st.CheckpointStep)
	flush := func(fctx context.Context) error {
		mu.Lock()
		ms := pending
		pending = nil
		mu.Unlock()
		if err := a.db.RecordMetrics(fctx, ms); err != nil {
			// Keep them for the next flush: a resume never redoes these steps.
			mu.Lock()
			pending = append(ms, pending...)
			mu.Unlock()
			return err
		}
		return nil
	}
	progress := func(p trainer.Progress) {
		// A checkpoint is written every `every` updates; at a multiple the save may
		// still be running, so only earlier multiples count as durable.
		ck := saved
		if sr.every > 0 && p.Step > sr.every {
			ck = max(ck, ((p.Step-1)/sr.every)*sr.every)
		}
		pl.Set(ctx, workflows.Progress{Stage: sr.key.Kind, Step: p.Step, Total: p.Total, Loss: p.Loss,
			ETASeconds: p.ETA.Seconds(), CheckpointStep: ck, CheckpointDir: runDir, CheckpointHost: host})
		mu.Lock()
		pending = append(pending,
			datastore.Metric{RunID: sr.key.RunID, Round: sr.key.Round, Stage: sr.key.Kind, Variant: sr.key.Variant, Step: int64(p.Step), Name: "loss", Value: p.Loss},
			datastore.Metric{RunID: sr.key.RunID, Round: sr.key.Round, Stage: sr.key.Kind, Variant: sr.key.Variant, Step: int64(p.Step), Name: "lr", Value: p.LR})
		mu.Unlock()
		// The trainer writes its checkpoint right after this callback at every
		// `every`-th and at the last update, and a resume starts after that checkpoint:
		// the metrics up to it must be durable first.
		if (sr.every > 0 && p.Step%sr.every == 0) || p.Step >= p.Total {
			_ = flush(ctx)
		}
		if ck > saved {
			saved = ck
			// Best effort: the checkpoint row and metrics are bookkeeping, the files are
			// what a resume reads. Metrics first: a resume rewrites only the steps after
			// the checkpoint, so a worker dying between the two must not lose them.
			_ = flush(ctx)
			_ = a.db.SaveCheckpoint(ctx, st.ID, "", int64(ck))
		}
	}
	out, err := body(ctx, runDir, resume, progress)
	if err != nil && resume && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		// The saved run does not match (data or settings changed): start over.
		if rerr := os.RemoveAll(runDir); rerr == nil {
			out, err = body(ctx, runDir, false, progress)
		}
	}
	// The last flush holds every metric the best-effort flushes could not write (e.g.
	// while PostgreSQL restarted); failing here would retry the activity, which resumes
	// after these steps and so loses them: ride out a short outage first.
	ferr := flush(context.WithoutCancel(ctx))
	for wait := time.Second; ferr != nil && wait <= 16*time.Second && ctx.Err() == nil; wait *= 2 {
		time.Sleep(wait)
		ferr = flush(context.WithoutCancel(ctx))
	}
	if ferr != nil && err == nil {
		err = ferr
	}
	if err != nil {
		return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, classify(fmt.Sprintf("%s variant %s", sr.key.Kind, sr.key.Variant), err))
	}
	finalDir := filepath.Join(dir, "final")
	if err := checkpoint.Save(ctx, finalDir, out.model, checkpoint.SaveOptions{TokenizerJSON: out.tokJSON, Overwrite: true}); err != nil {
		return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, err)
	}
	meta := map[string]any{"stage": sr.key.Kind, "variant": sr.key.Variant, "steps": out.steps, "start_step": out.startStep}
	for k, v := range sr.meta {
		meta[k] = v
	}
	art, err := a.putModel(ctx, finalDir, sr.artifactKind, sr.key, st.ID, meta, sr.parents)
	if err != nil {
		return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, err)
	}
	ms := []datastore.Metric{{RunID: sr.key.RunID, Round: sr.key.Round, Stage: sr.key.Kind, Variant: sr.key.Variant, Step: 0, Name: "start_step", Value: float64(out.startStep)}}
	for _, k := range sortedKeys(out.metrics) {
		ms = append(ms, datastore.Metric{RunID: sr.key.RunID, Round: sr.key.Round, Stage: sr.key.Kind, Variant: sr.key.Variant, Step: int64(out.steps), Name: k, Value: out.metrics[k]})
	}
	if err := a.db.RecordMetrics(ctx, ms); err != nil {
		return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, err)
	}
	if err := a.db.SaveCheckpoint(ctx, st.ID, "", int64(out.steps)); err != nil {
		return workflows.ModelResult{}, a.finishFailed(ctx, st.ID, err)
	}
	if err := a.db.FinishStage(ctx, st.ID, datastore.StatusCompleted, art.ID, ""); err != nil {
		return workflows.ModelResult{}, err
	}
	return workflows.ModelResult{ArtifactID: art.ID, Steps: out.steps, StartStep: out.startStep, Metrics: out.metrics}, nil
}

// recordedResult rebuilds a completed variant's result from its stage row and metrics,
// so a re-run returns exactly what the first run did.
func (a *Activities) recordedResult(ctx context.Context, key datastore.StageKey, st datastore.Stage) (workflows.ModelResult, error) {
	ms, err := a.db.ListMetrics(ctx, datastore.MetricFilter{RunID: key.RunID, Round: key.Round, Stage: key.Kind, Variant: key.Variant})
	if err != nil {
		return workflows.ModelResult{}, err
	}
	res := workflows.ModelResult{ArtifactID: st.OutputArtifactID, Steps: int(st.CheckpointStep)}
	for _, m := range ms {
		switch {
		case m.Name == "start_step":
			res.StartStep = int(m.Value)
		case m.Step == st.CheckpointStep && m.Name != "loss" && m.Name != "lr":
			if res.Metrics == nil {
				res.Metrics = map[string]float64{}
			}
			res.Metrics[m.Name] = m.Value
		}
	}
	return res, nil
}

// schedule is the trainer schedule of a stage.
func schedule(cfg *configs.Config, lr float64) trainer.Schedule {
	return trainer.Schedule{PeakLR: lr, WarmupSteps: cfg.Trainer.WarmupSteps, MinLRRatio: cfg.Trainer.MinLRRatio, Decay: cfg.Trainer.Schedule}
}

func adamw(cfg *configs.Config) trainer.AdamWConfig {
	c := trainer.DefaultAdamW()
	c.WeightDecay, c.ClipNorm = cfg.Trainer.WeightDecay, cfg.Trainer.GradClip
	return c
}

// steps is a stage's update count: Steps, else Epochs passes over n rows.
func steps(stepsCfg, epochs, n, batch, accum int) int {
	if stepsCfg > 0 {
		return stepsCfg
	}
	per := max(batch*max(accum, 1), 1)
	return max(epochs, 1) * max((n+per-1)/per, 1)
}

func variantKey(req workflows.TrainRequest, kind string) datastore.StageKey {
	return datastore.StageKey{RunID: req.RunID, Round: req.Round, Kind: kind, Variant: strconv.Itoa(req.Variant)}
}

// TrainReward trains one reward-model variant on all preference data collected before
// the round, starting from req.Init (the base checkpoint by default) with a new score
// head.
func (a *Activities) TrainReward(ctx context.Context, req workflows.TrainRequest) (workflows.ModelResult, error) {
	cfg, err := a.config(ctx, req.RunID)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	n := names(cfg, req.RunID)
	initDir, err := a.modelDir(ctx, req.Init)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	before := func(r int) bool { return r < req.Round }
	userRows, err := a.preferences(ctx, n.Preferences, datastore.SplitTrain, nil)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	annRows, err := a.preferences(ctx, n.Annotations, datastore.SplitTrain, before)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	rows := append(userRows, annRows...)
	if len(rows) == 0 {
		return workflows.ModelResult{}, invalid("round %d: no preference data to train the reward model on", req.Round)
	}
	dataArt, err := a.db.RecordDatasetArtifact(ctx, n.Annotations, req.RunID, req.Round)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	rm := cfg.Reward
	sr := stageRun{key: variantKey(req, datastore.StageReward), artifactKind: "reward_model", every: cfg.Trainer.CheckpointEvery,
		parents: [][2]string{{"init", req.Init}, {"train_data", dataArt.ID}}, meta: map[string]any{"pairs": len(rows)}}
	return a.train(ctx, sr, func(ctx context.Context, outDir string, resume bool, progress func(trainer.Progress)) (trainOutcome, error) {
		pool := a.pool(cfg)
		defer pool.Close()
		base, err := checkpoint.LoadAsClassifier(ctx, initDir, pool, checkpoint.ScoreInit{Seed: uint64(req.Seed), Std: 0.02})
		if err != nil {
			return trainOutcome{}, invalid("%v", err)
		}
		tok, tokJSON, err := loadTokenizer(initDir)
		if err != nil {
			return trainOutcome{}, err
		}
		enc := &datasets.Encoder{Tok: tok, MaxLen: min(cfg.Model.MaxSeqLen, base.Config.MaxPositionEmbeddings)}
		train, err := encodePreferences(enc, rows)
		if err != nil {
			return trainOutcome{}, err
		}
		c := reward.DefaultConfig()
		c.Steps = steps(rm.Steps, rm.Epochs, len(train), rm.BatchSize, cfg.Trainer.GradAccum)
		c.Batch, c.Accum, c.Seed = rm.BatchSize, max(cfg.Trainer.GradAccum, 1), uint64(req.Seed)
		c.Schedule, c.AdamW = schedule(cfg, rm.LR), adamw(cfg)
		c.Centering, c.SimilarityThreshold = rm.CenteringEta, rm.SimilarityThreshold
		if rm.Margin {
			c.Margin = reward.MarginLlama2
		}
		c.OutDir, c.CheckpointEvery, c.Resume, c.TokenizerJSON = outDir, cfg.Trainer.CheckpointEvery, resume, tokJSON
		m, res, err := reward.Train(ctx, c, base, train, nil, reward.Hooks{Progress: progress})
		if err != nil {
			return trainOutcome{}, err
		}
		return trainOutcome{model: m, tokJSON: tokJSON, steps: res.Steps, startStep: res.StartStep,
			metrics: map[string]float64{"final_loss": res.FinalLoss, "train_accuracy": res.TrainAccuracy, "pairs": float64(res.Pairs)}}, nil
	})
}

// TrainSFT trains one SFT variant from req.Init on the round's rejection-sampled data
// plus the curated SFT data.
func (a *Activities) TrainSFT(ctx context.Context, req workflows.TrainRequest) (workflows.ModelResult, error) {
	cfg, err := a.config(ctx, req.RunID)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	n := names(cfg, req.RunID)
	initDir, err := a.modelDir(ctx, req.Init)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	examples, err := a.sftExamples(ctx, req.RunID, req.Round, cfg.SFT.Data == configs.SFTDataAllRounds, n)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	val, err := a.db.ListSFTExamples(ctx, datastore.DataFilter{Dataset: n.SFT, Split: datastore.SplitEval})
	if err != nil {
		return workflows.ModelResult{}, err
	}
	sftArt, err := a.db.RecordDatasetArtifact(ctx, n.SFT, "", 0)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	s := cfg.SFT
	sr := stageRun{key: variantKey(req, datastore.StageSFT), artifactKind: "model", every: cfg.Trainer.CheckpointEvery,
		parents: [][2]string{{"init", req.Init}, {"train_data", sftArt.ID}}, meta: map[string]any{"examples": len(examples)}}
	return a.train(ctx, sr, func(ctx context.Context, outDir string, resume bool, progress func(trainer.Progress)) (trainOutcome, error) {
		pool := a.pool(cfg)
		defer pool.Close()
		base, tok, tokJSON, err := loadCausal(ctx, initDir, pool)
		if err != nil {
			return trainOutcome{}, err
		}
		enc := &datasets.Encoder{Tok: tok, MaxLen: min(cfg.Model.MaxSeqLen, base.Config.MaxPositionEmbeddings)}
		opts := datasets.SFTOptions{LastTurnOnly: s.TrainOn == configs.TrainOnLast}
		train := make([]datasets.EncodedSFT, 0, len(examples))
		for i, ex := range examples {
			e, err := enc.EncodeSFT(ex, opts)
			if err != nil {
				return trainOutcome{}, invalid("sft example %d: %v", i, err)
			}
			train = append(train, e)
		}
		vrows, err := encodeSFT(enc, val)
		if err != nil {
			return trainOutcome{}, err
		}
		c := sft.DefaultConfig()
		c.Steps = steps(s.Steps, s.Epochs, len(train), s.BatchSize, cfg.Trainer.GradAccum)
		c.Batch, c.Accum, c.Seed, c.Packing = s.BatchSize, max(cfg.Trainer.GradAccum, 1), uint64(req.Seed), s.Packing
		c.Schedule, c.AdamW = schedule(cfg, s.LR), adamw(cfg)
		c.OutDir, c.CheckpointEvery, c.Resume, c.TokenizerJSON = outDir, cfg.Trainer.CheckpointEvery, resume, tokJSON
		m, res, err := sft.Train(ctx, c, base, train, vrows, sft.Hooks{Progress: progress})
		if err != nil {
			return trainOutcome{}, err
		}
		metrics := map[string]float64{"final_loss": res.FinalLoss, "examples": float64(res.Examples)}
		if res.ValLoss != nil {
			metrics["val_loss"] = *res.ValLoss
		}
		return trainOutcome{model: m, tokJSON: tokJSON, steps: res.Steps, startStep: res.StartStep, metrics: metrics}, nil
	})
}

// sftExamples are the selected rejection samples (as prompt + completion) of the round,
// or of rounds 1..round when allRounds (sft.data: all-rounds), and the curated SFT data.
func (a *Activities) sftExamples(ctx context.Context, runID string, round int, allRounds bool, n dataNames) ([]datasets.SFTExample, error) {
	f := datastore.CandidateFilter{RunID: runID, Round: round, SelectedOnly: true}
	if allRounds {
		f.Round = 0 // every round; later rounds are dropped below so a re-run round sees what it saw
	}
	all, err := a.db.ListCandidates(ctx, f)
	if err != nil {
		return nil, err
	}
	cands := all[:0]
	for _, c := range all {
		if c.Round <= round {
			cands = append(cands, c)
		}
	}
	ids := make([]string, 0, len(cands))
	for _, c := range cands {
		ids = append(ids, c.PromptID)
	}
	prompts, err := a.db.GetPrompts(ctx, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]datastore.Prompt, len(prompts))
	for _, p := range prompts {
		byID[p.ID] = p
	}
	var out []datasets.SFTExample
	for _, c := range cands {
		p, ok := byID[c.PromptID]
		if !ok {
			return nil, invalid("selected sample of prompt %s: the prompt is not in the datastore", c.PromptID)
		}
		seg := datastore.Segment{Text: c.Text}
		ex := datastore.SFTExample{Prompt: &p.Prompt, Completion: &seg}
		out = append(out, jsonl.ToSFT(ex))
	}
	curated, err := a.db.ListSFTExamples(ctx, datastore.DataFilter{Dataset: n.SFT, Split: datastore.SplitTrain})
	if err != nil {
		return nil, err
	}
	for _, c := range curated {
		out = append(out, jsonl.ToSFT(c))
	}
	if len(out) == 0 {
		return nil, invalid("round %d: no SFT data (no selected samples and no curated examples in %s)", round, n.SFT)
	}
	return out, nil
}

// TrainDPO trains one DPO variant from req.Init against req.Reference on the most
// recent preference batch (the annotations collected after the previous round, or the
// latest earlier batch when that round added none).
func (a *Activities) TrainDPO(ctx context.Context, req workflows.TrainRequest) (workflows.ModelResult, error) {
	cfg, err := a.config(ctx, req.RunID)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	n := names(cfg, req.RunID)
	initDir, err := a.modelDir(ctx, req.Init)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	ref := req.Reference
	if ref == "" {
		ref = req.Init
	}
	refDir, err := a.modelDir(ctx, ref)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	rows, err := a.latestPreferences(ctx, n.Annotations, req.Round)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	if len(rows) == 0 {
		if rows, err = a.preferences(ctx, n.Preferences, datastore.SplitTrain, nil); err != nil {
			return workflows.ModelResult{}, err
		}
	}
	if len(rows) == 0 {
		return workflows.ModelResult{}, invalid("round %d: no preference batch to train DPO on", req.Round)
	}
	dataArt, err := a.db.RecordDatasetArtifact(ctx, n.Annotations, req.RunID, req.Round)
	if err != nil {
		return workflows.ModelResult{}, err
	}
	d := cfg.DPO
	sr := stageRun{key: variantKey(req, datastore.StageDPO), artifactKind: "model", every: cfg.Trainer.CheckpointEvery,
		parents: [][2]string{{"init", req.Init}, {"reference", ref}, {"train_data", dataArt.ID}}, meta: map[string]any{"pairs": len(rows)}}
	return a.train(ctx, sr, func(ctx context.Context, outDir string, resume bool, progress func(trainer.Progress)) (trainOutcome, error) {
		pool := a.pool(cfg)
		defer pool.Close()
		policy, tok, tokJSON, err := loadCausal(ctx, initDir, pool)
		if err != nil {
			return trainOutcome{}, err
		}
		reference, _, _, err := loadCausal(ctx, refDir, pool)
		if err != nil {
			return trainOutcome{}, err
		}
		c := dpo.DefaultConfig()
		pairs, err := dpoPairs(cfg, tok, policy, rows)
		if err != nil {
			return trainOutcome{}, err
		}
		c.Options = dpoOptions(cfg, filepath.Join(a.d.DataDir, "cache", "refcache"))
		c.Steps = steps(d.Steps, d.Epochs, len(pairs), d.BatchSize, cfg.Trainer.GradAccum)
		c.Accum, c.Seed = max(cfg.Trainer.GradAccum, 1), uint64(req.Seed)
		c.Schedule, c.AdamW = schedule(cfg, d.LR), adamw(cfg)
		c.OutDir, c.CheckpointEvery, c.Resume, c.TokenizerJSON = outDir, cfg.Trainer.CheckpointEvery, resume, tokJSON
		m, res, err := dpo.Train(ctx, c, policy, reference, pairs, nil, dpo.Hooks{Progress: progress})
		if err != nil {
			return trainOutcome{}, err
		}
		metrics := map[string]float64{"pairs": float64(res.Pairs)}
		if res.Final != nil {
			metrics["final_loss"], metrics["margin"], metrics["accuracy"] = res.Final.Loss, res.Final.Margin, res.Final.Accuracy
		}
		return trainOutcome{model: m, tokJSON: tokJSON, steps: res.Steps, startStep: res.StartStep, metrics: metrics}, nil
	})
}

// latestPreferences are the training pairs of the most recent annotation batch before
// round: the previous round's, or an earlier one when that round added none (a policy
// that always answers the same way gives the annotator nothing to compare).
func (a *Activities) latestPreferences(ctx context.Context, dataset string, round int) ([]datastore.PreferencePair, error) {
	rows, err := a.preferences(ctx, dataset, datastore.SplitTrain, func(r int) bool { return r < round })
	if err != nil {
		return nil, err
	}
	latest := -1
	for _, r := range rows {
		latest = max(latest, r.Round)
	}
	out := rows[:0]
	for _, r := range rows {
		if r.Round == latest {
			out = append(out, r)
		}
	}
	return out, nil
}

// dpoOptions are the DPO objective settings of the config.
func dpoOptions(cfg *configs.Config, cacheDir string) dpo.Options {
	o := dpo.DefaultOptions()
	o.Objective = objectives.DPOOptions{Beta: cfg.DPO.Beta, NLLCoef: cfg.DPO.NLLCoef, NLLNorm: objectives.NLLNorm(cfg.DPO.NLLNorm)}
	o.MaskFormatting, o.Batch, o.CacheDir = cfg.DPO.MaskFormatting, cfg.DPO.BatchSize, cacheDir
	return o
}

// dpoPairs encodes preference rows as DPO pairs.
func dpoPairs(cfg *configs.Config, tok *tokenizer.Tokenizer, m *transformer.Model, rows []datastore.PreferencePair) ([]dpo.Pair, error) {
	enc := &datasets.Encoder{Tok: tok, MaxLen: min(cfg.Model.MaxSeqLen, m.Config.MaxPositionEmbeddings)}
	for _, id := range cfg.DPO.FormattingTokenIDs {
		enc.Formatting = append(enc.Formatting, int32(id))
	}
	enc2, err := encodePreferences(enc, rows)
	if err != nil {
		return nil, err
	}
	pairs, err := dpo.Pairs(enc2, dpo.EditedOverRejected)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if err := dpo.CheckPairs(pairs, m.Config); err != nil {
		return nil, invalid("%v", err)
	}
	return pairs, nil
}

// sortedKeys returns m's keys in order, so metric rows are written deterministically.
func sortedKeys(m map[string]float64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
