package datastore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Dataset kinds.
const (
	KindPrompts     = "prompts"
	KindPreferences = "preferences"
	KindSFT         = "sft"
)

// Splits.
const (
	SplitTrain = "train"
	SplitEval  = "eval"
)

// Message is one chat turn.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Segment is a piece of a conversation (a prompt, a response, a completion) as plain
// text, as chat messages, and/or as token IDs when it was given pre-tokenized. Token IDs
// are used exactly as given.
type Segment struct {
	Text     string    `json:"text,omitempty"`
	Messages []Message `json:"messages,omitempty"`
	IDs      []int32   `json:"ids,omitempty"`
}

// IsEmpty reports whether the segment holds no text, no message content and no tokens.
func (s Segment) IsEmpty() bool {
	if s.Text != "" || len(s.IDs) > 0 {
		return false
	}
	for _, m := range s.Messages {
		if m.Content != "" {
			return false
		}
	}
	return true
}

// Dataset is a named collection of prompts, preference pairs or SFT examples.
type Dataset struct {
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	Source      string    `json:"source,omitempty"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	// Rows and EvalRows are filled by ListDatasets.
	Rows     int64 `json:"rows"`
	EvalRows int64 `json:"eval_rows"`
}

// Prompt is one prompt of a prompts dataset.
type Prompt struct {
	// ID is the sha256 of the dataset name and content (see ContentID); filled on insert.
	ID       string         `json:"id"`
	Dataset  string         `json:"dataset"`
	Ord      int64          `json:"ord"`
	Prompt   Segment        `json:"prompt"`
	Source   string         `json:"source,omitempty"`
	Round    int            `json:"round"`
	Split    string         `json:"split"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// PreferencePair is a prompt with a chosen and a rejected response, and optionally an
// edited third response ranked above both (edited > chosen > rejected).
type PreferencePair struct {
	ID       string   `json:"id"`
	Dataset  string   `json:"dataset"`
	Ord      int64    `json:"ord"`
	PromptID string   `json:"prompt_id,omitempty"`
	Prompt   Segment  `json:"prompt"`
	Chosen   Segment  `json:"chosen"`
	Rejected Segment  `json:"rejected"`
	Edited   *Segment `json:"edited,omitempty"`
	// Margin is a numeric preference strength; Rating a categorical one (Llama 2's
	// "significantly better", ...). Either may be absent.
	Margin   *float64       `json:"margin,omitempty"`
	Rating   string         `json:"rating,omitempty"`
	Source   string         `json:"source,omitempty"`
	Round    int            `json:"round"`
	Split    string         `json:"split"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// SFTExample is a conversation to fine-tune on: either Messages, or Prompt and
// Completion.
type SFTExample struct {
	ID         string         `json:"id"`
	Dataset    string         `json:"dataset"`
	Ord        int64          `json:"ord"`
	Messages   []Message      `json:"messages,omitempty"`
	Prompt     *Segment       `json:"prompt,omitempty"`
	Completion *Segment       `json:"completion,omitempty"`
	Source     string         `json:"source,omitempty"`
	Round      int            `json:"round"`
	Split      string         `json:"split"`
	Metadata   map[string]any `json:"metadata,omitempty"`
}

// DataFilter selects dataset rows; Dataset is required, zero fields match everything.
type DataFilter struct {
	Dataset string
	Split   string
	Round   int
	Limit   int
	Offset  int
}

// ContentID is the deterministic row ID: the hex sha256 of the dataset name, the kind
// and the JSON of the content. The same content imported twice into a dataset is one row.
func ContentID(dataset, kind string, content any) (string, error) {
	b, err := json.Marshal(content)
	if err != nil {
		return "", fmt.Errorf("content id: %w", err)
	}
	h := sha256.New()
	h.Write([]byte(dataset))
	h.Write([]byte{0})
	h.Write([]byte(kind))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// CreateDataset creates the dataset, or returns the existing one with that name. An
// existing dataset of another kind is an error.
func (s *Store) CreateDataset(ctx context.Context, d Dataset) (Dataset, error) {
	switch d.Kind {
	case KindPrompts, KindPreferences, KindSFT:
	default:
		return Dataset{}, fmt.Errorf("create dataset %q: kind %q must be prompts, preferences or sft", d.Name, d.Kind)
	}
	if d.Name == "" {
		return Dataset{}, errors.New("create dataset: empty name")
	}
	var got Dataset
	err := s.db.QueryRow(ctx, `INSERT INTO datasets (name, kind, source, description) VALUES ($1, $2, $3, $4)
		ON CONFLICT (name) DO UPDATE SET name = datasets.name
		RETURNING name, kind, source, description, created_at`, d.Name, d.Kind, d.Source, d.Description).
		Scan(&got.Name, &got.Kind, &got.Source, &got.Description, &got.CreatedAt)
	if err != nil {
		return Dataset{}, fmt.Errorf("create dataset %q: %w", d.Name, err)
	}
	if got.Kind != d.Kind {
		return Dataset{}, fmt.Errorf("dataset %q holds %s, not %s", d.Name, got.Kind, d.Kind)
	}
	return got, nil
}

// GetDataset returns the named dataset with its row counts (ErrNotFound when missing).
func (s *Store) GetDataset(ctx context.Context, name string) (Dataset, error) {
	ds, err := s.listDatasets(ctx, name)
	if err != nil {
		return Dataset{}, err
	}
	if len(ds) == 0 {
		return Dataset{}, fmt.Errorf("dataset %q: %w", name, ErrNotFound)
	}
	return ds[0], nil
}

// ListDatasets returns every dataset with its row counts, by name.
func (s *Store) ListDatasets(ctx context.Context) ([]Dataset, error) { return s.listDatasets(ctx, "") }

func (s *Store) listDatasets(ctx context.Context, name string) ([]Dataset, error) {
	return collect(ctx, s.db, "list datasets", func(row pgx.Row) (Dataset, error) {
		var d Dataset
		err := row.Scan(&d.Name, &d.Kind, &d.Source, &d.Description, &d.CreatedAt, &d.Rows, &d.EvalRows)
		return d, err
	}, `WITH r AS (
			SELECT dataset, split FROM prompts UNION ALL
			SELECT dataset, split FROM preference_pairs UNION ALL
			SELECT dataset, split FROM sft_examples)
		SELECT d.name, d.kind, d.source, d.description, d.created_at,
			(SELECT count(*) FROM r WHERE r.dataset = d.name),
			(SELECT count(*) FROM r WHERE r.dataset = d.name AND r.split = 'eval')
		FROM datasets d WHERE $1 = '' OR d.name = $1 ORDER BY d.name`, name)
}

// DatasetDigest returns a sha256 over the dataset's row IDs in order, and the row count:
// record it as a "dataset" artifact to tie models to the exact data they saw.
func (s *Store) DatasetDigest(ctx context.Context, name string) (string, int64, error) {
	d, err := s.GetDataset(ctx, name)
	if err != nil {
		return "", 0, err
	}
	table := map[string]string{KindPrompts: "prompts", KindPreferences: "preference_pairs", KindSFT: "sft_examples"}[d.Kind]
	rows, err := s.db.Query(ctx, `SELECT id, split FROM `+table+` WHERE dataset = $1 ORDER BY id`, name)
	if err != nil {
		return "", 0, fmt.Errorf("digest dataset %q: %w", name, err)
	}
	defer rows.Close()
	h := sha256.New()
	var n int64
	for rows.Next() {
		var id, split string
		if err := rows.Scan(&id, &split); err != nil {
			return "", 0, fmt.Errorf("digest dataset %q: %w", name, err)
		}
		fmt.Fprintf(h, "%s %s\n", id, split)
		n++
	}
	if err := rows.Err(); err != nil {
		return "", 0, fmt.Errorf("digest dataset %q: %w", name, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

func defaults(split *string, meta *map[string]any) {
	if *split == "" {
		*split = SplitTrain
	}
	if *meta == nil {
		*meta = map[string]any{}
	}
}

// sendInserts runs the queued inserts and sums the rows they added.
func (s *Store) sendInserts(ctx context.Context, what string, b *pgx.Batch) (int64, error) {
	res := s.db.SendBatch(ctx, b)
	var added int64
	for i := 0; i < b.Len(); i++ {
		tag, err := res.Exec()
		if err != nil {
			res.Close()
			return added, fmt.Errorf("%s: row %d: %w", what, i+1, err)
		}
		added += tag.RowsAffected()
	}
	if err := res.Close(); err != nil {
		return added, fmt.Errorf("%s: %w", what, err)
	}
	return added, nil
}

// InsertPrompts inserts ps (IDs derived from content when empty) and returns how many
// were new; rows already present are left alone. The dataset must exist.
func (s *Store) InsertPrompts(ctx context.Context, ps []Prompt) (int64, error) {
	b := &pgx.Batch{}
	for i := range ps {
		p := &ps[i]
		defaults(&p.Split, &p.Metadata)
		if p.ID == "" {
			id, err := ContentID(p.Dataset, KindPrompts, p.Prompt)
			if err != nil {
				return 0, err
			}
			p.ID = id
		}
		b.Queue(`INSERT INTO prompts (id, dataset, ord, prompt, source, round, split, metadata)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
			p.ID, p.Dataset, p.Ord, p.Prompt, p.Source, p.Round, p.Split, p.Metadata)
	}
	return s.sendInserts(ctx, "insert prompts", b)
}

