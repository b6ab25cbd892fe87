package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
)

// AddedToken is a token outside the BPE model, matched as a whole string (Hugging Face's
// added_tokens). Special ones (all of Llama 3's) are matched only by EncodeWithSpecials;
// non-special ones are matched by Encode too, as Hugging Face does.
type AddedToken struct {
	ID      int32  // its id, after or among the model's
	Content string // the exact text it stands for, e.g. "<|eot_id|>"
	Special bool   // special tokens are matched only by EncodeWithSpecials
	// SingleWord, LStrip, RStrip and Normalized are kept from a loaded file and written
	// back, but matching ignores them (Llama 3 sets them all false).
	SingleWord, LStrip, RStrip, Normalized bool
}

// Merge is one BPE merge rule: tokens A and B become Out.
type Merge struct{ A, B, Out int32 }

// prefixSpace is where ByteLevel's add_prefix_space inserts a space.
type prefixSpace int

const (
	prefixNone    prefixSpace = iota
	prefixSegment             // ByteLevel doing the splitting: once per text segment
	prefixPiece               // ByteLevel after a Split: once per piece
)

// Tokenizer is a byte-level BPE tokenizer. It is safe for concurrent use.
type Tokenizer struct {
	alpha *byteAlphabet

	vocab   []string // id -> spelling (byte-level alphabet for model tokens, content for added)
	raw     []string // id -> the bytes the token decodes to
	inModel []bool   // id is in the BPE model's vocab
	rawIDs  map[string]int32
	byteIDs [256]int32

	merges []Merge
	ranks  map[uint64]rankOut

	added    []AddedToken
	addedIDs map[string]int32
	special  []bool
	all      *addedMatcher // every added token (EncodeWithSpecials)
	plain    *addedMatcher // non-special added tokens only (Encode)

	mode          splitMode
	prefix        prefixSpace
	ignoreMerges  bool
	byteLevelOnly bool
	// postProcessor is a loaded file's post_processor, written back unchanged; encoding
	// never applies it (callers add BOS explicitly).
	postProcessor json.RawMessage

	cache pieceCache
}

type rankOut struct{ rank, out int32 }

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// model is what both Train and the tokenizer.json loader hand to assemble.
type model struct {
	vocab        []string // id -> spelling; "" where the id is only an added token
	inModel      []bool
	merges       []Merge
	added        []AddedToken
	mode         splitMode
	prefix       prefixSpace
	ignoreMerges bool
	// byteLevelOnly: the file's pre-tokenizer is ByteLevel alone (GPT-2 style), not a
	// Split followed by ByteLevel (Llama 3 style); kept to write the same structure back.
	byteLevelOnly bool
	post          json.RawMessage
}

// assemble builds the lookup tables of a validated model.
func assemble(m model) (*Tokenizer, error) {
	n := len(m.vocab)
	t := &Tokenizer{
		alpha:         newByteAlphabet(),
		vocab:         m.vocab,
		raw:           make([]string, n),
		inModel:       m.inModel,
		rawIDs:        make(map[string]int32, n),
		merges:        m.merges,
		ranks:         make(map[uint64]rankOut, len(m.merges)),
		added:         m.added,
		addedIDs:      make(map[string]int32, len(m.added)),
		special:       make([]bool, n),
		mode:          m.mode,
		prefix:        m.prefix,
		ignoreMerges:  m.ignoreMerges,
		byteLevelOnly: m.byteLevelOnly,
		postProcessor: m.post,
	}
	for i := range t.byteIDs {
		t.byteIDs[i] = -1
	}
	for id, sp := range m.vocab {
		if !m.inModel[id] {
			continue
		}
		r, err := t.alpha.decode(sp)
		if err != nil {
			return nil, fmt.Errorf("model.vocab: id %d: %w", id, err)
		}
		t.raw[id] = r
		t.rawIDs[r] = int32(id)
		if len(r) == 1 {
			t.byteIDs[r[0]] = int32(id)
		}
	}
	for b, id := range t.byteIDs {
		if id < 0 {
			return nil, fmt.Errorf("model.vocab: no token for byte 0x%02x (%q); a byte-level vocabulary needs all 256", b, t.alpha.toRune[b])
		}
	}
	for r, mg := range m.merges {
		k := pairKey(mg.A, mg.B)
		if _, dup := t.ranks[k]; dup {
			return nil, fmt.Errorf("model.merges[%d]: duplicate merge %q %q", r, m.vocab[mg.A], m.vocab[mg.B])
		}
		t.ranks[k] = rankOut{int32(r), mg.Out}
	}
	for _, a := range m.added {
		t.addedIDs[a.Content] = a.ID
		t.special[a.ID] = a.Special
		if !m.inModel[a.ID] {
			t.raw[a.ID] = a.Content
		}
	}
	t.all = newAddedMatcher(m.added, func(AddedToken) bool { return true })
	t.plain = newAddedMatcher(m.added, func(a AddedToken) bool { return !a.Special })
	return t, nil
}

