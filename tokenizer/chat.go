package tokenizer

import (
	"errors"
	"fmt"
)

// Message is one chat turn.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// The roles RenderChat accepts.
const (
	SystemRole = "system"
	UserRole   = "user"
	// AssistantRole is the model's role; its turns are the ones trained on.
	AssistantRole = "assistant"
	IPythonRole   = "ipython"
	ToolRole      = "tool"
)

// headerGap separates a header from the content.
const headerGap = "\n\n"

func validRole(r string) bool {
	switch r {
	case SystemRole, UserRole, AssistantRole, IPythonRole, ToolRole:
		return true
	}
	return false
}

func validateMessages(msgs []Message) error {
	if len(msgs) == 0 {
		return errors.New("chat: no messages")
	}
	for i, m := range msgs {
		if !validRole(m.Role) {
			return fmt.Errorf("chat: message %d: unknown role %q (want system, user, assistant, ipython or tool)", i, m.Role)
		}
	}
	return nil
}

// RenderOptions configure RenderChat.
type RenderOptions struct {
	// AddGenerationPrompt ends the ids with an open assistant header
	// (<|start_header_id|>assistant<|end_header_id|>\n\n), ready for sampling.
	AddGenerationPrompt bool
	// OmitBOS leaves out the leading <|begin_of_text|>.
	OmitBOS bool
	// LastAssistantOnly marks only the last assistant turn in AssistantMask (train on the
	// final answer only); by default every assistant turn is marked.
	LastAssistantOnly bool
}

// Turn locates one rendered message in Rendered.IDs; ranges are half-open token indices.
type Turn struct {
	Message int    // index into the messages
	Role    string // the message's role
	// Start is the turn's <|start_header_id|>; ContentStart the first token after the
	// header and its blank line; End is one past the closing <|eot_id|>.
	Start, ContentStart, End int
}

// Rendered is a chat in token ids with its masks; all slices have the same length.
type Rendered struct {
	IDs []int32
	// AssistantMask is true on the tokens of assistant answers, including their closing
	// <|eot_id|> (the model must learn to stop), and false on the assistant header, which
	// belongs to the prompt.
	AssistantMask []bool
	// FormattingMask is true on the template's special tokens: <|start_header_id|>,
	// <|end_header_id|> and <|eot_id|>.
	FormattingMask []bool
	// Turns has one entry per message, in order.
	Turns []Turn
}

// RenderChat renders messages with the Llama 3 chat template:
//
//	<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{system}<|eot_id|>
//	<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>
//	<|start_header_id|>assistant<|end_header_id|>\n\n{answer}<|eot_id|>
//
// Contents are encoded as plain text (Encode), so a special token written in a message is
// never injected. The blank line after each header is encoded apart from the content so
// that a prompt's ids are always a prefix of the ids of the prompt plus its answer. The
// tokenizer must have the Llama 3 special tokens.
func (t *Tokenizer) RenderChat(msgs []Message, opts RenderOptions) (Rendered, error) {
	if err := validateMessages(msgs); err != nil {
		return Rendered{}, err
	}
	ids := map[string]int32{}
	for _, name := range []string{StartHeaderID, EndHeaderID, EOTID} {
		id, ok := t.SpecialID(name)
		if !ok {
			return Rendered{}, fmt.Errorf("chat: tokenizer has no %s token", name)
		}
		ids[name] = id
	}
	var r Rendered
	add := func(id int32, assistant, formatting bool) {
		r.IDs = append(r.IDs, id)
		r.AssistantMask = append(r.AssistantMask, assistant)
		r.FormattingMask = append(r.FormattingMask, formatting)
	}
	addText := func(text string, assistant bool) {
		n := len(r.IDs)
		r.IDs = t.AppendEncode(r.IDs, text)
		for range len(r.IDs) - n {
			r.AssistantMask = append(r.AssistantMask, assistant)
			r.FormattingMask = append(r.FormattingMask, false)
		}
	}
	header := func(role string) {
		add(ids[StartHeaderID], false, true)
		addText(role, false)
		add(ids[EndHeaderID], false, true)
		addText(headerGap, false)
	}
	if !opts.OmitBOS {
		bos, ok := t.SpecialID(BeginOfText)
		if !ok {
			return Rendered{}, fmt.Errorf("chat: tokenizer has no %s token (set OmitBOS to render without it)", BeginOfText)
		}
		add(bos, false, false)
	}
	lastAssistant := -1
	for i, m := range msgs {
		if m.Role == AssistantRole {
			lastAssistant = i
		}
	}
	for i, m := range msgs {
		train := m.Role == AssistantRole && (!opts.LastAssistantOnly || i == lastAssistant)
		turn := Turn{Message: i, Role: m.Role, Start: len(r.IDs)}
		header(m.Role)
		turn.ContentStart = len(r.IDs)
		addText(m.Content, train)
		add(ids[EOTID], train, true)
		turn.End = len(r.IDs)
		r.Turns = append(r.Turns, turn)
	}
	if opts.AddGenerationPrompt {
		header(AssistantRole)
	}
	return r, nil
}

// RenderPrompt renders messages followed by an open assistant header, with BOS: the ids to
// sample an answer from.
func (t *Tokenizer) RenderPrompt(msgs []Message) ([]int32, error) {
	r, err := t.RenderChat(msgs, RenderOptions{AddGenerationPrompt: true})
	if err != nil {
		return nil, err
	}
	return r.IDs, nil
}