// preferenceContent is what identifies a preference pair.
type preferenceContent struct {
	Prompt   Segment  `json:"prompt"`
	Chosen   Segment  `json:"chosen"`
	Rejected Segment  `json:"rejected"`
	Edited   *Segment `json:"edited,omitempty"`
}

// InsertPreferencePairs inserts ps (IDs derived from content when empty) and returns
// how many were new.
func (s *Store) InsertPreferencePairs(ctx context.Context, ps []PreferencePair) (int64, error) {
	b := &pgx.Batch{}
	for i := range ps {
		p := &ps[i]
		defaults(&p.Split, &p.Metadata)
		if p.ID == "" {
			id, err := ContentID(p.Dataset, KindPreferences, preferenceContent{p.Prompt, p.Chosen, p.Rejected, p.Edited})
			if err != nil {
				return 0, err
			}
			p.ID = id
		}
		b.Queue(`INSERT INTO preference_pairs (id, dataset, ord, prompt_id, prompt, chosen, rejected, edited, margin, rating, source, round, split, metadata)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) ON CONFLICT (id) DO NOTHING`,
			p.ID, p.Dataset, p.Ord, p.PromptID, p.Prompt, p.Chosen, p.Rejected, p.Edited, p.Margin, p.Rating, p.Source, p.Round, p.Split, p.Metadata)
	}
	return s.sendInserts(ctx, "insert preference pairs", b)
}

