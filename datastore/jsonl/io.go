package jsonl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/posttrain/posttrain/datastore"
)

// ImportOptions says where parsed rows go.
type ImportOptions struct {
	// Kind is datastore.KindPrompts, KindPreferences or KindSFT.
	Kind string
	// Dataset is the target dataset, created when missing; "" means the file's base
	// name without extension.
	Dataset string
	// Source labels the rows; "" means the file's base name.
	Source string
	// Split applies to rows without their own "split" field; "" means train.
	Split string
	// Round tags the rows with the round that produced them (0 for external data).
	Round int
	// Description is stored on a newly created dataset.
	Description string
	// MaxLineBytes bounds one line; 0 means DefaultMaxLineBytes.
	MaxLineBytes int
}

// ImportResult summarises an import.
type ImportResult struct {
	File    string `json:"file"`
	Dataset string `json:"dataset"`
	Kind    string `json:"kind"`
	// Rows were read; Inserted were new; Duplicates were already in the dataset.
	Rows       int   `json:"rows"`
	Inserted   int64 `json:"inserted"`
	Duplicates int64 `json:"duplicates"`
}

// ImportFile imports the JSONL file at path. See Import.
func ImportFile(ctx context.Context, store *datastore.Store, path string, opt ImportOptions) (ImportResult, error) {
	f, err := os.Open(path)
	if err != nil {
		return ImportResult{}, fmt.Errorf("import %s: %w", path, err)
	}
	defer f.Close()
	return Import(ctx, store, f, path, opt)
}

// Import parses all of r (named file in messages) and, when every line is good, writes
// the rows into the dataset in one transaction. Rows already present (same content) are
// counted as duplicates, so importing a file twice adds nothing.
func Import(ctx context.Context, store *datastore.Store, r io.Reader, file string, opt ImportOptions) (ImportResult, error) {
	if opt.Split != "" && opt.Split != datastore.SplitTrain && opt.Split != datastore.SplitEval {
		return ImportResult{}, fmt.Errorf("import %s: split %q must be train or eval", file, opt.Split)
	}
	rows, err := Parse(r, file, Options{Kind: opt.Kind, MaxLineBytes: opt.MaxLineBytes})
	if err != nil {
		return ImportResult{}, err
	}
	base := filepath.Base(file)
	if opt.Dataset == "" {
		opt.Dataset = strings.TrimSuffix(base, filepath.Ext(base))
	}
	if opt.Source == "" {
		opt.Source = base
	}
	res := ImportResult{File: file, Dataset: opt.Dataset, Kind: opt.Kind, Rows: rows.Len()}
	err = store.InTx(ctx, func(tx *datastore.Store) error {
		if _, err := tx.CreateDataset(ctx, datastore.Dataset{Name: opt.Dataset, Kind: opt.Kind, Source: opt.Source, Description: opt.Description}); err != nil {
			return err
		}
		var n int64
		var err error
		switch opt.Kind {
		case datastore.KindPrompts:
			for i := range rows.Prompts {
				p := &rows.Prompts[i]
				p.Dataset, p.Source, p.Round = opt.Dataset, opt.Source, opt.Round
				p.Split = pickSplit(p.Split, opt.Split)
			}
			n, err = tx.InsertPrompts(ctx, rows.Prompts)
		case datastore.KindPreferences:
			for i := range rows.Preferences {
				p := &rows.Preferences[i]
				p.Dataset, p.Source, p.Round = opt.Dataset, opt.Source, opt.Round
				p.Split = pickSplit(p.Split, opt.Split)
			}
			n, err = tx.InsertPreferencePairs(ctx, rows.Preferences)
		case datastore.KindSFT:
			for i := range rows.SFT {
				e := &rows.SFT[i]
				e.Dataset, e.Source, e.Round = opt.Dataset, opt.Source, opt.Round
				e.Split = pickSplit(e.Split, opt.Split)
			}
			n, err = tx.InsertSFTExamples(ctx, rows.SFT)
		}
		res.Inserted = n
		return err
	})
	if err != nil {
		return ImportResult{}, fmt.Errorf("import %s into dataset %q: %w", file, opt.Dataset, err)
	}
	res.Duplicates = int64(res.Rows) - res.Inserted
	return res, nil
}

