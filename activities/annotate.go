package activities

import (
	"context"
	"fmt"

	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/datastore/jsonl"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/workflows"
)

// Annotate collects the preference pairs round req.Round hands to the next round, into
// the run's annotations dataset tagged with the round: the simulated annotator labels
// two distinct samples per prompt from the policy (a round may add none when the policy
// always answers alike); kind file imports annotator.file; kind human
// copies the dataset a person submitted. Rows are keyed by content, so a retry adds
// nothing twice.
func (a *Activities) Annotate(ctx context.Context, req workflows.AnnotateRequest) (workflows.AnnotateResult, error) {
	cfg, err := a.config(ctx, req.RunID)
	if err != nil {
		return workflows.AnnotateResult{}, err
	}
	n := names(cfg, req.RunID)
	key := datastore.StageKey{RunID: req.RunID, Round: req.Round, Kind: datastore.StageAnnotate, Variant: req.Kind}
	st, err := a.db.StartStage(ctx, key, attempt(ctx))
	if err != nil {
		return workflows.AnnotateResult{}, err
	}
	pl := startPulse(ctx, workflows.Progress{Stage: datastore.StageAnnotate}, pulseEvery)
	defer pl.Stop()
	if st.Status != datastore.StatusCompleted {
		switch req.Kind {
		case workflows.AnnotatorSimulated:
			err = a.annotateSimulated(ctx, cfg, n, req)
		case workflows.AnnotatorFile:
			_, err = jsonl.ImportFile(ctx, a.db, cfg.Annotator.File, jsonl.ImportOptions{
				Kind: datastore.KindPreferences, Dataset: n.Annotations, Source: "file", Round: req.Round})
			if err != nil {
				err = invalid("annotator.file: %v", err)
			}
		case workflows.AnnotatorHuman:
			err = a.annotateHuman(ctx, n, req)
		default:
			err = invalid("annotator kind %q is not simulated, file or human", req.Kind)
		}
		if err != nil {
			return workflows.AnnotateResult{}, a.finishFailed(ctx, st.ID, classify("annotate", err))
		}
	}
	rows, err := a.preferences(ctx, n.Annotations, "", func(r int) bool { return r == req.Round })
	if err != nil {
		return workflows.AnnotateResult{}, err
	}
	if len(rows) == 0 && (req.Kind != workflows.AnnotatorSimulated || req.Round == 0) {
		return workflows.AnnotateResult{}, a.finishFailed(ctx, st.ID, invalid("round %d: the %s annotator produced no preference pairs", req.Round, req.Kind))
	}
	// A policy that answers every annotated prompt the same way each time leaves the
	// simulated annotator nothing to compare: the round adds no pairs, and the next
	// round's reward model and DPO use the batches collected before.
	art, err := a.db.RecordDatasetArtifact(ctx, n.Annotations, req.RunID, req.Round)
	if err != nil {
		return workflows.AnnotateResult{}, err
	}
	if req.Policy != "" {
		if err := a.db.AddLineage(ctx, req.Policy, art.ID, "annotated_policy"); err != nil {
			return workflows.AnnotateResult{}, err
		}
	}
	res := workflows.AnnotateResult{Dataset: n.Annotations, ArtifactID: art.ID}
	for _, r := range rows {
		if r.Split == datastore.SplitEval {
			res.EvalPairs++
		} else {
			res.Pairs++
		}
	}
	ms := []datastore.Metric{
		{RunID: req.RunID, Round: req.Round, Stage: datastore.StageAnnotate, Name: "pairs", Value: float64(res.Pairs)},
		{RunID: req.RunID, Round: req.Round, Stage: datastore.StageAnnotate, Name: "eval_pairs", Value: float64(res.EvalPairs)},
	}
	if err := a.db.RecordMetrics(ctx, ms); err != nil {
		return workflows.AnnotateResult{}, err
	}
	if err := a.db.FinishStage(ctx, st.ID, datastore.StatusCompleted, art.ID, ""); err != nil {
		return workflows.AnnotateResult{}, err
	}
	return res, nil
}

// annotationSamples are drawn per prompt for the simulated annotator, which compares
// the first two distinct ones.
const annotationSamples = 4