// sftContent is what identifies an SFT example.
type sftContent struct {
	Messages   []Message `json:"messages,omitempty"`
	Prompt     *Segment  `json:"prompt,omitempty"`
	Completion *Segment  `json:"completion,omitempty"`
}

// InsertSFTExamples inserts es (IDs derived from content when empty) and returns how
// many were new.
func (s *Store) InsertSFTExamples(ctx context.Context, es []SFTExample) (int64, error) {
	b := &pgx.Batch{}
	for i := range es {
		e := &es[i]
		defaults(&e.Split, &e.Metadata)
		if e.ID == "" {
			id, err := ContentID(e.Dataset, KindSFT, sftContent{e.Messages, e.Prompt, e.Completion})
			if err != nil {
				return 0, err
			}
			e.ID = id
		}
		var msgs any
		if e.Messages != nil {
			msgs = e.Messages
		}
		b.Queue(`INSERT INTO sft_examples (id, dataset, ord, messages, prompt, completion, source, round, split, metadata)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (id) DO NOTHING`,
			e.ID, e.Dataset, e.Ord, msgs, e.Prompt, e.Completion, e.Source, e.Round, e.Split, e.Metadata)
	}
	return s.sendInserts(ctx, "insert sft examples", b)
}

// dataQuery builds the common WHERE/ORDER/LIMIT of dataset row listings.
func dataQuery(cols, table string, f DataFilter) (string, []any) {
	q := `SELECT ` + cols + ` FROM ` + table + `
		WHERE dataset = $1 AND ($2 = '' OR split = $2) AND ($3 = 0 OR round = $3)
		ORDER BY ord, id`
	args := []any{f.Dataset, f.Split, f.Round}
	if f.Limit > 0 {
		q += ` LIMIT $4`
		args = append(args, f.Limit)
	}
	if f.Offset > 0 {
		q += fmt.Sprintf(` OFFSET $%d`, len(args)+1)
		args = append(args, f.Offset)
	}
	return q, args
}

