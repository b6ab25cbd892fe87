package datasets

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/posttrain/posttrain/tokenizer"
)

// DefaultMaxLineBytes bounds one JSONL line; a longer line is an error, not a silent cut.
const DefaultMaxLineBytes = 8 << 20

// FieldError is a problem with one row: where it is and why it is wrong.
type FieldError struct {
	File   string
	Line   int
	Field  string
	Reason string
}

// Error reads like "prefs.jsonl:12: field chosen: empty response".
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.File != "" || e.Line > 0 {
		name := e.File
		if name == "" {
			name = "input"
		}
		fmt.Fprintf(&b, "%s:%d: ", name, e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %s: ", e.Field)
	}
	b.WriteString(e.Reason)
	return b.String()
}

func quote(s string) string {
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return strconv.Quote(s)
}

// ReadOptions tune parsing.
type ReadOptions struct {
	// MaxLineBytes bounds a line (0 = DefaultMaxLineBytes).
	MaxLineBytes int
}

// lines calls fn for every non-blank line with its 1-based number. It rejects invalid
// UTF-8 up front, because encoding/json would otherwise replace it silently.
func lines(r io.Reader, name string, opts ReadOptions, fn func(line int, raw []byte) error) error {
	limit := opts.MaxLineBytes
	if limit <= 0 {
		limit = DefaultMaxLineBytes
	}
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		raw, err := readLine(br, limit)
		if errors.Is(err, errLineTooLong) {
			return &FieldError{File: name, Line: n, Reason: fmt.Sprintf("line is longer than %d bytes", limit)}
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if len(bytes.TrimSpace(raw)) > 0 {
			if !utf8.Valid(raw) {
				return &FieldError{File: name, Line: n, Reason: fmt.Sprintf("invalid UTF-8 at byte %d", firstInvalidUTF8(raw))}
			}
			if ferr := fn(n, raw); ferr != nil {
				var fe *FieldError
				if errors.As(ferr, &fe) && fe.Line == 0 {
					fe.File, fe.Line = name, n
				}
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
	}
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line without its newline, failing once it grows past limit.
func readLine(br *bufio.Reader, limit int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line)+len(chunk) > limit+1 {
			// Drain the rest of the line so the error is about this line only.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			return nil, errLineTooLong
		}
		line = append(line, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		return bytes.TrimRight(line, "\r\n"), err
	}
}

func firstInvalidUTF8(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i
		}
		i += size
	}
	return len(b)
}

// object decodes a line into its top-level fields.
func object(raw []byte) (map[string]json.RawMessage, error) {
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil {
		return nil, &FieldError{Reason: "not a JSON object: " + err.Error()}
	}
	if dec.More() {
		return nil, &FieldError{Reason: "more than one JSON value on the line"}
	}
	if obj == nil {
		return nil, &FieldError{Reason: "not a JSON object: null"}
	}
	return obj, nil
}

func jsonKind(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 {
		return "nothing"
	}
	switch t[0] {
	case '"':
		return "a string"
	case '[':
		return "a list"
	case '{':
		return "an object"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// parseText reads field key (a string or a message list) or key_ids (token ids). present
// is false when neither is there.
func parseText(obj map[string]json.RawMessage, key string) (Text, bool, error) {
	raw, hasText := obj[key]
	rawIDs, hasIDs := obj[key+"_ids"]
	switch {
	case hasText && hasIDs:
		return Text{}, false, &FieldError{Field: key, Reason: fmt.Sprintf("give %s or %s_ids, not both", key, key)}
	case hasIDs:
		ids, err := parseIDs(rawIDs, key+"_ids")
		return Text{IDs: ids, Form: FormIDs}, true, err
	case !hasText:
		return Text{}, false, nil
	}
	t := bytes.TrimSpace(raw)
	switch {
	case len(t) > 0 && t[0] == '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return Text{}, false, &FieldError{Field: key, Reason: err.Error()}
		}
		return Text{String: s, Form: FormString}, true, nil
	case len(t) > 0 && t[0] == '[':
		msgs, err := parseMessages(t, key)
		return Text{Messages: msgs, Form: FormMessages}, true, err
	}
	return Text{}, false, &FieldError{Field: key, Reason: "must be a string or a list of messages, got " + jsonKind(raw)}
}

func parseIDs(raw json.RawMessage, field string) ([]int32, error) {
	var nums []json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&nums); err != nil {
		return nil, &FieldError{Field: field, Reason: "must be a list of token ids, got " + jsonKind(raw)}
	}
	ids := make([]int32, len(nums))
	for i, n := range nums {
		v, err := strconv.ParseInt(string(n), 10, 64)
		if err != nil || v < 0 || v > math.MaxInt32 {
			return nil, &FieldError{Field: fmt.Sprintf("%s[%d]", field, i), Reason: fmt.Sprintf("token id must be an integer in [0, %d], got %s", math.MaxInt32, n)}
		}
		ids[i] = int32(v)
	}
	return ids, nil
}

