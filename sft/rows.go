package sft

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/transformer"
)

// RowName names example i for errors: its JSONL line when known, else its 1-based index.
func RowName(rows []datasets.EncodedSFT, i int) string {
	if rows[i].Line > 0 {
		return fmt.Sprintf("line %d", rows[i].Line)
	}
	return fmt.Sprintf("row %d", i+1)
}

// CheckRows rejects examples the model cannot train on, naming the row: empty ones, a
// target mask of the wrong length, ids outside the vocabulary, examples longer than the
// context window, and examples with no scored target token.
func CheckRows(rows []datasets.EncodedSFT, cfg transformer.Config) error {
	for i, r := range rows {
		name := RowName(rows, i)
		switch {
		case len(r.IDs) == 0:
			return fmt.Errorf("sft: %s: example is empty", name)
		case len(r.Targets) != len(r.IDs):
			return fmt.Errorf("sft: %s: target mask has %d entries for %d tokens", name, len(r.Targets), len(r.IDs))
		case len(r.IDs) < 2:
			return fmt.Errorf("sft: %s: example has 1 token; it needs a prefix and at least one target token", name)
		case len(r.IDs) > cfg.MaxPositionEmbeddings:
			return fmt.Errorf("sft: %s: example is %d tokens, longer than the context window of %d", name, len(r.IDs), cfg.MaxPositionEmbeddings)
		}
		for j, id := range r.IDs {
			if id < 0 || int(id) >= cfg.VocabSize {
				return fmt.Errorf("sft: %s: token %d is id %d, outside the vocabulary [0,%d)", name, j, id, cfg.VocabSize)
			}
		}
		if targetCount(r) == 0 {
			return fmt.Errorf("sft: %s: example has no target tokens (nothing after the first token is marked as an assistant/completion token)", name)
		}
	}
	return nil
}

// targetCount is the number of scored tokens of an example (the first token never is).
func targetCount(r datasets.EncodedSFT) int {
	n := 0
	for _, t := range r.Targets[1:] {
		if t {
			n++
		}
	}
	return n
}

// Fingerprint is the SHA-256 of the examples' ids and target masks, in order, so a resume
// can check that it sees the same data.
func Fingerprint(rows []datasets.EncodedSFT) string {
	h := sha256.New()
	var b [4]byte
	for _, r := range rows {
		binary.LittleEndian.PutUint32(b[:], uint32(len(r.IDs)))
		h.Write(b[:])
		for i, id := range r.IDs {
			binary.LittleEndian.PutUint32(b[:], uint32(id))
			h.Write(b[:])
			t := byte(0)
			if r.Targets[i] {
				t = 1
			}
			h.Write([]byte{t})
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// layout groups examples into batch rows: each group is the example indices that share
// one row (one example per row when not packing).
type layout struct {
	groups [][]int
	// width is the positions each group needs (sum of its examples' L-1).
	width []int
}

// unpackedLayout puts every example in its own row.
func unpackedLayout(rows []datasets.EncodedSFT) layout {
	l := layout{groups: make([][]int, len(rows)), width: make([]int, len(rows))}
	for i, r := range rows {
		l.groups[i] = []int{i}
		l.width[i] = len(r.IDs) - 1
	}
	return l
}

// packedLayout packs examples into rows of at most t positions, first fit in data order,
// so the packing is a pure function of the data and t.
func packedLayout(rows []datasets.EncodedSFT, t int) (layout, error) {
	var l layout
	for i, r := range rows {
		w := len(r.IDs) - 1
		if w > t {
			return layout{}, fmt.Errorf("sft: %s: example needs %d positions, more than the row length %d", RowName(rows, i), w, t)
		}
		placed := false
		for g := range l.groups {
			if l.width[g]+w <= t {
				l.groups[g] = append(l.groups[g], i)
				l.width[g] += w
				placed = true
				break
			}
		}
		if !placed {
			l.groups = append(l.groups, []int{i})
			l.width = append(l.width, w)
		}
	}
	return l, nil
}

// maxWidth is the widest group of the given ones.
func (l layout) maxWidth(groups []int) int {
	m := 1
	for _, g := range groups {
		m = max(m, l.width[g])
	}
	return m
}

// fillBatch lays groups out as the rows of b (b.B = len(groups), b.T = t, buffers of at
// least B*T), with restarted positions and one segment per example. Padding has target -1
// and a segment of its own. It returns the number of scored tokens.
func fillBatch(b *transformer.Batch, rows []datasets.EncodedSFT, l layout, groups []int, t int) int {
	b.B, b.T = len(groups), t
	n := b.B * t
	b.Tokens, b.Targets = b.Tokens[:cap(b.Tokens)][:n], b.Targets[:cap(b.Targets)][:n]
	b.Positions, b.Segments = b.Positions[:cap(b.Positions)][:n], b.Segments[:cap(b.Segments)][:n]
	scored := 0
	for r, g := range groups {
		off := r * t
		p := 0
		for s, ex := range l.groups[g] {
			ids, tg := rows[ex].IDs, rows[ex].Targets
			for j := 0; j+1 < len(ids); j++ {
				i := off + p
				b.Tokens[i] = ids[j]
				b.Positions[i] = int32(j)
				b.Segments[i] = int32(s)
				b.Targets[i] = -1
				if tg[j+1] {
					b.Targets[i] = ids[j+1]
					scored++
				}
				p++
			}
		}
		pad := int32(len(l.groups[g]))
		for ; p < t; p++ {
			i := off + p
			b.Tokens[i], b.Targets[i], b.Positions[i], b.Segments[i] = 0, -1, 0, pad
		}
	}
	return scored
}

// newBatch allocates batch buffers for up to maxB rows of maxT positions.
func newBatch(maxB, maxT int) *transformer.Batch {
	n := maxB * maxT
	return &transformer.Batch{Tokens: make([]int32, n), Targets: make([]int32, n),
		Positions: make([]int32, n), Segments: make([]int32, n)}
}
