package jsonl

import (
	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
	"github.com/posttrain/posttrain/tokenizer"
)

// FromText converts a datasets text (exactly one form) to a stored segment.
func FromText(t datasets.Text) datastore.Segment {
	switch t.Form {
	case datasets.FormString:
		return datastore.Segment{Text: t.String}
	case datasets.FormMessages:
		return datastore.Segment{Messages: fromMessages(t.Messages)}
	case datasets.FormIDs:
		return datastore.Segment{IDs: append([]int32(nil), t.IDs...)}
	}
	return datastore.Segment{}
}

// ToText converts a stored segment to a datasets text. A segment holds one form when it
// came through Parse; otherwise messages win over token ids, and ids over plain text.
func ToText(s datastore.Segment) datasets.Text {
	switch {
	case s.Messages != nil:
		return datasets.Text{Messages: toMessages(s.Messages), Form: datasets.FormMessages}
	case len(s.IDs) > 0:
		return datasets.Text{IDs: append([]int32(nil), s.IDs...), Form: datasets.FormIDs}
	}
	return datasets.Text{String: s.Text, Form: datasets.FormString}
}

func fromMessages(ms []tokenizer.Message) []datastore.Message {
	if ms == nil {
		return nil
	}
	out := make([]datastore.Message, len(ms))
	for i, m := range ms {
		out[i] = datastore.Message{Role: m.Role, Content: m.Content}
	}
	return out
}

func toMessages(ms []datastore.Message) []tokenizer.Message {
	if ms == nil {
		return nil
	}
	out := make([]tokenizer.Message, len(ms))
	for i, m := range ms {
		out[i] = tokenizer.Message{Role: m.Role, Content: m.Content}
	}
	return out
}

// FromPrompt converts a parsed prompt row (its "id", if any, is kept by Parse as
// metadata; the stored ID is the content hash).
func FromPrompt(p datasets.Prompt) datastore.Prompt {
	return datastore.Prompt{Prompt: FromText(p.Prompt), Ord: int64(p.Line)}
}

// ToPrompt converts a stored prompt for the stages; its ID is the stored ID, so
// sampling candidates can name the prompt row they answer.
func ToPrompt(p datastore.Prompt) datasets.Prompt {
	return datasets.Prompt{ID: p.ID, Prompt: ToText(p.Prompt), Line: int(p.Ord)}
}

// FromPreference converts a parsed preference row.
func FromPreference(p datasets.Preference) datastore.PreferencePair {
	out := datastore.PreferencePair{
		Prompt: FromText(p.Prompt), Chosen: FromText(p.Chosen), Rejected: FromText(p.Rejected),
		Margin: p.Margin, Rating: p.Rating, Ord: int64(p.Line),
	}
	if !p.Edited.IsZero() {
		e := FromText(p.Edited)
		out.Edited = &e
	}
	return out
}

// ToPreference converts a stored preference pair for the stages (ID = stored ID).
func ToPreference(p datastore.PreferencePair) datasets.Preference {
	out := datasets.Preference{
		ID: p.ID, Prompt: ToText(p.Prompt), Chosen: ToText(p.Chosen), Rejected: ToText(p.Rejected),
		Margin: p.Margin, Rating: p.Rating, Line: int(p.Ord),
	}
	if p.Edited != nil {
		out.Edited = ToText(*p.Edited)
	}
	return out
}

// FromSFT converts a parsed SFT example.
func FromSFT(e datasets.SFTExample) datastore.SFTExample {
	out := datastore.SFTExample{Messages: fromMessages(e.Messages), Ord: int64(e.Line)}
	if e.Messages == nil {
		p, c := FromText(e.Prompt), FromText(e.Completion)
		out.Prompt, out.Completion = &p, &c
	}
	return out
}

// ToSFT converts a stored SFT example for the stages (ID = stored ID).
func ToSFT(e datastore.SFTExample) datasets.SFTExample {
	out := datasets.SFTExample{ID: e.ID, Messages: toMessages(e.Messages), Line: int(e.Ord)}
	if e.Prompt != nil {
		out.Prompt = ToText(*e.Prompt)
	}
	if e.Completion != nil {
		out.Completion = ToText(*e.Completion)
	}
	return out
}
