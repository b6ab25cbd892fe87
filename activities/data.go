package activities

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"

	"github.com/posttrain/posttrain/configs"
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/datastore/jsonl"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/tokenizer"
)

// dataNames are the datasets a run reads and writes. They follow from the config
// snapshot and the run ID alone, so every activity finds them without a payload.
type dataNames struct {
	Prompts, EvalPrompts, SFT, Preferences, EvalPreferences string
	// Annotations receives the run's own annotations, each row tagged with the round
	// that collected it (0: the initial data); 1 in 8 rows go to the eval split.
	Annotations string
}

// names returns the datasets of a run.
func names(cfg *configs.Config, runID string) dataNames {
	n := dataNames{
		Prompts: cfg.Datasets.Prompts, EvalPrompts: cfg.Datasets.EvalPrompts, SFT: cfg.Datasets.SFT,
		Preferences: cfg.Datasets.Preferences, EvalPreferences: cfg.Datasets.EvalPreferences,
		Annotations: runID + "-annotations",
	}
	if n.Prompts == "" {
		n.Prompts = fmt.Sprintf("demotask-prompts-seed%d-n%d", cfg.Task.Seed, cfg.Task.TrainPrompts)
	}
	if n.EvalPrompts == "" {
		n.EvalPrompts = fmt.Sprintf("demotask-eval-prompts-seed%d-n%d", cfg.Task.Seed, cfg.Task.EvalPrompts)
	}
	if n.SFT == "" {
		n.SFT = fmt.Sprintf("demotask-sft-seed%d-n%d", cfg.Task.Seed, cfg.Task.SFTSeedExamples)
	}
	if n.EvalPreferences == "" {
		n.EvalPreferences = n.Annotations
	}
	return n
}

// ensureDemoData writes the bundled task's generated datasets that the run uses (the
// ones the config does not replace). Inserts are idempotent by content.
func (a *Activities) ensureDemoData(ctx context.Context, cfg *configs.Config, n dataNames) error {
	seed := uint64(cfg.Task.Seed)
	if cfg.Datasets.Prompts == "" {
		if err := a.insertItems(ctx, n.Prompts, demotask.Generate(seed, demotask.Train, cfg.Task.TrainPrompts), datastore.SplitTrain); err != nil {
			return err
		}
	}
	if cfg.Datasets.EvalPrompts == "" {
		if err := a.insertItems(ctx, n.EvalPrompts, demotask.Generate(seed, demotask.Eval, cfg.Task.EvalPrompts), datastore.SplitEval); err != nil {
			return err
		}
	}
	if cfg.Datasets.SFT == "" {
		if _, err := a.db.CreateDataset(ctx, datastore.Dataset{Name: n.SFT, Kind: datastore.KindSFT, Source: "demotask", Description: "curated SFT seed conversations of the bundled task"}); err != nil {
			return err
		}
		convs := demotask.CuratedSFT(seed, cfg.Task.SFTSeedExamples)
		rows := make([]datastore.SFTExample, len(convs))
		for i, c := range convs {
			msgs := make([]datastore.Message, len(c))
			for j, m := range c {
				msgs[j] = datastore.Message{Role: m.Role, Content: m.Content}
			}
			split := datastore.SplitTrain
			if i%8 == 7 {
				split = datastore.SplitEval // held out for the SFT validation loss
			}
			rows[i] = datastore.SFTExample{Dataset: n.SFT, Ord: int64(i), Messages: msgs, Source: "demotask", Split: split}
		}
		if _, err := a.db.InsertSFTExamples(ctx, rows); err != nil {
			return err
		}
	}
	return nil
}

// insertItems stores task items as prompts with their ground truth in the metadata.
func (a *Activities) insertItems(ctx context.Context, name string, items []demotask.Item, split string) error {
	if _, err := a.db.CreateDataset(ctx, datastore.Dataset{Name: name, Kind: datastore.KindPrompts, Source: "demotask", Description: "generated prompts of the bundled task"}); err != nil {
		return err
	}
	rows := make([]datastore.Prompt, len(items))
	for i, it := range items {
		msgs := make([]datastore.Message, len(it.Prompt))
		for j, m := range it.Prompt {
			msgs[j] = datastore.Message{Role: m.Role, Content: m.Content}
		}
		rows[i] = datastore.Prompt{Dataset: name, Ord: int64(i), Prompt: datastore.Segment{Messages: msgs}, Source: "demotask", Split: split,
			Metadata: map[string]any{"answer": it.Answer, "family": string(it.Family), "item_id": it.ID}}
	}
	_, err := a.db.InsertPrompts(ctx, rows)
	return err
}

