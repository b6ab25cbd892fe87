package textio

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

// Row is one parsed input row: its original fields and the ids to score.
type Row struct {
	// Line is the 1-based line number in the input.
	Line   int
	Fields map[string]json.RawMessage
	Item   inference.ScoreItem
}

// RowOptions say how text rows become ids.
type RowOptions struct {
	// Tokenizer encodes "prompt"/"completion" and "messages" rows; nil allows only
	// pre-tokenized rows.
	Tokenizer *tokenizer.Tokenizer
	// Raw encodes "prompt"/"completion" as plain text (BOS + prompt, then the completion)
	// instead of a user turn and the assistant's answer in the chat template.
	Raw bool
}

// ParseRows reads JSONL rows from r (name is used in errors as name:line). Each row is
//
//	{"prompt_ids": [...], "completion_ids": [...]}  ids used exactly as given;
//	{"prompt": "...", "completion": "..."}          a user turn and the assistant's answer
//	                                                (content + <|eot_id|>), or plain text
//	                                                with opts.Raw;
//	{"messages": [...]}                             the last message must be the
//	                                                assistant's; it is the completion
//	                                                (content + <|eot_id|>).
//
// Blank lines are skipped.
func ParseRows(r io.Reader, name string, opts RowOptions) ([]Row, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<16), 64<<20)
	var rows []Row
	line := 0
	for sc.Scan() {
		line++
		text := bytes.TrimSpace(sc.Bytes())
		if len(text) == 0 {
			continue
		}
		row, err := parseRow(text, opts)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", name, line, err)
		}
		row.Line = line
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s:%d: %w", name, line+1, err)
	}
	return rows, nil
}

func parseRow(text []byte, opts RowOptions) (Row, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(text, &fields); err != nil {
		return Row{}, fmt.Errorf("invalid JSON object: %w", err)
	}
	row := Row{Fields: fields}
	_, hasPID := fields["prompt_ids"]
	_, hasCID := fields["completion_ids"]
	_, hasMsgs := fields["messages"]
	_, hasP := fields["prompt"]
	_, hasC := fields["completion"]
	tok := opts.Tokenizer
	needTok := func(form string) error {
		if tok == nil {
			return fmt.Errorf("a %s row needs a tokenizer, and the model directory has no tokenizer.json (use prompt_ids/completion_ids)", form)
		}
		return nil
	}
	switch {
	case hasPID || hasCID:
		p, err := idsField(fields, "prompt_ids")
		if err != nil {
			return Row{}, err
		}
		c, err := idsField(fields, "completion_ids")
		if err != nil {
			return Row{}, err
		}
		row.Item = inference.ScoreItem{Prompt: p, Completion: c}
	case hasMsgs:
		if err := needTok("messages"); err != nil {
			return Row{}, err
		}
		var msgs []tokenizer.Message
		if err := json.Unmarshal(fields["messages"], &msgs); err != nil {
			return Row{}, fmt.Errorf("field \"messages\": want a list of {\"role\", \"content\"} objects: %w", err)
		}
		item, err := chatItem(tok, msgs)
		if err != nil {
			return Row{}, fmt.Errorf("field \"messages\": %w", err)
		}
		row.Item = item
	case hasP || hasC:
		if err := needTok("prompt/completion"); err != nil {
			return Row{}, err
		}
		p, err := stringField(fields, "prompt")
		if err != nil {
			return Row{}, err
		}
		c, err := stringField(fields, "completion")
		if err != nil {
			return Row{}, err
		}
		if opts.Raw {
			var pids []int32
			if bos := tok.BOS(); bos >= 0 {
				pids = append(pids, bos)
			}
			row.Item = inference.ScoreItem{Prompt: tok.AppendEncode(pids, p), Completion: tok.Encode(c)}
			break
		}
		item, err := chatItem(tok, []tokenizer.Message{{Role: tokenizer.UserRole, Content: p}, {Role: tokenizer.AssistantRole, Content: c}})
		if err != nil {
			return Row{}, err
		}
		row.Item = item
	default:
		return Row{}, errors.New(`want "prompt_ids"/"completion_ids", "prompt"/"completion" or "messages"`)
	}
	return row, nil
}

// chatItem renders msgs; the last (assistant) turn's content and <|eot_id|> are the
// completion, everything before it (through the assistant header) the prompt.
func chatItem(tok *tokenizer.Tokenizer, msgs []tokenizer.Message) (inference.ScoreItem, error) {
	if len(msgs) == 0 || msgs[len(msgs)-1].Role != tokenizer.AssistantRole {
		return inference.ScoreItem{}, errors.New("the last message must be the assistant's (it is the completion scored)")
	}
	r, err := tok.RenderChat(msgs, tokenizer.RenderOptions{})
	if err != nil {
		return inference.ScoreItem{}, err
	}
	last := r.Turns[len(r.Turns)-1]
	return inference.ScoreItem{Prompt: r.IDs[:last.ContentStart], Completion: r.IDs[last.ContentStart:last.End]}, nil
}

