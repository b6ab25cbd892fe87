// Package jsonl reads and writes posttrain's datasets as JSON Lines in the row formats
// TRL users already have: {"prompt","chosen","rejected"} preference rows (strings or chat
// message lists, optional "edited", "margin", "rating"), {"messages"} and
// {"prompt","completion"} SFT rows, plain {"prompt"} rows, and their pre-tokenized forms
// (prompt_ids, chosen_ids, rejected_ids, edited_ids, completion_ids), used exactly as
// given. A file is parsed completely before anything is written, and imported in one
// transaction, so one bad line imports nothing.
package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/posttrain/posttrain/datastore"
)

// DefaultMaxLineBytes bounds one line (1 MiB) unless Options says otherwise.
const DefaultMaxLineBytes = 1 << 20

// maxReported is how many bad lines one error lists before it stops reading.
const maxReported = 10

// Options controls parsing.
type Options struct {
	// Kind is datastore.KindPrompts, KindPreferences or KindSFT.
	Kind string
	// MaxLineBytes bounds a line; 0 means DefaultMaxLineBytes.
	MaxLineBytes int
}

// Rows holds the parsed rows of one file; only the slice of the parsed kind is filled.
// Each row's Ord is its line number, its Source the file name, and its Split the row's
// own "split" field ("" when it has none).
type Rows struct {
	Kind        string
	Prompts     []datastore.Prompt
	Preferences []datastore.PreferencePair
	SFT         []datastore.SFTExample
}

// Len is the number of rows.
func (r *Rows) Len() int { return len(r.Prompts) + len(r.Preferences) + len(r.SFT) }

// LineError is one bad line.
type LineError struct {
	File   string
	Line   int
	Reason string
}

func (e LineError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Reason) }

// ParseError lists the bad lines of a file (the first few, when there are many).
type ParseError struct {
	Lines []LineError
	// More is true when reading stopped before the end of the file.
	More bool
}

func (e *ParseError) Error() string {
	parts := make([]string, len(e.Lines))
	for i, l := range e.Lines {
		parts[i] = l.Error()
	}
	msg := strings.Join(parts, "\n")
	if e.More {
		msg += "\n(stopped after " + strconv.Itoa(len(e.Lines)) + " bad lines)"
	}
	return msg
}

// Roles accepted in chat messages.
var roles = []string{"system", "user", "assistant", "tool", "ipython"}

// dataKeys are the keys of every row format; other keys are kept as metadata (or, for
// the keys of another kind's format, dropped: a preferences file imports as prompts).
var dataKeys = map[string]bool{
	"prompt": true, "chosen": true, "rejected": true, "edited": true, "messages": true, "completion": true,
	"prompt_ids": true, "chosen_ids": true, "rejected_ids": true, "edited_ids": true, "completion_ids": true,
	"margin": true, "rating": true, "split": true,
}

