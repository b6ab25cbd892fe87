package tokenizer

import "fmt"

// The Llama 3 special tokens.
const (
	BeginOfText   = "<|begin_of_text|>"
	EndOfText     = "<|end_of_text|>"
	StartHeaderID = "<|start_header_id|>"
	EndHeaderID   = "<|end_header_id|>"
	EOTID         = "<|eot_id|>"
	EOMID         = "<|eom_id|>"
	PythonTag     = "<|python_tag|>"
)

// Llama3SpecialTokens are the special tokens Train appends to a vocabulary by default, in
// id order.
func Llama3SpecialTokens() []string {
	return []string{BeginOfText, EndOfText, StartHeaderID, EndHeaderID, EOTID, EOMID, PythonTag}
}

// ReservedSpecialToken names the n-th reserved special token, as Llama 3 spells them.
func ReservedSpecialToken(n int) string {
	return fmt.Sprintf("<|reserved_special_token_%d|>", n)
}

// SpecialID returns the id of an added token by its content, e.g. SpecialID(EOTID).
func (t *Tokenizer) SpecialID(name string) (int32, bool) {
	id, ok := t.addedIDs[name]
	return id, ok
}

func (t *Tokenizer) specialOr(name string) int32 {
	if id, ok := t.addedIDs[name]; ok {
		return id
	}
	return -1
}

// BOS is the id of <|begin_of_text|>, or -1 when the vocabulary has none.
func (t *Tokenizer) BOS() int32 { return t.specialOr(BeginOfText) }

// EOS is the id of <|end_of_text|>, or -1 when the vocabulary has none.
func (t *Tokenizer) EOS() int32 { return t.specialOr(EndOfText) }

// EOT is the id of <|eot_id|> (end of turn), or -1 when the vocabulary has none.
func (t *Tokenizer) EOT() int32 { return t.specialOr(EOTID) }

// EOM is the id of <|eom_id|> (end of message, tool use), or -1 when absent.
func (t *Tokenizer) EOM() int32 { return t.specialOr(EOMID) }

// StartHeader is the id of <|start_header_id|>, or -1 when absent.
func (t *Tokenizer) StartHeader() int32 { return t.specialOr(StartHeaderID) }

// EndHeader is the id of <|end_header_id|>, or -1 when absent.
func (t *Tokenizer) EndHeader() int32 { return t.specialOr(EndHeaderID) }

// StopIDs are the tokens that end generation: <|eot_id|>, <|eom_id|> and <|end_of_text|>,
// those the vocabulary has.
func (t *Tokenizer) StopIDs() []int32 {
	return t.presentIDs(EOTID, EOMID, EndOfText)
}

// FormattingTokenIDs are the chat-format tokens Llama 3 masks out of DPO log-ratios:
// <|start_header_id|>, <|end_header_id|>, <|eot_id|>, <|eom_id|> and <|python_tag|>,
// those the vocabulary has.
func (t *Tokenizer) FormattingTokenIDs() []int32 {
	return t.presentIDs(StartHeaderID, EndHeaderID, EOTID, EOMID, PythonTag)
}

func (t *Tokenizer) presentIDs(names ...string) []int32 {
	out := make([]int32, 0, len(names))
	for _, n := range names {
		if id, ok := t.addedIDs[n]; ok {
			out = append(out, id)
		}
	}
	return out
}