// VocabSize is the number of ids, model tokens and added tokens together.
func (t *Tokenizer) VocabSize() int { return len(t.vocab) }

// NumMerges is the number of BPE merge rules.
func (t *Tokenizer) NumMerges() int { return len(t.merges) }

// Merges returns a copy of the merge rules in rank order.
func (t *Tokenizer) Merges() []Merge { return append([]Merge(nil), t.merges...) }

// AddedTokens returns a copy of the added tokens in file order.
func (t *Tokenizer) AddedTokens() []AddedToken { return append([]AddedToken(nil), t.added...) }

// Token returns the vocabulary spelling of id: the byte-level form for model tokens (a
// leading space shows as "Ġ"), the content for added tokens.
func (t *Tokenizer) Token(id int32) (string, bool) {
	if id < 0 || int(id) >= len(t.vocab) {
		return "", false
	}
	return t.vocab[id], true
}

// TokenBytes returns the bytes id decodes to.
func (t *Tokenizer) TokenBytes(id int32) (string, bool) {
	if id < 0 || int(id) >= len(t.raw) {
		return "", false
	}
	return t.raw[id], true
}

// IsSpecial reports whether id is a special added token.
func (t *Tokenizer) IsSpecial(id int32) bool {
	return id >= 0 && int(id) < len(t.special) && t.special[id]
}

// Encode tokenizes text. Special tokens written in the text are NOT recognised: their
// characters are encoded as ordinary text. No BOS is added. Any byte string, valid UTF-8
// or not, is encoded so that Decode gives it back exactly.
func (t *Tokenizer) Encode(text string) []int32 {
	return t.appendEncode(nil, text, t.plain)
}

// EncodeWithSpecials is Encode that also turns special tokens written in the text (such
// as "<|eot_id|>") into their ids. Use it only on trusted text, never on user content.
func (t *Tokenizer) EncodeWithSpecials(text string) []int32 {
	return t.appendEncode(nil, text, t.all)
}

// AppendEncode appends Encode(text) to dst.
func (t *Tokenizer) AppendEncode(dst []int32, text string) []int32 {
	return t.appendEncode(dst, text, t.plain)
}

func (t *Tokenizer) appendEncode(dst []int32, text string, m *addedMatcher) []int32 {
	for pos := 0; pos < len(text); {
		start, end, id, ok := m.find(text, pos)
		if !ok {
			return t.appendSegment(dst, text[pos:])
		}
		dst = t.appendSegment(dst, text[pos:start])
		dst = append(dst, id)
		pos = end
	}
	return dst
}

// appendSegment encodes text that holds no added token.
func (t *Tokenizer) appendSegment(dst []int32, seg string) []int32 {
	if seg == "" {
		return dst
	}
	if t.prefix == prefixSegment && seg[0] != ' ' {
		seg = " " + seg
	}
	forEachPiece(t.mode, seg, func(p string) {
		if t.prefix == prefixPiece && p[0] != ' ' {
			p = " " + p
		}
		dst = t.appendPiece(dst, p)
	})
	return dst
}

// maxCachedPiece bounds the pieces kept in the per-tokenizer cache; longer ones are rare
// and would bloat it.
const maxCachedPiece = 48

