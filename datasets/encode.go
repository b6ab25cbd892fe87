package datasets

import (
	"errors"
	"fmt"
	"slices"

	"github.com/posttrain/posttrain/tokenizer"
)

// ErrNoTokenizer is returned when a text row must be encoded but the model has no
// tokenizer.json; pre-tokenized rows need none.
var ErrNoTokenizer = errors.New("this row is text, but the model directory has no tokenizer.json (give pre-tokenized *_ids rows, or a model with a tokenizer)")

// Encoder turns rows into token ids. Tok may be nil when every row is pre-tokenized.
// Formatting lists the ids of formatting tokens (headers, end of turn) used to build the
// formatting masks of pre-tokenized responses; it defaults to Tok's.
type Encoder struct {
	Tok        *tokenizer.Tokenizer
	Formatting []int32
	// System, when set, is prepended as a system message to text prompts that have none
	// (the recipe's per-round system prompts). Pre-tokenized prompts are used as given.
	System string
	// MaxLen, when > 0, bounds prompt+response tokens (the model's context window).
	MaxLen int
}

// Sequence is a prompt and one response in token ids. Formatting marks the response
// tokens that are formatting tokens (masked out of DPO log-ratios).
type Sequence struct {
	Prompt     []int32
	Response   []int32
	Formatting []bool
}

// Len is the total token count.
func (s Sequence) Len() int { return len(s.Prompt) + len(s.Response) }

// EncodedPreference is a preference row in ids: one prompt and its ranked responses,
// best first (edited, chosen, rejected when edited exists; else chosen, rejected).
type EncodedPreference struct {
	Prompt []int32
	// Responses are best first; Formatting[i] masks Responses[i].
	Responses  [][]int32
	Formatting [][]bool
	HasEdited  bool
	Margin     *float64
	Rating     string
	Line       int
}

// Chosen is the chosen response (the second when an edit exists).
func (e EncodedPreference) Chosen() []int32 { return e.Responses[len(e.Responses)-2] }

// Rejected is the rejected response, always the last.
func (e EncodedPreference) Rejected() []int32 { return e.Responses[len(e.Responses)-1] }

func (e *Encoder) formattingSet() map[int32]bool {
	ids := e.Formatting
	if ids == nil && e.Tok != nil {
		ids = e.Tok.FormattingTokenIDs()
	}
	set := make(map[int32]bool, len(ids))
	for _, id := range ids {
		set[id] = true
	}
	return set
}

// promptMessages renders a text prompt as chat messages, adding the system prompt.
func (e *Encoder) promptMessages(t Text) []tokenizer.Message {
	var msgs []tokenizer.Message
	if t.Form == FormString {
		msgs = []tokenizer.Message{{Role: tokenizer.UserRole, Content: t.String}}
	} else {
		msgs = slices.Clone(t.Messages)
	}
	if e.System != "" && (len(msgs) == 0 || msgs[0].Role != tokenizer.SystemRole) {
		msgs = append([]tokenizer.Message{{Role: tokenizer.SystemRole, Content: e.System}}, msgs...)
	}
	return msgs
}

// EncodePrompt returns the prompt's ids, ending with the open assistant header for text
// prompts (ready for generation) and exactly as given for pre-tokenized ones.
func (e *Encoder) EncodePrompt(t Text) ([]int32, error) {
	switch t.Form {
	case FormIDs:
		return slices.Clone(t.IDs), nil
	case FormString, FormMessages:
		if e.Tok == nil {
			return nil, ErrNoTokenizer
		}
		return e.Tok.RenderPrompt(e.promptMessages(t))
	}
	return nil, fmt.Errorf("prompt is empty")
}

// EncodeResponse returns a response's ids and formatting mask. A text response is its
// tokens followed by the end-of-turn token (the model must learn to stop); pre-tokenized
// ids are used exactly as given.
func (e *Encoder) EncodeResponse(t Text, formatting map[int32]bool) ([]int32, []bool, error) {
	var ids []int32
	switch t.Form {
	case FormIDs:
		ids = slices.Clone(t.IDs)
	case FormString:
		if e.Tok == nil {
			return nil, nil, ErrNoTokenizer
		}
		ids = append(e.Tok.Encode(t.String), e.Tok.EOT())
	default:
		return nil, nil, fmt.Errorf("response is empty")
	}
	mask := make([]bool, len(ids))
	for i, id := range ids {
		mask[i] = formatting[id]
	}
	return ids, mask, nil
}

