package tokenizer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// textFields are the JSONL keys AddFile takes text from: a string is added as text, a
// list of messages as a chat (TRL's conversational rows put messages under prompt,
// completion, chosen and rejected too).
var textFields = []string{"text", "messages", "prompt", "completion", "chosen", "rejected"}

// AddFile adds a training file: a .jsonl file is read row by row (see AddJSONL), any
// other file as plain text. onRead, when set, is called with the number of bytes read as
// reading progresses, for progress bars.
func (tr *Trainer) AddFile(ctx context.Context, path string, onRead func(n int64)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read corpus: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	if onRead != nil {
		r = &countingReader{r: f, onRead: onRead}
	}
	if strings.HasSuffix(strings.ToLower(path), ".jsonl") {
		return tr.AddJSONL(ctx, r, path)
	}
	if _, err := tr.AddReader(ctx, r); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	return nil
}

type countingReader struct {
	r      io.Reader
	onRead func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.onRead(int64(n))
	}
	return n, err
}

// AddJSONL adds the text of JSON Lines rows: each row's "text", "messages", "prompt",
// "completion", "chosen" and "rejected" fields, as strings or lists of {role, content}
// messages. Blank lines are skipped. A row that is not a JSON object, has none of these
// fields, or has a bad message fails with name:line.
func (tr *Trainer) AddJSONL(ctx context.Context, r io.Reader, name string) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for line := 1; ; line++ {
		if line%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		raw, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if row := bytes.TrimSpace(raw); len(row) > 0 {
			if rerr := tr.addRow(row); rerr != nil {
				return fmt.Errorf("%s:%d: %w", name, line, rerr)
			}
		}
		if err != nil {
			return nil
		}
	}
}

func (tr *Trainer) addRow(row []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(row, &fields); err != nil {
		return fmt.Errorf("not a JSON object: %w", err)
	}
	found := false
	for _, key := range textFields {
		v, ok := fields[key]
		if !ok || isNull(v) {
			continue
		}
		found = true
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			tr.Add(s)
			continue
		}
		var msgs []Message
		if err := json.Unmarshal(v, &msgs); err != nil {
			return fmt.Errorf("field %q: want a string or a list of {role, content} messages", key)
		}
		if err := tr.AddMessages(msgs); err != nil {
			return fmt.Errorf("field %q: %w", key, err)
		}
	}
	if !found {
		return fmt.Errorf("no text field (want one of %s)", strings.Join(textFields, ", "))
	}
	return nil
}

// ParseIDs parses token ids written as "1,2,3", "1 2 3" or "[1, 2, 3]".
func ParseIDs(s string) ([]int32, error) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	fields := strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' })
	ids := make([]int32, 0, len(fields))
	for i, f := range fields {
		v, err := strconv.ParseInt(f, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("ids[%d]: %q is not a token id", i, f)
		}
		ids = append(ids, int32(v))
	}
	return ids, nil
}