func (t *Tokenizer) appendPiece(dst []int32, p string) []int32 {
	if len(p) == 1 {
		return append(dst, t.byteIDs[p[0]])
	}
	if len(p) <= maxCachedPiece {
		if ids, ok := t.cache.get(p); ok {
			return append(dst, ids...)
		}
	}
	start := len(dst)
	if id, ok := t.rawIDs[p]; ok && t.ignoreMerges {
		dst = append(dst, id)
	} else {
		dst = t.bpe(dst, p)
	}
	if len(p) <= maxCachedPiece {
		t.cache.put(p, append([]int32(nil), dst[start:]...))
	}
	return dst
}

// Decode turns ids back into text, concatenating each token's bytes (special tokens give
// their content). It does not repair invalid UTF-8, so Decode(Encode(s)) == s byte for
// byte. An id outside the vocabulary decodes as U+FFFD; use DecodeStrict to reject it.
func (t *Tokenizer) Decode(ids []int32) string {
	var sb strings.Builder
	sb.Grow(4 * len(ids))
	for _, id := range ids {
		if id < 0 || int(id) >= len(t.raw) {
			sb.WriteString("\uFFFD")
			continue
		}
		sb.WriteString(t.raw[id])
	}
	return sb.String()
}

// DecodeStrict is Decode that fails on an id outside the vocabulary, naming its position.
func (t *Tokenizer) DecodeStrict(ids []int32) (string, error) {
	for i, id := range ids {
		if id < 0 || int(id) >= len(t.raw) {
			return "", fmt.Errorf("ids[%d] = %d is outside the vocabulary [0, %d)", i, id, len(t.raw))
		}
	}
	return t.Decode(ids), nil
}

// DecodeWithoutSpecials is Decode that drops special tokens (and ids outside the
// vocabulary), for showing generated text.
func (t *Tokenizer) DecodeWithoutSpecials(ids []int32) string {
	var sb strings.Builder
	for _, id := range ids {
		if id < 0 || int(id) >= len(t.raw) || t.special[id] {
			continue
		}
		sb.WriteString(t.raw[id])
	}
	return sb.String()
}

// addedMatcher finds added tokens in text: candidates are indexed by first byte and
// tried longest first, so the leftmost, longest token wins.
type addedMatcher struct {
	byFirst [256][]AddedToken
	any     bool
}

func newAddedMatcher(toks []AddedToken, keep func(AddedToken) bool) *addedMatcher {
	m := &addedMatcher{}
	for _, a := range toks {
		if a.Content == "" || !keep(a) {
			continue
		}
		b := a.Content[0]
		m.byFirst[b] = append(m.byFirst[b], a)
		m.any = true
	}
	for i := range m.byFirst {
		l := m.byFirst[i]
		for j := 1; j < len(l); j++ { // insertion sort by length, longest first
			for k := j; k > 0 && len(l[k].Content) > len(l[k-1].Content); k-- {
				l[k], l[k-1] = l[k-1], l[k]
			}
		}
	}
	return m
}

func (m *addedMatcher) find(s string, from int) (start, end int, id int32, ok bool) {
	if !m.any {
		return 0, 0, 0, false
	}
	for i := from; i < len(s); i++ {
		for _, a := range m.byFirst[s[i]] {
			if strings.HasPrefix(s[i:], a.Content) {
				return i, i + len(a.Content), a.ID, true
			}
		}
	}
	return 0, 0, 0, false
}

// pieceCache remembers the encoding of recently seen pieces. It belongs to one
// Tokenizer; when full it is cleared rather than tracking recency, which keeps it cheap
// and bounded.
type pieceCache struct {
	mu sync.RWMutex
	m  map[string][]int32
}

const maxCacheEntries = 1 << 16

func (c *pieceCache) get(p string) ([]int32, bool) {
	c.mu.RLock()
	ids, ok := c.m[p]
	c.mu.RUnlock()
	return ids, ok
}

func (c *pieceCache) put(p string, ids []int32) {
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCacheEntries {
		c.m = make(map[string][]int32, 1024)
	}
	c.m[strings.Clone(p)] = ids
	c.mu.Unlock()
}
