// Package textio connects the inference engine to user input: it turns plain text, chat
// messages or pre-tokenized ids into prompt token ids (with the model's tokenizer when it
// has one), and scores the completions of JSONL rows for `posttrain eval logprobs`.
package textio

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

// PromptInput is one prompt in exactly one of three forms.
type PromptInput struct {
	// Text is a user message, rendered with the Llama 3 chat template (BOS, user turn,
	// open assistant header) unless Raw is set.
	Text    string
	HasText bool
	// Raw encodes Text as plain text after BOS (how pretraining documents start), with no
	// chat template.
	Raw bool
	// Messages are rendered with the chat template followed by an open assistant header.
	Messages []tokenizer.Message
	// IDs are used exactly as given (no BOS, no template); they need no tokenizer.
	IDs []int32
}

// PromptIDs returns the prompt's token ids. tok may be nil for an IDs prompt.
func PromptIDs(tok *tokenizer.Tokenizer, in PromptInput) ([]int32, error) {
	forms := 0
	for _, set := range []bool{in.HasText, in.Messages != nil, in.IDs != nil} {
		if set {
			forms++
		}
	}
	if forms != 1 {
		return nil, errors.New("give exactly one prompt: text, messages or token ids")
	}
	if in.IDs != nil {
		if len(in.IDs) == 0 {
			return nil, errors.New("the prompt ids are empty")
		}
		return in.IDs, nil
	}
	if tok == nil {
		return nil, errors.New("the model directory has no tokenizer.json: give the prompt as token ids")
	}
	if in.HasText && in.Raw {
		ids := make([]int32, 0, len(in.Text)/2+1)
		if bos := tok.BOS(); bos >= 0 {
			ids = append(ids, bos)
		}
		ids = tok.AppendEncode(ids, in.Text)
		if len(ids) == 0 {
			return nil, errors.New("the prompt text is empty")
		}
		return ids, nil
	}
	msgs := in.Messages
	if in.HasText {
		msgs = []tokenizer.Message{{Role: tokenizer.UserRole, Content: in.Text}}
	}
	ids, err := tok.RenderPrompt(msgs)
	if err != nil {
		return nil, fmt.Errorf("render chat prompt: %w", err)
	}
	return ids, nil
}

// ReadMessagesFile reads chat messages from a JSON file holding either a list of
// {"role", "content"} objects or an object with such a list under "messages".
func ReadMessagesFile(path string) ([]tokenizer.Message, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	msgs, err := parseMessages(bytes.TrimSpace(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return msgs, nil
}

func parseMessages(raw []byte) ([]tokenizer.Message, error) {
	if len(raw) > 0 && raw[0] == '{' {
		var wrapper struct {
			Messages json.RawMessage `json:"messages"`
		}
		if err := json.Unmarshal(raw, &wrapper); err != nil {
			return nil, fmt.Errorf("invalid JSON: %w", err)
		}
		if wrapper.Messages == nil {
			return nil, errors.New(`want a list of messages or an object with "messages"`)
		}
		raw = wrapper.Messages
	}
	var msgs []tokenizer.Message
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&msgs); err != nil {
		return nil, fmt.Errorf("messages: want a list of {\"role\", \"content\"} objects: %w", err)
	}
	if len(msgs) == 0 {
		return nil, errors.New("messages: the list is empty")
	}
	return msgs, nil
}

// StopTokens are the ids that end a sample: the tokenizer's end-of-turn/end-of-text
// tokens when there is a tokenizer, else the config's eos_token_id (if set).
func StopTokens(tok *tokenizer.Tokenizer, cfg transformer.Config) []int32 {
	if tok != nil {
		return tok.StopIDs()
	}
	if cfg.EosTokenID != nil {
		return []int32{int32(*cfg.EosTokenID)}
	}
	return nil
}