func parseMessages(raw json.RawMessage, field string) ([]tokenizer.Message, error) {
	var items []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, &FieldError{Field: field, Reason: "must be a list of {\"role\", \"content\"} messages: " + err.Error()}
	}
	if len(items) == 0 {
		return nil, &FieldError{Field: field, Reason: "empty message list"}
	}
	msgs := make([]tokenizer.Message, len(items))
	for i, it := range items {
		where := fmt.Sprintf("%s[%d]", field, i)
		if it == nil {
			return nil, &FieldError{Field: where, Reason: "must be an object with role and content"}
		}
		for _, k := range []string{"role", "content"} {
			v, ok := it[k]
			if !ok {
				return nil, &FieldError{Field: where + "." + k, Reason: "missing"}
			}
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, &FieldError{Field: where + "." + k, Reason: "must be a string, got " + jsonKind(v)}
			}
			if k == "role" {
				msgs[i].Role = s
			} else {
				msgs[i].Content = s
			}
		}
		switch msgs[i].Role {
		case tokenizer.SystemRole, tokenizer.UserRole, tokenizer.AssistantRole, tokenizer.IPythonRole, tokenizer.ToolRole:
		default:
			return nil, &FieldError{Field: where + ".role", Reason: "unknown role " + quote(msgs[i].Role) + " (system, user, assistant, ipython or tool)"}
		}
	}
	return msgs, nil
}

func optionalString(obj map[string]json.RawMessage, key string) (string, error) {
	raw, ok := obj[key]
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", &FieldError{Field: key, Reason: "must be a string, got " + jsonKind(raw)}
	}
	return s, nil
}

// response normalises a response to a plain string when it came as a one-message
// assistant list (TRL's conversational form with an explicit prompt).
func response(t Text, field string) (Text, error) {
	switch t.Form {
	case FormMessages:
		if len(t.Messages) != 1 || t.Messages[0].Role != tokenizer.AssistantRole {
			return Text{}, &FieldError{Field: field, Reason: "a response given as messages must be exactly one assistant message"}
		}
		t = Text{String: t.Messages[0].Content, Form: FormString}
	case FormNone:
		return t, nil
	}
	if (t.Form == FormString && strings.TrimSpace(t.String) == "") || (t.Form == FormIDs && len(t.IDs) == 0) {
		return Text{}, &FieldError{Field: field, Reason: "empty response"}
	}
	return t, nil
}

// splitImplicitPrompt handles TRL's implicit-prompt conversational preferences, where
// chosen and rejected are whole conversations sharing every message but the last.
func splitImplicitPrompt(chosen, rejected Text) (prompt, c, r Text, err error) {
	cm, rm := chosen.Messages, rejected.Messages
	if len(cm) < 2 || len(rm) != len(cm) {
		return Text{}, Text{}, Text{}, &FieldError{Field: "prompt", Reason: "missing (and chosen/rejected are not two conversations that share all but their last message)"}
	}
	for i := 0; i < len(cm)-1; i++ {
		if cm[i] != rm[i] {
			return Text{}, Text{}, Text{}, &FieldError{Field: fmt.Sprintf("rejected[%d]", i), Reason: "differs from chosen before the final response, so the prompt is ambiguous"}
		}
	}
	prompt = Text{Messages: cm[:len(cm)-1], Form: FormMessages}
	return prompt, Text{Messages: cm[len(cm)-1:], Form: FormMessages}, Text{Messages: rm[len(rm)-1:], Form: FormMessages}, nil
}

