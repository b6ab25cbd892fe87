package datasets

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
)

// fields adds t to the row under key (text) or key_ids (ids).
func (t Text) addTo(row map[string]any, key string) {
	switch t.Form {
	case FormString:
		row[key] = t.String
	case FormMessages:
		row[key] = t.Messages
	case FormIDs:
		row[key+"_ids"] = t.IDs
	}
}

// Row returns the preference as a JSONL object in the TRL form it parses from.
func (p Preference) Row() map[string]any {
	row := map[string]any{}
	if p.ID != "" {
		row["id"] = p.ID
	}
	p.Prompt.addTo(row, "prompt")
	p.Chosen.addTo(row, "chosen")
	p.Rejected.addTo(row, "rejected")
	p.Edited.addTo(row, "edited")
	if p.Margin != nil {
		row["margin"] = *p.Margin
	}
	if p.Rating != "" {
		row["rating"] = p.Rating
	}
	return row
}

// Row returns the prompt as a JSONL object.
func (p Prompt) Row() map[string]any {
	row := map[string]any{}
	if p.ID != "" {
		row["id"] = p.ID
	}
	p.Prompt.addTo(row, "prompt")
	return row
}

// Row returns the SFT example as a JSONL object.
func (e SFTExample) Row() map[string]any {
	row := map[string]any{}
	if e.ID != "" {
		row["id"] = e.ID
	}
	if e.Messages != nil {
		row["messages"] = e.Messages
		return row
	}
	e.Prompt.addTo(row, "prompt")
	e.Completion.addTo(row, "completion")
	return row
}

// WriteJSONL writes one JSON object per line.
func WriteJSONL[T interface{ Row() map[string]any }](w io.Writer, rows []T) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for i, r := range rows {
		if err := enc.Encode(r.Row()); err != nil {
			return fmt.Errorf("write row %d: %w", i+1, err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write rows: %w", err)
	}
	return nil
}