// pickSplit lets a row's own "split" field win over the import's default.
func pickSplit(row, def string) string {
	switch {
	case row != "":
		return row
	case def != "":
		return def
	}
	return datastore.SplitTrain
}

// pageSize is how many rows Export reads per query.
const pageSize = 1000

// Export writes a dataset's rows (of one split, or all when split is "") as JSONL in the
// formats Import reads, in import order, and returns how many it wrote.
func Export(ctx context.Context, store *datastore.Store, w io.Writer, dataset, split string) (int, error) {
	d, err := store.GetDataset(ctx, dataset)
	if err != nil {
		return 0, fmt.Errorf("export: %w", err)
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	n := 0
	for offset := 0; ; offset += pageSize {
		f := datastore.DataFilter{Dataset: dataset, Split: split, Limit: pageSize, Offset: offset}
		var rows []map[string]any
		switch d.Kind {
		case datastore.KindPrompts:
			ps, err := store.ListPrompts(ctx, f)
			if err != nil {
				return n, fmt.Errorf("export %q: %w", dataset, err)
			}
			for _, p := range ps {
				row := baseRow(p.Metadata, p.Split)
				putSegment(row, "prompt", p.Prompt)
				rows = append(rows, row)
			}
		case datastore.KindPreferences:
			ps, err := store.ListPreferencePairs(ctx, f)
			if err != nil {
				return n, fmt.Errorf("export %q: %w", dataset, err)
			}
			for _, p := range ps {
				row := baseRow(p.Metadata, p.Split)
				putSegment(row, "prompt", p.Prompt)
				putSegment(row, "chosen", p.Chosen)
				putSegment(row, "rejected", p.Rejected)
				if p.Edited != nil {
					putSegment(row, "edited", *p.Edited)
				}
				if p.Margin != nil {
					row["margin"] = *p.Margin
				}
				if p.Rating != "" {
					row["rating"] = p.Rating
				}
				rows = append(rows, row)
			}
		case datastore.KindSFT:
			es, err := store.ListSFTExamples(ctx, f)
			if err != nil {
				return n, fmt.Errorf("export %q: %w", dataset, err)
			}
			for _, e := range es {
				row := baseRow(e.Metadata, e.Split)
				if e.Messages != nil {
					row["messages"] = e.Messages
				}
				if e.Prompt != nil {
					putSegment(row, "prompt", *e.Prompt)
				}
				if e.Completion != nil {
					putSegment(row, "completion", *e.Completion)
				}
				rows = append(rows, row)
			}
		}
		for _, row := range rows {
			if err := enc.Encode(row); err != nil {
				return n, fmt.Errorf("export %q: write: %w", dataset, err)
			}
			n++
		}
		if len(rows) < pageSize {
			return n, nil
		}
	}
}

// baseRow starts an exported row from the row's metadata (extra keys round-trip) and
// its split (written only for eval rows, so train rows stay plain TRL rows).
func baseRow(meta map[string]any, split string) map[string]any {
	row := make(map[string]any, len(meta)+4)
	for k, v := range meta {
		row[k] = v
	}
	if split == datastore.SplitEval {
		row["split"] = split
	}
	return row
}

// putSegment writes a segment as key (text or messages) and key_ids.
func putSegment(row map[string]any, key string, s datastore.Segment) {
	switch {
	case s.Messages != nil:
		row[key] = s.Messages
	case s.Text != "" || len(s.IDs) == 0:
		row[key] = s.Text
	}
	if len(s.IDs) > 0 {
		row[key+"_ids"] = s.IDs
	}
}