func requirePrompt(t Text) error {
	switch {
	case t.Form == FormString && strings.TrimSpace(t.String) == "",
		t.Form == FormIDs && len(t.IDs) == 0:
		return &FieldError{Field: "prompt", Reason: "empty prompt"}
	case t.Form == FormMessages:
		for _, m := range t.Messages {
			if strings.TrimSpace(m.Content) != "" {
				return nil
			}
		}
		return &FieldError{Field: "prompt", Reason: "empty prompt (every message's content is empty)"}
	}
	return nil
}

// checkForms rejects rows that mix token ids with text: a pre-tokenized row is ids only.
func checkForms(fields map[string]Text) error {
	ids, text := "", ""
	for k, t := range fields {
		switch t.Form {
		case FormIDs:
			ids = k
		case FormString, FormMessages:
			text = k
		}
	}
	if ids != "" && text != "" {
		return &FieldError{Field: ids + "_ids", Reason: fmt.Sprintf("a pre-tokenized row must give every field as ids, but %s is text", text)}
	}
	return nil
}

// ParsePreference parses one JSONL line as a preference row.
func ParsePreference(raw []byte) (Preference, error) {
	obj, err := object(raw)
	if err != nil {
		return Preference{}, err
	}
	var p Preference
	if p.ID, err = optionalString(obj, "id"); err != nil {
		return p, err
	}
	prompt, hasPrompt, err := parseText(obj, "prompt")
	if err != nil {
		return p, err
	}
	chosen, hasChosen, err := parseText(obj, "chosen")
	if err != nil {
		return p, err
	}
	rejected, hasRejected, err := parseText(obj, "rejected")
	if err != nil {
		return p, err
	}
	edited, _, err := parseText(obj, "edited")
	if err != nil {
		return p, err
	}
	if !hasChosen {
		return p, &FieldError{Field: "chosen", Reason: "missing"}
	}
	if !hasRejected {
		return p, &FieldError{Field: "rejected", Reason: "missing"}
	}
	if !hasPrompt {
		if chosen.Form != FormMessages || rejected.Form != FormMessages {
			return p, &FieldError{Field: "prompt", Reason: "missing"}
		}
		if prompt, chosen, rejected, err = splitImplicitPrompt(chosen, rejected); err != nil {
			return p, err
		}
	}
	if err := requirePrompt(prompt); err != nil {
		return p, err
	}
	if p.Chosen, err = response(chosen, "chosen"); err != nil {
		return p, err
	}
	if p.Rejected, err = response(rejected, "rejected"); err != nil {
		return p, err
	}
	if p.Edited, err = response(edited, "edited"); err != nil {
		return p, err
	}
	p.Prompt = prompt
	if err := checkForms(map[string]Text{"prompt": p.Prompt, "chosen": p.Chosen, "rejected": p.Rejected, "edited": p.Edited}); err != nil {
		return p, err
	}
	if raw, ok := obj["margin"]; ok {
		var m float64
		if err := json.Unmarshal(raw, &m); err != nil || math.IsNaN(m) || math.IsInf(m, 0) {
			return p, &FieldError{Field: "margin", Reason: "must be a finite number, got " + jsonKind(raw)}
		}
		p.Margin = &m
	}
	if p.Rating, err = optionalString(obj, "rating"); err != nil {
		return p, err
	}
	return p, nil
}

// ParsePrompt parses one JSONL line as a prompt row (`prompt`, `prompt_ids`, or a
// `messages` list, whose trailing assistant message, if any, is dropped), with an
// optional string `answer`: the reference answer samples can be verified against.
func ParsePrompt(raw []byte) (Prompt, error) {
	obj, err := object(raw)
	if err != nil {
		return Prompt{}, err
	}
	var p Prompt
	if p.ID, err = optionalString(obj, "id"); err != nil {
		return p, err
	}
	if p.Answer, err = optionalString(obj, "answer"); err != nil {
		return p, err
	}
	prompt, ok, err := parseText(obj, "prompt")
	if err != nil {
		return p, err
	}
	if !ok {
		msgs, hasMsgs := obj["messages"]
		if !hasMsgs {
			return p, &FieldError{Field: "prompt", Reason: "missing (give prompt, prompt_ids or messages)"}
		}
		m, err := parseMessages(msgs, "messages")
		if err != nil {
			return p, err
		}
		if m[len(m)-1].Role == tokenizer.AssistantRole {
			m = m[:len(m)-1]
		}
		if len(m) == 0 {
			return p, &FieldError{Field: "messages", Reason: "no prompt turns before the assistant's answer"}
		}
		prompt = Text{Messages: m, Form: FormMessages}
	}
	if err := requirePrompt(prompt); err != nil {
		return p, err
	}
	p.Prompt = prompt
	return p, nil
}

