package dpo

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/transformer"
)

// EditedMode names how a ranked row with an edited response becomes DPO pairs.
type EditedMode string

// The edited-response modes; see the package comment.
const (
	EditedOverRejected EditedMode = "edited-rejected"
	EditedIgnore       EditedMode = "chosen-rejected"
	EditedAllPairs     EditedMode = "all-pairs"
)

// EditedModes lists the modes, default first.
func EditedModes() []EditedMode {
	return []EditedMode{EditedOverRejected, EditedIgnore, EditedAllPairs}
}

// ParseEditedMode accepts one of EditedModes; empty means the default.
func ParseEditedMode(s string) (EditedMode, error) {
	if s == "" {
		return EditedOverRejected, nil
	}
	for _, m := range EditedModes() {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown edited-response mode %q (want %s, %s or %s)", s, EditedOverRejected, EditedIgnore, EditedAllPairs)
}

// Pair is one DPO comparison in token ids: Chosen is preferred over Rejected. The
// formatting masks mark response tokens left out of the log-ratios.
type Pair struct {
	Prompt                 []int32
	Chosen, Rejected       []int32
	ChosenFmt, RejectedFmt []bool
	Line                   int
}

// Name is the pair's row for errors: its JSONL line when known.
func (p Pair) name(i int) string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d", p.Line)
	}
	return fmt.Sprintf("pair %d", i+1)
}

// Pairs turns encoded preference rows into DPO pairs per mode (empty: the default).
func Pairs(rows []datasets.EncodedPreference, mode EditedMode) ([]Pair, error) {
	mode, err := ParseEditedMode(string(mode))
	if err != nil {
		return nil, err
	}
	out := make([]Pair, 0, len(rows))
	for i, r := range rows {
		if len(r.Responses) < 2 || len(r.Formatting) != len(r.Responses) {
			return nil, fmt.Errorf("dpo: %s: a preference row needs a chosen and a rejected response (got %d responses)", rowName(r.Line, i), len(r.Responses))
		}
		mk := func(a, b int) Pair {
			return Pair{Prompt: r.Prompt, Chosen: r.Responses[a], ChosenFmt: r.Formatting[a],
				Rejected: r.Responses[b], RejectedFmt: r.Formatting[b], Line: r.Line}
		}
		n := len(r.Responses)
		switch {
		case !r.HasEdited || mode == EditedIgnore:
			out = append(out, mk(n-2, n-1))
		case mode == EditedOverRejected:
			out = append(out, mk(0, n-1))
		default: // all ordered pairs of the ranking, best first
			for a := 0; a < n; a++ {
				for b := a + 1; b < n; b++ {
					out = append(out, mk(a, b))
				}
			}
		}
	}
	return out, nil
}

func rowName(line, i int) string {
	if line > 0 {
		return fmt.Sprintf("line %d", line)
	}
	return fmt.Sprintf("row %d", i+1)
}

// CheckPairs rejects pairs the model cannot score, naming the row: an empty prompt (the
// first response token needs a prefix), an empty response, a mask of the wrong length,
// ids outside the vocabulary, or prompt + response longer than the context window.
func CheckPairs(pairs []Pair, cfg transformer.Config) error {
	for i, p := range pairs {
		name := p.name(i)
		if len(p.Prompt) == 0 {
			return fmt.Errorf("dpo: %s: the prompt is empty (responses are scored given a prompt of at least one token)", name)
		}
		for _, s := range []struct {
			field string
			ids   []int32
			fmt   []bool
		}{{"chosen", p.Chosen, p.ChosenFmt}, {"rejected", p.Rejected, p.RejectedFmt}} {
			switch {
			case len(s.ids) == 0:
				return fmt.Errorf("dpo: %s: field %s: the response is empty", name, s.field)
			case len(s.fmt) != len(s.ids):
				return fmt.Errorf("dpo: %s: field %s: formatting mask has %d entries for %d tokens", name, s.field, len(s.fmt), len(s.ids))
			case len(p.Prompt)+len(s.ids) > cfg.MaxPositionEmbeddings:
				return fmt.Errorf("dpo: %s: field %s: prompt + response is %d tokens, longer than the context window of %d", name, s.field, len(p.Prompt)+len(s.ids), cfg.MaxPositionEmbeddings)
			}
			for _, part := range [][]int32{p.Prompt, s.ids} {
				for _, id := range part {
					if id < 0 || int(id) >= cfg.VocabSize {
						return fmt.Errorf("dpo: %s: field %s: token id %d is outside the vocabulary [0,%d)", name, s.field, id, cfg.VocabSize)
					}
				}
			}
		}
	}
	return nil
}

// hashPairs feeds the pairs' tokens and masks into h.
func hashPairs(h hash.Hash, pairs []Pair) {
	var b [4]byte
	ids := func(x []int32) {
		binary.LittleEndian.PutUint32(b[:], uint32(len(x)))
		h.Write(b[:])
		for _, v := range x {
			binary.LittleEndian.PutUint32(b[:], uint32(v))
			h.Write(b[:])
		}
	}
	mask := func(x []bool) {
		for _, v := range x {
			if v {
				h.Write([]byte{1})
			} else {
				h.Write([]byte{0})
			}
		}
	}
	binary.LittleEndian.PutUint32(b[:], uint32(len(pairs)))
	h.Write(b[:])
	for _, p := range pairs {
		ids(p.Prompt)
		ids(p.Chosen)
		mask(p.ChosenFmt)
		ids(p.Rejected)
		mask(p.RejectedFmt)
	}
}

// Fingerprint is the hex SHA-256 of the pairs' tokens and masks.
func Fingerprint(pairs []Pair) string {
	h := sha256.New()
	hashPairs(h, pairs)
	return fmt.Sprintf("%x", h.Sum(nil))
}