// Parse reads a whole JSONL file. Blank lines are skipped. Any bad line (broken JSON,
// wrong type, missing field, empty response, invalid UTF-8, a line over the size limit)
// makes it return a *ParseError naming file:line and the reason, and no rows.
func Parse(r io.Reader, file string, opt Options) (*Rows, error) {
	switch opt.Kind {
	case datastore.KindPrompts, datastore.KindPreferences, datastore.KindSFT:
	default:
		return nil, fmt.Errorf("%s: kind %q must be prompts, preferences or sft", file, opt.Kind)
	}
	limit := opt.MaxLineBytes
	if limit <= 0 {
		limit = DefaultMaxLineBytes
	}
	out := &Rows{Kind: opt.Kind}
	perr := &ParseError{}
	br := bufio.NewReaderSize(r, 64<<10)
	for lineNo := 1; ; lineNo++ {
		line, tooLong, err := readLine(br, limit)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s:%d: read: %w", file, lineNo, err)
		}
		if tooLong {
			perr.Lines = append(perr.Lines, LineError{file, lineNo, fmt.Sprintf("line is longer than %d bytes", limit)})
		} else if len(bytes.TrimSpace(line)) > 0 {
			if reason := parseLine(out, line, lineNo, file); reason != "" {
				perr.Lines = append(perr.Lines, LineError{file, lineNo, reason})
			}
		}
		if len(perr.Lines) >= maxReported {
			perr.More = true
			break
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if len(perr.Lines) > 0 {
		return nil, perr
	}
	return out, nil
}

// readLine returns the next line without its newline. When the line exceeds limit it
// consumes the rest of it and reports tooLong, without holding it in memory.
func readLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if !tooLong {
			if len(buf)+len(chunk) > limit+2 { // +2: "\r\n" does not count
				tooLong, buf = true, nil
			} else {
				buf = append(buf, chunk...)
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		buf = bytes.TrimSuffix(buf, []byte("\n"))
		buf = bytes.TrimSuffix(buf, []byte("\r"))
		if !tooLong && len(buf) > limit {
			tooLong, buf = true, nil
		}
		return buf, tooLong, err
	}
}

// parseLine parses one row into out and returns "" or the reason it is bad.
func parseLine(out *Rows, line []byte, lineNo int, file string) string {
	if !utf8.Valid(line) {
		return "invalid UTF-8"
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil {
		var ute *json.UnmarshalTypeError
		if errors.As(err, &ute) {
			return "want a JSON object per line, got " + ute.Value
		}
		return "broken JSON: " + err.Error()
	}
	if obj == nil {
		return "want a JSON object per line, got null"
	}
	row := rowFields{obj: obj}
	split := "" // the import's default split applies
	if raw, ok := row.get("split"); ok {
		if err := json.Unmarshal(raw, &split); err != nil || (split != datastore.SplitTrain && split != datastore.SplitEval) {
			return fmt.Sprintf("split: want \"train\" or \"eval\", got %s", raw)
		}
	}
	meta, err := metadata(obj)
	if err != nil {
		return err.Error()
	}
	switch out.Kind {
	case datastore.KindPrompts:
		p, err := parsePrompt(row)
		if err != nil {
			return err.Error()
		}
		out.Prompts = append(out.Prompts, datastore.Prompt{Ord: int64(lineNo), Prompt: p, Source: file, Split: split, Metadata: meta})
	case datastore.KindPreferences:
		pp, err := parsePreference(row)
		if err != nil {
			return err.Error()
		}
		pp.Ord, pp.Source, pp.Split, pp.Metadata = int64(lineNo), file, split, meta
		out.Preferences = append(out.Preferences, pp)
	case datastore.KindSFT:
		ex, err := parseSFT(row)
		if err != nil {
			return err.Error()
		}
		ex.Ord, ex.Source, ex.Split, ex.Metadata = int64(lineNo), file, split, meta
		out.SFT = append(out.SFT, ex)
	}
	return ""
}

// metadata keeps the keys that are not part of any row format.
func metadata(obj map[string]json.RawMessage) (map[string]any, error) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		if !dataKeys[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	meta := map[string]any{}
	for _, k := range keys {
		var v any
		if err := json.Unmarshal(obj[k], &v); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		meta[k] = v
	}
	return meta, nil
}

// rowFields reads typed fields of one row.
type rowFields struct {
	obj map[string]json.RawMessage
}

// get returns a field's raw JSON; a null field counts as absent.
func (r rowFields) get(key string) (json.RawMessage, bool) {
	raw, ok := r.obj[key]
	raw = bytes.TrimSpace(raw)
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

// segment reads key (string or message list) and key_ids (token IDs) into a Segment.
// present reports whether either was there.
func (r rowFields) segment(key string) (seg datastore.Segment, present bool, err error) {
	if raw, ok := r.get(key); ok {
		present = true
		switch raw[0] {
		case '"':
			if err := json.Unmarshal(raw, &seg.Text); err != nil {
				return seg, true, fmt.Errorf("%s: %w", key, err)
			}
		case '[':
			msgs, err := parseMessages(key, raw)
			if err != nil {
				return seg, true, err
			}
			seg.Messages = msgs
		default:
			return seg, true, fmt.Errorf("%s: want a string or a list of messages, got %s", key, jsonType(raw))
		}
	}
	if raw, ok := r.get(key + "_ids"); ok {
		present = true
		ids, err := parseIDs(key+"_ids", raw)
		if err != nil {
			return seg, true, err
		}
		seg.IDs = ids
	}
	return seg, present, nil
}

// hasIDs reports whether the row carries any pre-tokenized field.
func (r rowFields) hasIDs(keys ...string) bool {
	for _, k := range keys {
		if _, ok := r.get(k + "_ids"); ok {
			return true
		}
	}
	return false
}

func jsonType(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case 't', 'f':
		return "a bool"
	case 'n':
		return "null"
	}
	return "a number"
}

func parseMessages(key string, raw json.RawMessage) ([]datastore.Message, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	msgs := make([]datastore.Message, 0, len(items))
	for i, item := range items {
		at := fmt.Sprintf("%s[%d]", key, i)
		if len(item) == 0 || item[0] != '{' {
			return nil, fmt.Errorf("%s: want a message object {\"role\", \"content\"}, got %s", at, jsonType(item))
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(item, &m); err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		var msg datastore.Message
		for _, f := range []struct {
			name string
			dst  *string
		}{{"role", &msg.Role}, {"content", &msg.Content}} {
			v, ok := m[f.name]
			if !ok {
				return nil, fmt.Errorf("%s: missing field %s", at, f.name)
			}
			if len(v) == 0 || v[0] != '"' {
				return nil, fmt.Errorf("%s.%s: want a string, got %s", at, f.name, jsonType(v))
			}
			if err := json.Unmarshal(v, f.dst); err != nil {
				return nil, fmt.Errorf("%s.%s: %w", at, f.name, err)
			}
		}
		if !slices.Contains(roles, msg.Role) {
			return nil, fmt.Errorf("%s.role: unknown role %q (want one of %s)", at, msg.Role, strings.Join(roles, ", "))
		}
		msgs = append(msgs, msg)
	}
	return msgs, nil
}

func parseIDs(key string, raw json.RawMessage) ([]int32, error) {
	if raw[0] != '[' {
		return nil, fmt.Errorf("%s: want a list of token ids, got %s", key, jsonType(raw))
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	ids := make([]int32, len(items))
	for i, item := range items {
		v, err := strconv.ParseInt(string(bytes.TrimSpace(item)), 10, 32)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("%s[%d]: want a token id (an integer in 0..%d), got %s", key, i, math.MaxInt32, item)
		}
		ids[i] = int32(v)
	}
	return ids, nil
}

// required reads a segment that must be present and non-empty.
func (r rowFields) required(key, what string) (datastore.Segment, error) {
	seg, present, err := r.segment(key)
	if err != nil {
		return seg, err
	}
	if !present {
		return seg, fmt.Errorf("missing field %s (or %s_ids)", key, key)
	}
	if seg.IsEmpty() {
		return seg, fmt.Errorf("%s: empty %s", key, what)
	}
	return seg, nil
}

// checkTokenized makes pre-tokenized rows complete: if any key_ids is given, each of
// keys must have its _ids.
func (r rowFields) checkTokenized(keys ...string) error {
	if !r.hasIDs(keys...) {
		return nil
	}
	for _, k := range keys {
		if _, ok := r.get(k + "_ids"); !ok {
			return fmt.Errorf("missing field %s_ids: a pre-tokenized row needs %s", k, strings.Join(suffix(keys, "_ids"), ", "))
		}
	}
	return nil
}

func suffix(keys []string, s string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k + s
	}
	return out
}

func parsePrompt(r rowFields) (datastore.Segment, error) {
	seg, present, err := r.segment("prompt")
	if err != nil {
		return seg, err
	}
	if !present {
		// A conversation to continue: {"messages": [...]}.
		if raw, ok := r.get("messages"); ok {
			msgs, err := parseMessages("messages", raw)
			if err != nil {
				return seg, err
			}
			seg.Messages = msgs
			present = true
		}
	}
	if !present {
		return seg, errors.New("missing field prompt (or prompt_ids, or messages)")
	}
	if seg.IsEmpty() {
		return seg, errors.New("prompt: empty prompt")
	}
	return seg, nil
}

func parsePreference(r rowFields) (datastore.PreferencePair, error) {
	var pp datastore.PreferencePair
	keys := []string{"prompt", "chosen", "rejected"}
	if _, ok := r.get("edited"); ok {
		keys = append(keys, "edited")
	} else if _, ok := r.get("edited_ids"); ok {
		keys = append(keys, "edited")
	}
	if err := r.checkTokenized(keys...); err != nil {
		return pp, err
	}
	var err error
	if pp.Chosen, err = r.required("chosen", "response"); err != nil {
		return pp, err
	}
	if pp.Rejected, err = r.required("rejected", "response"); err != nil {
		return pp, err
	}
	prompt, present, err := r.segment("prompt")
	if err != nil {
		return pp, err
	}
	if !present {
		// TRL's implicit prompt: chosen and rejected are whole conversations sharing
		// their opening turns.
		prompt, pp.Chosen, pp.Rejected, present = splitImplicitPrompt(pp.Chosen, pp.Rejected)
		if !present {
			return pp, errors.New("missing field prompt (or prompt_ids), and chosen and rejected share no opening turns to take it from")
		}
		if pp.Chosen.IsEmpty() || pp.Rejected.IsEmpty() {
			return pp, errors.New("chosen and rejected differ only in their prompt turns: empty response")
		}
	}
	if prompt.IsEmpty() {
		return pp, errors.New("prompt: empty prompt")
	}
	pp.Prompt = prompt
	if _, ok := r.get("edited"); ok || r.hasIDs("edited") {
		ed, err := r.required("edited", "response")
		if err != nil {
			return pp, err
		}
		pp.Edited = &ed
	}
	if raw, ok := r.get("margin"); ok {
		var m float64
		if err := json.Unmarshal(raw, &m); err != nil || raw[0] == '"' {
			return pp, fmt.Errorf("margin: want a number, got %s", jsonType(raw))
		}
		pp.Margin = &m
	}
	if raw, ok := r.get("rating"); ok {
		switch raw[0] {
		case '"':
			_ = json.Unmarshal(raw, &pp.Rating) // a valid JSON string: cannot fail
		default:
			var f float64
			if err := json.Unmarshal(raw, &f); err != nil {
				return pp, fmt.Errorf("rating: want a string or a number, got %s", jsonType(raw))
			}
			pp.Rating = strconv.FormatFloat(f, 'g', -1, 64)
		}
	}
	return pp, nil
}

// splitImplicitPrompt takes the shared opening messages of two conversations as the
// prompt. ok is false when they share none or are not message lists.
func splitImplicitPrompt(chosen, rejected datastore.Segment) (prompt, c, r datastore.Segment, ok bool) {
	if len(chosen.Messages) == 0 || len(rejected.Messages) == 0 || len(chosen.IDs) > 0 {
		return prompt, chosen, rejected, false
	}
	n := 0
	for n < len(chosen.Messages) && n < len(rejected.Messages) && chosen.Messages[n] == rejected.Messages[n] {
		n++
	}
	// The prompt ends before the last shared assistant turn that starts the responses.
	for n > 0 && chosen.Messages[n-1].Role == "assistant" {
		n--
	}
	if n == 0 {
		return prompt, chosen, rejected, false
	}
	prompt.Messages = slices.Clone(chosen.Messages[:n])
	c.Messages = slices.Clone(chosen.Messages[n:])
	r.Messages = slices.Clone(rejected.Messages[n:])
	return prompt, c, r, true
}

func parseSFT(r rowFields) (datastore.SFTExample, error) {
	var ex datastore.SFTExample
	rawMsgs, hasMsgs := r.get("messages")
	_, hasPrompt := r.get("prompt")
	_, hasCompletion := r.get("completion")
	hasPC := hasPrompt || hasCompletion || r.hasIDs("prompt", "completion")
	if hasMsgs && hasPC {
		return ex, errors.New("use either messages or prompt + completion, not both")
	}
	if hasMsgs {
		msgs, err := parseMessages("messages", rawMsgs)
		if err != nil {
			return ex, err
		}
		trained := false
		for _, m := range msgs {
			if m.Role == "assistant" && m.Content != "" {
				trained = true
			}
		}
		if !trained {
			return ex, errors.New("messages: no assistant turn with content to train on")
		}
		ex.Messages = msgs
		return ex, nil
	}
	if !hasPC {
		return ex, errors.New("missing field messages (or prompt + completion, or prompt_ids + completion_ids)")
	}
	if err := r.checkTokenized("prompt", "completion"); err != nil {
		return ex, err
	}
	p, err := r.required("prompt", "prompt")
	if err != nil {
		return ex, err
	}
	c, err := r.required("completion", "response")
	if err != nil {
		return ex, err
	}
	ex.Prompt, ex.Completion = &p, &c
	return ex, nil
}