// ParseSFT parses one JSONL line as an SFT example: `{"messages": [...]}` with at least
// one assistant turn, or `{"prompt", "completion"}` (strings, messages or ids).
func ParseSFT(raw []byte) (SFTExample, error) {
	obj, err := object(raw)
	if err != nil {
		return SFTExample{}, err
	}
	var ex SFTExample
	if ex.ID, err = optionalString(obj, "id"); err != nil {
		return ex, err
	}
	if msgs, ok := obj["messages"]; ok {
		if _, also := obj["completion"]; also {
			return ex, &FieldError{Field: "completion", Reason: "give messages or prompt/completion, not both"}
		}
		if ex.Messages, err = parseMessages(msgs, "messages"); err != nil {
			return ex, err
		}
		hasAnswer := false
		for i, m := range ex.Messages {
			if m.Role == tokenizer.AssistantRole {
				hasAnswer = true
				if strings.TrimSpace(m.Content) == "" {
					return ex, &FieldError{Field: fmt.Sprintf("messages[%d].content", i), Reason: "empty assistant response"}
				}
			}
		}
		if !hasAnswer {
			return ex, &FieldError{Field: "messages", Reason: "no assistant turn to train on"}
		}
		return ex, nil
	}
	prompt, hasPrompt, err := parseText(obj, "prompt")
	if err != nil {
		return ex, err
	}
	completion, hasCompletion, err := parseText(obj, "completion")
	if err != nil {
		return ex, err
	}
	if !hasPrompt {
		return ex, &FieldError{Field: "prompt", Reason: "missing (give messages, or prompt and completion)"}
	}
	if !hasCompletion {
		return ex, &FieldError{Field: "completion", Reason: "missing"}
	}
	if err := requirePrompt(prompt); err != nil {
		return ex, err
	}
	if ex.Completion, err = response(completion, "completion"); err != nil {
		return ex, err
	}
	ex.Prompt = prompt
	return ex, checkForms(map[string]Text{"prompt": ex.Prompt, "completion": ex.Completion})
}

// Read parses every line of r with parse; name is used in errors. The first bad line
// stops the read and nothing is returned.
func Read[T any](r io.Reader, name string, opts ReadOptions, parse func([]byte) (T, error), setLine func(*T, int)) ([]T, error) {
	var rows []T
	err := lines(r, name, opts, func(line int, raw []byte) error {
		row, err := parse(raw)
		if err != nil {
			return err
		}
		setLine(&row, line)
		rows = append(rows, row)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// ReadPreferences parses a preferences JSONL stream.
func ReadPreferences(r io.Reader, name string, opts ReadOptions) ([]Preference, error) {
	return Read(r, name, opts, ParsePreference, func(p *Preference, n int) { p.Line = n })
}

// ReadPrompts parses a prompts JSONL stream.
func ReadPrompts(r io.Reader, name string, opts ReadOptions) ([]Prompt, error) {
	return Read(r, name, opts, ParsePrompt, func(p *Prompt, n int) { p.Line = n })
}

// ReadSFT parses an SFT JSONL stream.
func ReadSFT(r io.Reader, name string, opts ReadOptions) ([]SFTExample, error) {
	return Read(r, name, opts, ParseSFT, func(e *SFTExample, n int) { e.Line = n })
}

// readFile opens path and parses it with read.
func readFile[T any](path string, opts ReadOptions, read func(io.Reader, string, ReadOptions) ([]T, error)) ([]T, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open dataset: %w", err)
	}
	defer f.Close()
	return read(f, path, opts)
}

// ReadPreferencesFile parses a preferences JSONL file.
func ReadPreferencesFile(path string, opts ReadOptions) ([]Preference, error) {
	return readFile(path, opts, ReadPreferences)
}

// ReadPromptsFile parses a prompts JSONL file.
func ReadPromptsFile(path string, opts ReadOptions) ([]Prompt, error) {
	return readFile(path, opts, ReadPrompts)
}

// ReadSFTFile parses an SFT JSONL file.
func ReadSFTFile(path string, opts ReadOptions) ([]SFTExample, error) {
	return readFile(path, opts, ReadSFT)
}