// roundSlice picks n prompts for a round, rotating through the list so successive
// rounds see different prompts; n <= 0 or >= len takes all.
func roundSlice[T any](rows []T, n, round, salt int) []T {
	if n <= 0 || n >= len(rows) {
		return rows
	}
	start := ((round + salt) * n) % len(rows)
	out := make([]T, 0, n)
	for i := range n {
		out = append(out, rows[(start+i)%len(rows)])
	}
	return out
}

// trainPrompts returns the train prompts of the run's prompts dataset.
func (a *Activities) trainPrompts(ctx context.Context, n dataNames) ([]datastore.Prompt, error) {
	rows, err := a.db.ListPrompts(ctx, datastore.DataFilter{Dataset: n.Prompts, Split: datastore.SplitTrain})
	if err != nil {
		return nil, err
	}
	if len(rows) == 0 {
		return nil, invalid("prompts dataset %s has no train prompts", n.Prompts)
	}
	return rows, nil
}

// evalPrompts returns the held-out prompts.
func (a *Activities) evalPrompts(ctx context.Context, cfg *configs.Config, n dataNames) ([]datastore.Prompt, error) {
	f := datastore.DataFilter{Dataset: n.EvalPrompts, Split: datastore.SplitEval}
	if cfg.Datasets.EvalPrompts != "" {
		f.Split = "" // a user's dataset: every row is held out
	}
	rows, err := a.db.ListPrompts(ctx, f)
	if err != nil {
		return nil, err
	}
	if cfg.Eval.Prompts > 0 && len(rows) > cfg.Eval.Prompts {
		rows = rows[:cfg.Eval.Prompts]
	}
	return rows, nil
}

// preferences reads preference pairs of a dataset and split ("" = all), keeping rows
// whose round passes keep (nil = all).
func (a *Activities) preferences(ctx context.Context, dataset, split string, keep func(round int) bool) ([]datastore.PreferencePair, error) {
	if dataset == "" {
		return nil, nil
	}
	rows, err := a.db.ListPreferencePairs(ctx, datastore.DataFilter{Dataset: dataset, Split: split})
	if errors.Is(err, datastore.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if keep == nil {
		return rows, nil
	}
	out := rows[:0]
	for _, r := range rows {
		if keep(r.Round) {
			out = append(out, r)
		}
	}
	return out, nil
}

// encodePreferences encodes stored pairs, naming the dataset and row on error.
func encodePreferences(enc *datasets.Encoder, rows []datastore.PreferencePair) ([]datasets.EncodedPreference, error) {
	out := make([]datasets.EncodedPreference, 0, len(rows))
	for i, r := range rows {
		e, err := enc.EncodePreference(jsonl.ToPreference(r))
		if err != nil {
			return nil, invalid("dataset %s row %d (id %s): %v", r.Dataset, i, r.ID, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// encodeSFT encodes stored SFT examples.
func encodeSFT(enc *datasets.Encoder, rows []datastore.SFTExample) ([]datasets.EncodedSFT, error) {
	out := make([]datasets.EncodedSFT, 0, len(rows))
	for i, r := range rows {
		e, err := enc.EncodeSFT(jsonl.ToSFT(r), datasets.SFTOptions{})
		if err != nil {
			return nil, invalid("dataset %s row %d (id %s): %v", r.Dataset, i, r.ID, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// item rebuilds the bundled task's item of a prompt from its stored ground truth.
func item(p datastore.Prompt) (demotask.Item, bool) {
	ans, ok := p.Metadata["answer"].(string)
	if !ok {
		return demotask.Item{}, false
	}
	fam, _ := p.Metadata["family"].(string)
	it := demotask.Item{ID: p.ID, Family: demotask.Family(fam), Answer: ans}
	for _, m := range p.Prompt.Messages {
		it.Prompt = append(it.Prompt, demotask.Message{Role: m.Role, Content: m.Content})
	}
	if len(it.Prompt) == 0 && p.Prompt.Text != "" {
		it.Prompt = []demotask.Message{{Role: tokenizer.UserRole, Content: p.Prompt.Text}}
	}
	return it, true
}

// evalSplit says whether an annotation goes to the held-out split (1 in 8, by content).
func evalSplit(key string) bool {
	h := fnv.New32a()
	h.Write([]byte(key))
	return h.Sum32()%8 == 7
}

// cleanText makes decoded model output storable: PostgreSQL text and jsonb refuse NUL
// characters and invalid UTF-8, which an untrained model happily produces.
func cleanText(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}
