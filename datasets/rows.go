// Package datasets owns the training-data rows of the pipeline and their JSONL forms: the
// formats TRL users already have (`{"prompt","chosen","rejected"}` with strings or chat
// message lists, `{"messages": [...]}`, `{"prompt","completion"}`) and the same rows
// pre-tokenized (`prompt_ids`, `chosen_ids`, ...). Parsing is strict: a bad line is an
// error naming file:line, field and reason, and a file either parses whole or not at all.
// The package knows nothing of PostgreSQL or Temporal; the datastore imports and exports
// these rows, and the stages encode them into token ids.
package datasets

import (
	"github.com/posttrain/posttrain/tokenizer"
)

// Kind names a row type.
type Kind string

// The row kinds.
const (
	KindPrompts     Kind = "prompts"
	KindPreferences Kind = "preferences"
	KindSFT         Kind = "sft"
)

// ParseKind validates a kind name.
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case KindPrompts, KindPreferences, KindSFT:
		return Kind(s), nil
	}
	return "", &FieldError{Field: "kind", Reason: "must be prompts, preferences or sft, got " + quote(s)}
}

// Text is one piece of a row in exactly one of three forms: a plain string, a chat message
// list, or token ids used exactly as given (no BOS, no template).
type Text struct {
	String   string              `json:"-"`
	Messages []tokenizer.Message `json:"-"`
	IDs      []int32             `json:"-"`
	// Form says which of the three fields holds the value.
	Form Form `json:"-"`
}

// Form is the representation a Text was given in.
type Form int

// The forms of a Text.
const (
	FormNone Form = iota
	FormString
	FormMessages
	FormIDs
)

// IsZero reports whether the text is absent.
func (t Text) IsZero() bool { return t.Form == FormNone }

// Prompt is one prompt of the rejection-sampling stage. ID, when given, is the caller's
// stable identifier; otherwise the content hash identifies the prompt.
type Prompt struct {
	ID     string `json:"id,omitempty"`
	Prompt Text   `json:"prompt"`
	// Answer is the optional reference answer ("answer"): with `posttrain sample --verify
	// answer`, a sample whose trimmed text differs from it is never selected. It is not
	// part of the prompt fed to the policy.
	Answer string `json:"answer,omitempty"`
	// Line is the 1-based line of the row in its JSONL file (0 when not read from a file).
	Line int `json:"-"`
}

// Preference is one annotated comparison: chosen over rejected, and optionally an edited
// response ranked above both (edited > chosen > rejected). Margin and Rating carry the
// annotator's strength (Llama 2's rating levels), both optional.
type Preference struct {
	ID       string   `json:"id,omitempty"`
	Prompt   Text     `json:"prompt"`
	Chosen   Text     `json:"chosen"`
	Rejected Text     `json:"rejected"`
	Edited   Text     `json:"edited"`
	Margin   *float64 `json:"margin,omitempty"`
	Rating   string   `json:"rating,omitempty"`
	Line     int      `json:"-"`
}

// SFTExample is one supervised example: either a conversation (Messages, the assistant
// turns are the targets) or a prompt/completion pair (Prompt + Completion, the completion
// is the target).
type SFTExample struct {
	ID         string              `json:"id,omitempty"`
	Messages   []tokenizer.Message `json:"messages,omitempty"`
	Prompt     Text                `json:"prompt"`
	Completion Text                `json:"completion"`
	Line       int                 `json:"-"`
}
