// Package jsonl reads and writes posttrain's datasets as JSON Lines in the row formats
// TRL users already have: {"prompt","chosen","rejected"} preference rows (strings or chat
// message lists, optional "edited", "margin", "rating"), {"messages"} and
// {"prompt","completion"} SFT rows, plain {"prompt"} rows, and their pre-tokenized forms
// (prompt_ids, chosen_ids, rejected_ids, edited_ids, completion_ids), used exactly as
// given. Rows are parsed by the datasets package, so the datastore accepts exactly what
// the stage commands read from files. A file is parsed completely before anything is
// written, and imported in one transaction, so one bad line imports nothing. The
// converters (FromPreference, ToPreference, ...) map between stored rows and the
// datasets rows the stages encode.
package jsonl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/datastore"
)

// DefaultMaxLineBytes bounds one line unless Options says otherwise: the datasets
// package's limit, so a file the stages read is never too long to import.
const DefaultMaxLineBytes = datasets.DefaultMaxLineBytes

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

// isDataKey reports whether k belongs to a row format; other keys are kept as metadata
// (the keys of another kind's format are dropped: a preferences file imports as prompts).
func isDataKey(k string) bool {
	switch k {
	case "prompt", "chosen", "rejected", "edited", "messages", "completion",
		"prompt_ids", "chosen_ids", "rejected_ids", "edited_ids", "completion_ids",
		"margin", "rating", "split":
		return true
	}
	return false
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

// parseLine parses one row into out and returns "" or the reason it is bad. The row
// itself is parsed by the datasets package, so the datastore accepts exactly the rows
// the stage commands read from files; this adds the "split" field and keeps extra keys
// as metadata.
func parseLine(out *Rows, line []byte, lineNo int, file string) string {
	if !utf8.Valid(line) {
		return "invalid UTF-8"
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(line, &obj); err != nil || obj == nil {
		// datasets gives the precise message for a line that is not a JSON object.
		_, perr := datasets.ParsePrompt(line)
		if perr != nil {
			return perr.Error()
		}
		return "not a JSON object"
	}
	split := "" // the import's default split applies
	if raw, ok := obj["split"]; ok {
		if err := json.Unmarshal(raw, &split); err != nil || (split != datastore.SplitTrain && split != datastore.SplitEval) {
			return fmt.Sprintf("field split: must be \"train\" or \"eval\", got %s", bytes.TrimSpace(raw))
		}
	}
	meta, err := metadata(obj)
	if err != nil {
		return err.Error()
	}
	switch out.Kind {
	case datastore.KindPrompts:
		row, err := datasets.ParsePrompt(line)
		if err != nil {
			return err.Error()
		}
		p := FromPrompt(row)
		p.Ord, p.Source, p.Split, p.Metadata = int64(lineNo), file, split, meta
		out.Prompts = append(out.Prompts, p)
	case datastore.KindPreferences:
		row, err := datasets.ParsePreference(line)
		if err != nil {
			return err.Error()
		}
		pp := FromPreference(row)
		pp.Ord, pp.Source, pp.Split, pp.Metadata = int64(lineNo), file, split, meta
		out.Preferences = append(out.Preferences, pp)
	case datastore.KindSFT:
		row, err := datasets.ParseSFT(line)
		if err != nil {
			return err.Error()
		}
		ex := FromSFT(row)
		ex.Ord, ex.Source, ex.Split, ex.Metadata = int64(lineNo), file, split, meta
		out.SFT = append(out.SFT, ex)
	}
	return ""
}

// metadata keeps the keys that are not part of any row format.
func metadata(obj map[string]json.RawMessage) (map[string]any, error) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		if !isDataKey(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	meta := map[string]any{}
	for _, k := range keys {
		var v any
		if err := json.Unmarshal(obj[k], &v); err != nil {
			return nil, fmt.Errorf("field %s: %w", k, err)
		}
		meta[k] = v
	}
	return meta, nil
}