// ListPrompts returns the prompts matching f in import order.
func (s *Store) ListPrompts(ctx context.Context, f DataFilter) ([]Prompt, error) {
	q, args := dataQuery(`id, dataset, ord, prompt, source, round, split, metadata`, "prompts", f)
	return collect(ctx, s.db, fmt.Sprintf("list prompts of %q", f.Dataset), func(row pgx.Row) (Prompt, error) {
		var p Prompt
		err := row.Scan(&p.ID, &p.Dataset, &p.Ord, &p.Prompt, &p.Source, &p.Round, &p.Split, &p.Metadata)
		return p, err
	}, q, args...)
}

// GetPrompts returns the prompts with the given IDs, in the order asked; a missing ID
// is an error naming it.
func (s *Store) GetPrompts(ctx context.Context, ids []string) ([]Prompt, error) {
	got, err := collect(ctx, s.db, "get prompts", func(row pgx.Row) (Prompt, error) {
		var p Prompt
		err := row.Scan(&p.ID, &p.Dataset, &p.Ord, &p.Prompt, &p.Source, &p.Round, &p.Split, &p.Metadata)
		return p, err
	}, `SELECT id, dataset, ord, prompt, source, round, split, metadata FROM prompts WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, err
	}
	byID := make(map[string]Prompt, len(got))
	for _, p := range got {
		byID[p.ID] = p
	}
	out := make([]Prompt, len(ids))
	for i, id := range ids {
		p, ok := byID[id]
		if !ok {
			return nil, fmt.Errorf("prompt %s: %w", id, ErrNotFound)
		}
		out[i] = p
	}
	return out, nil
}

// ListPreferencePairs returns the pairs matching f in import order.
func (s *Store) ListPreferencePairs(ctx context.Context, f DataFilter) ([]PreferencePair, error) {
	q, args := dataQuery(`id, dataset, ord, prompt_id, prompt, chosen, rejected, edited, margin, rating, source, round, split, metadata`, "preference_pairs", f)
	return collect(ctx, s.db, fmt.Sprintf("list preference pairs of %q", f.Dataset), func(row pgx.Row) (PreferencePair, error) {
		var p PreferencePair
		err := row.Scan(&p.ID, &p.Dataset, &p.Ord, &p.PromptID, &p.Prompt, &p.Chosen, &p.Rejected, &p.Edited, &p.Margin, &p.Rating, &p.Source, &p.Round, &p.Split, &p.Metadata)
		return p, err
	}, q, args...)
}

// ListSFTExamples returns the examples matching f in import order.
func (s *Store) ListSFTExamples(ctx context.Context, f DataFilter) ([]SFTExample, error) {
	q, args := dataQuery(`id, dataset, ord, messages, prompt, completion, source, round, split, metadata`, "sft_examples", f)
	return collect(ctx, s.db, fmt.Sprintf("list sft examples of %q", f.Dataset), func(row pgx.Row) (SFTExample, error) {
		var e SFTExample
		err := row.Scan(&e.ID, &e.Dataset, &e.Ord, &e.Messages, &e.Prompt, &e.Completion, &e.Source, &e.Round, &e.Split, &e.Metadata)
		return e, err
	}, q, args...)
}

// DatasetArtifactKind is the artifact kind of dataset snapshots.
const DatasetArtifactKind = "dataset"

// RecordDatasetArtifact records the dataset's current content as an artifact of kind
// "dataset" (URI "postgres:dataset/<name>", sha256 = DatasetDigest), so lineage edges can
// say which data a model was trained on. Recording unchanged content again returns the
// same artifact; after rows are added, it is a new one.
func (s *Store) RecordDatasetArtifact(ctx context.Context, name, runID string, round int) (Artifact, error) {
	d, err := s.GetDataset(ctx, name)
	if err != nil {
		return Artifact{}, err
	}
	digest, n, err := s.DatasetDigest(ctx, name)
	if err != nil {
		return Artifact{}, err
	}
	return s.RecordArtifact(ctx, Artifact{
		Kind: DatasetArtifactKind, URI: "postgres:dataset/" + name, SHA256: digest,
		Metadata: map[string]any{"dataset": name, "kind": d.Kind, "rows": n, "eval_rows": d.EvalRows},
		RunID:    runID, Round: round,
	})
}