// annotateSimulated samples two distinct answers per prompt from the policy and lets the bundled
// task's simulated annotator compare them against the ground truth.
func (a *Activities) annotateSimulated(ctx context.Context, cfg *configs.Config, n dataNames, req workflows.AnnotateRequest) error {
	all, err := a.trainPrompts(ctx, n)
	if err != nil {
		return err
	}
	prompts := roundSlice(all, cfg.Annotator.PromptsPerRound, req.Round, 3)
	dir, err := a.modelDir(ctx, req.Policy)
	if err != nil {
		return err
	}
	pool := a.pool(cfg)
	defer pool.Close()
	m, tok, _, err := loadCausal(ctx, dir, pool)
	if err != nil {
		return err
	}
	eng, err := inference.NewEngine(m, inference.Options{MaxBatch: 64})
	if err != nil {
		return err
	}
	enc := &datasets.Encoder{Tok: tok}
	items := make([]demotask.Item, len(prompts))
	reqs := make([]inference.Request, len(prompts))
	seed := uint64(req.Seed)*7919 + uint64(req.Round)
	for i, p := range prompts {
		it, ok := item(p)
		if !ok {
			return invalid("prompt %s of %s has no ground truth (metadata.answer): the simulated annotator needs the bundled task's prompts; use annotator.kind file or human", p.ID, n.Prompts)
		}
		items[i] = it
		ids, err := enc.EncodePrompt(jsonl.ToPrompt(p).Prompt)
		if err != nil {
			return invalid("prompt %s: %v", p.ID, err)
		}
		mx := min(cfg.Sampling.MaxNewTokens, m.Config.MaxPositionEmbeddings-len(ids))
		if mx <= 0 {
			return invalid("prompt %s has %d tokens: no room to answer in the context window", p.ID, len(ids))
		}
		reqs[i] = inference.Request{Prompt: ids, Samples: annotationSamples, Params: inference.Params{MaxNewTokens: mx,
			Temperature: max(cfg.Sampling.Temperature, 0.1), TopP: cfg.Sampling.TopP, TopK: cfg.Sampling.TopK,
			StopTokens: stopTokens(tok), Seed: seed + uint64(i)}}
	}
	outs, err := eng.GenerateBatch(ctx, reqs, func(done, total int) {
		heartbeat(ctx, workflows.Progress{Stage: datastore.StageAnnotate, Step: done, Total: total})
	})
	if err != nil {
		return fmt.Errorf("generate: %w", err)
	}
	ann := demotask.NewAnnotator(demotask.AnnotatorOptions{Noise: cfg.Annotator.Noise, LengthBias: max(cfg.Annotator.Bias, 0), Edit: true}, seed)
	var rows []datastore.PreferencePair
	for i, o := range outs {
		// The first sample, and the first later one that differs from it (else the first
		// again): a good policy often says the same thing twice.
		texts := make([]string, 2)
		for j, c := range o {
			toks := c.Tokens
			if c.FinishReason == inference.FinishStop && len(toks) > 0 {
				toks = toks[:len(toks)-1]
			}
			t := cleanText(tok.Decode(toks))
			switch {
			case j == 0:
				texts[0], texts[1] = t, t
			case texts[1] == texts[0] && t != texts[0]:
				texts[1] = t
			}
		}
		it := items[i]
		pref, ok := ann.Compare(it, texts[0], texts[1])
		if !ok {
			if it.Correct(texts[0]) {
				continue // two identical right answers: nothing to learn
			}
			pref = demotask.Preference{Chosen: it.Answer, Rejected: texts[0], Rating: demotask.SignificantlyBetter}
		}
		p := prompts[i]
		// Rows of every round share one dataset ordered by (ord, id), and id hashes the run
		// ID: keeping each round's rows in their own ord range makes the training order,
		// and so the run, the same for the same seed.
		row := datastore.PreferencePair{Dataset: n.Annotations, Ord: int64(req.Round)<<32 | int64(i), PromptID: p.ID, Prompt: p.Prompt,
			Chosen: datastore.Segment{Text: pref.Chosen}, Rejected: datastore.Segment{Text: pref.Rejected},
			Rating: string(pref.Rating), Source: "simulated", Round: req.Round, Split: datastore.SplitTrain}
		if pref.Edited != "" && pref.Edited != pref.Chosen {
			row.Edited = &datastore.Segment{Text: pref.Edited}
		}
		if evalSplit(fmt.Sprintf("%s/%d", p.ID, req.Round)) {
			row.Split = datastore.SplitEval
		}
		rows = append(rows, row)
	}
	_, err = a.db.InsertPreferencePairs(ctx, rows)
	return err
}

// annotateHuman copies the submitted dataset's pairs into the run's annotations.
func (a *Activities) annotateHuman(ctx context.Context, n dataNames, req workflows.AnnotateRequest) error {
	d, err := a.db.GetDataset(ctx, req.Dataset)
	if err != nil {
		return invalid("submitted annotations %s: %v", req.Dataset, err)
	}
	if d.Kind != datastore.KindPreferences {
		return invalid("submitted dataset %s holds %s, not preferences", req.Dataset, d.Kind)
	}
	rows, err := a.db.ListPreferencePairs(ctx, datastore.DataFilter{Dataset: req.Dataset})
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return invalid("submitted dataset %s has no preference pairs", req.Dataset)
	}
	for i := range rows {
		r := &rows[i]
		r.ID, r.Dataset, r.Round = "", n.Annotations, req.Round
		if r.Source == "" {
			r.Source = "human"
		}
	}
	_, err = a.db.InsertPreferencePairs(ctx, rows)
	return err
}