func idsField(fields map[string]json.RawMessage, key string) ([]int32, error) {
	raw, ok := fields[key]
	if !ok {
		return nil, fmt.Errorf("field %q is missing", key)
	}
	var ids []int64
	if err := json.Unmarshal(raw, &ids); err != nil {
		return nil, fmt.Errorf("field %q: want a list of integer token ids", key)
	}
	out := make([]int32, len(ids))
	for i, v := range ids {
		if v < 0 || v > 1<<31-1 {
			return nil, fmt.Errorf("field %q: %s[%d] = %d is not a token id", key, key, i, v)
		}
		out[i] = int32(v)
	}
	return out, nil
}

func stringField(fields map[string]json.RawMessage, key string) (string, error) {
	raw, ok := fields[key]
	if !ok {
		return "", fmt.Errorf("field %q is missing", key)
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("field %q: want a string", key)
	}
	return s, nil
}

// ScoreOptions tune ScoreFile.
type ScoreOptions struct {
	RowOptions
	// BatchSize is the rows per forward pass (default 8).
	BatchSize int
	// Progress (may be nil) is called with rows scored so far and the total.
	Progress func(done, total int)
}

// ScoreSummary totals a scored file.
type ScoreSummary struct {
	Rows             int     `json:"rows"`
	CompletionTokens int     `json:"completion_tokens"`
	MeanLogProb      float64 `json:"mean_logprob"`       // per row
	MeanTokenLogProb float64 `json:"mean_token_logprob"` // per completion token
}

// ScoreFile scores every row of the JSONL file inPath with the causal LM m and writes
// outPath (atomically): each input row with "logprob" (the sum over completion tokens)
// and "token_logprobs" added. All rows are checked before any is scored; errors name
// inPath:line.
func ScoreFile(ctx context.Context, m *transformer.Model, inPath, outPath string, opts ScoreOptions) (ScoreSummary, error) {
	f, err := os.Open(inPath)
	if err != nil {
		return ScoreSummary{}, fmt.Errorf("eval logprobs: %w", err)
	}
	rows, err := ParseRows(f, inPath, opts.RowOptions)
	f.Close()
	if err != nil {
		return ScoreSummary{}, err
	}
	if len(rows) == 0 {
		return ScoreSummary{}, fmt.Errorf("%s: no rows", inPath)
	}
	sc, err := inference.NewScorer(m, opts.BatchSize)
	if err != nil {
		return ScoreSummary{}, err
	}
	items := make([]inference.ScoreItem, len(rows))
	for i, r := range rows {
		if err := sc.Check(r.Item); err != nil {
			return ScoreSummary{}, fmt.Errorf("%s:%d: %w", inPath, r.Line, err)
		}
		items[i] = r.Item
	}
	var progress func(int)
	if opts.Progress != nil {
		progress = func(done int) { opts.Progress(done, len(items)) }
	}
	scores, err := sc.Score(ctx, items, progress)
	if err != nil {
		return ScoreSummary{}, fmt.Errorf("eval logprobs %s: %w", inPath, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // keep special-token spellings like <|eot_id|> readable
	sum := ScoreSummary{Rows: len(rows)}
	for i, r := range rows {
		out := make(map[string]any, len(r.Fields)+2)
		for k, v := range r.Fields {
			out[k] = v
		}
		out["logprob"] = scores[i].LogProb
		out["token_logprobs"] = scores[i].TokenLogProbs
		if err := enc.Encode(out); err != nil {
			return ScoreSummary{}, fmt.Errorf("%s:%d: encode output row: %w", inPath, r.Line, err)
		}
		sum.CompletionTokens += len(scores[i].TokenLogProbs)
		sum.MeanLogProb += scores[i].LogProb
		sum.MeanTokenLogProb += scores[i].LogProb
	}
	sum.MeanLogProb /= float64(sum.Rows)
	sum.MeanTokenLogProb /= float64(sum.CompletionTokens)
	if err := writeAtomic(outPath, buf.Bytes()); err != nil {
		return ScoreSummary{}, fmt.Errorf("eval logprobs: %w", err)
	}
	return sum, nil
}

// writeAtomic writes data to path through a synced temporary file and a rename.
func writeAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
