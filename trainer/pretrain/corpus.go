// Package pretrain trains a causal language model on a text corpus to make base
// checkpoints: it tokenizes text files and JSONL "text" fields with the model's tokenizer,
// packs the documents into rows of T tokens, and runs the trainer with the fused
// negative-log-likelihood kernel, checkpointing weights and trainer state together so an
// interrupted run resumes bit-identically.
package pretrain

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/posttrain/posttrain/tokenizer"
)

// maxLine bounds one JSONL line (a document); longer lines are reported, not truncated.
const maxLine = 64 << 20

// Corpus is a tokenized text corpus: every document as <|begin_of_text|> text
// <|end_of_text|> (when the vocabulary has those tokens), concatenated in file order.
type Corpus struct {
	Tokens []int32
	Docs   int
	Files  int
	// BOS is the begin-of-text id that starts each document, or -1.
	BOS int32
	// SHA256 fingerprints the token stream, so a resume can check the data is unchanged.
	SHA256 string
}

// LoadCorpus reads and tokenizes files: a .jsonl file holds one JSON object per line with
// a string "text" field (blank lines are skipped); any other file is one document of
// UTF-8 text. Errors name the file and line.
func LoadCorpus(ctx context.Context, files []string, tok *tokenizer.Tokenizer) (*Corpus, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("corpus: no data files given")
	}
	c := &Corpus{BOS: tok.BOS(), Files: len(files)}
	eos := tok.EOS()
	add := func(text string) {
		if c.BOS >= 0 {
			c.Tokens = append(c.Tokens, c.BOS)
		}
		c.Tokens = tok.AppendEncode(c.Tokens, text)
		if eos >= 0 {
			c.Tokens = append(c.Tokens, eos)
		}
		c.Docs++
	}
	for _, path := range files {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if strings.EqualFold(filepath.Ext(path), ".jsonl") {
			if err := readJSONL(ctx, path, add); err != nil {
				return nil, err
			}
			continue
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("corpus: %w", err)
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			return nil, fmt.Errorf("corpus: %s is empty", path)
		}
		add(string(raw))
	}
	h := sha256.New()
	var b [4]byte
	for _, t := range c.Tokens {
		binary.LittleEndian.PutUint32(b[:], uint32(t))
		h.Write(b[:])
	}
	c.SHA256 = hex.EncodeToString(h.Sum(nil))
	return c, nil
}

func readJSONL(ctx context.Context, path string, add func(string)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), maxLine)
	line, docs := 0, 0
	for sc.Scan() {
		line++
		if line%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		var row struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(raw, &row); err != nil {
			return fmt.Errorf("corpus: %s:%d: %w", path, line, err)
		}
		if row.Text == nil {
			return fmt.Errorf("corpus: %s:%d: no string field \"text\"", path, line)
		}
		add(*row.Text)
		docs++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("corpus: %s: after line %d: %w", path, line, err)
	}
	if docs == 0 {
		return fmt.Errorf("corpus: %s has no documents", path)
	}
	return nil
}

// Rows is how many training rows of t input tokens the corpus packs into: row r reads
// tokens [r*t, r*t+t] (t inputs and, shifted by one, t targets).
func (c *Corpus) Rows(t int) int {
	if t < 1 || len(c.Tokens) < t+1 {
		return 0
	}
	return (len(c.Tokens) - 1) / t
}

// FillRow writes row r's inputs, targets, rotary positions and document segments into
// the given slices of length t. Positions restart and the segment id advances at every
// <|begin_of_text|>, so packed documents never attend to each other; predicting the next
// document's <|begin_of_text|> is not scored (target -1).
func (c *Corpus) FillRow(r, t int, tokens, targets, positions, segments []int32) {
	base := r * t
	var pos, seg int32
	for i := 0; i < t; i++ {
		tk := c.Tokens[base+i]
		if i > 0 && tk == c.BOS {
			pos, seg = 0, seg+1
		}
		tokens[i], positions[i], segments[i] = tk, pos, seg
		next := c.Tokens[base+i+1]
		if next == c.BOS && c.BOS >= 0 {
			next = -1
		}
		targets[i] = next
		pos++
	}
}