func (e *Encoder) checkLen(prompt, response []int32, field string) error {
	if e.MaxLen > 0 && len(prompt)+len(response) > e.MaxLen {
		return &FieldError{Field: field, Reason: fmt.Sprintf("prompt + response is %d tokens, longer than the context window of %d", len(prompt)+len(response), e.MaxLen)}
	}
	return nil
}

// EncodePreference encodes a preference row. Errors name the row's line and field.
func (e *Encoder) EncodePreference(p Preference) (EncodedPreference, error) {
	out := EncodedPreference{Margin: p.Margin, Rating: p.Rating, Line: p.Line}
	wrap := func(err error) error { return lineError(err, p.Line) }
	prompt, err := e.EncodePrompt(p.Prompt)
	if err != nil {
		return out, wrap(&FieldError{Field: "prompt", Reason: err.Error()})
	}
	out.Prompt = prompt
	fmtSet := e.formattingSet()
	fields := []struct {
		name string
		t    Text
	}{{"edited", p.Edited}, {"chosen", p.Chosen}, {"rejected", p.Rejected}}
	for _, f := range fields {
		if f.t.IsZero() {
			continue
		}
		ids, mask, err := e.EncodeResponse(f.t, fmtSet)
		if err != nil {
			return out, wrap(&FieldError{Field: f.name, Reason: err.Error()})
		}
		if err := e.checkLen(prompt, ids, f.name); err != nil {
			return out, wrap(err)
		}
		out.Responses = append(out.Responses, ids)
		out.Formatting = append(out.Formatting, mask)
		out.HasEdited = out.HasEdited || f.name == "edited"
	}
	return out, nil
}

// EncodedSFT is one training sequence with its loss mask: Targets[i] says whether token
// i is predicted and trained on (assistant answers, their end-of-turn included).
type EncodedSFT struct {
	IDs     []int32
	Targets []bool
	Line    int
}

// SFTOptions choose which assistant turns of a conversation are trained.
type SFTOptions struct {
	// LastTurnOnly trains only the final assistant turn of multi-turn conversations.
	LastTurnOnly bool
}

// EncodeSFT encodes an SFT example.
func (e *Encoder) EncodeSFT(ex SFTExample, opts SFTOptions) (EncodedSFT, error) {
	out := EncodedSFT{Line: ex.Line}
	if ex.Messages != nil {
		if e.Tok == nil {
			return out, lineError(&FieldError{Field: "messages", Reason: ErrNoTokenizer.Error()}, ex.Line)
		}
		msgs := ex.Messages
		if e.System != "" && msgs[0].Role != tokenizer.SystemRole {
			msgs = append([]tokenizer.Message{{Role: tokenizer.SystemRole, Content: e.System}}, msgs...)
		}
		r, err := e.Tok.RenderChat(msgs, tokenizer.RenderOptions{LastAssistantOnly: opts.LastTurnOnly})
		if err != nil {
			return out, lineError(&FieldError{Field: "messages", Reason: err.Error()}, ex.Line)
		}
		out.IDs, out.Targets = r.IDs, r.AssistantMask
	} else {
		prompt, err := e.EncodePrompt(ex.Prompt)
		if err != nil {
			return out, lineError(&FieldError{Field: "prompt", Reason: err.Error()}, ex.Line)
		}
		resp, _, err := e.EncodeResponse(ex.Completion, nil)
		if err != nil {
			return out, lineError(&FieldError{Field: "completion", Reason: err.Error()}, ex.Line)
		}
		out.IDs = append(prompt, resp...)
		out.Targets = make([]bool, len(out.IDs))
		for i := len(prompt); i < len(out.IDs); i++ {
			out.Targets[i] = true
		}
	}
	if e.MaxLen > 0 && len(out.IDs) > e.MaxLen {
		field := "completion"
		if ex.Messages != nil {
			field = "messages"
		}
		return out, lineError(&FieldError{Field: field, Reason: fmt.Sprintf("example is %d tokens, longer than the context window of %d", len(out.IDs), e.MaxLen)}, ex.Line)
	}
	return out, nil
}

// lineError stamps a row's line on a FieldError that lacks one.
func lineError(err error, line int) error {
	var fe *FieldError
	if errors.As(err, &fe) && fe.Line == 0 && line > 0 {
		fe.Line = line
	}
	return err
}
