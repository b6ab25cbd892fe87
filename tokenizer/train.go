package tokenizer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sort"
	"unicode"
	"unicode/utf8"
)

// TrainOptions configure Train.
type TrainOptions struct {
	// SpecialTokens are appended after the learned vocabulary, in order. Nil means
	// Llama3SpecialTokens(); an empty non-nil slice means none.
	SpecialTokens []string
	// ReservedSpecialTokens appends that many <|reserved_special_token_N|> after
	// SpecialTokens, room for formats added later.
	ReservedSpecialTokens int
	// MinFrequency stops training when the most frequent pair occurs fewer times; 0 means 2
	// (a merge seen once does not compress anything worth a vocabulary slot).
	MinFrequency int
	// Progress, when set, is called as merges are learned with (done, total), total being
	// the number of merges wanted; training may stop early when pairs run out.
	Progress func(done, total int)
}

// Trainer accumulates text and learns a byte-level BPE vocabulary from it with the
// Llama 3 pre-tokenizer. Add text, then call Train. Not safe for concurrent use.
type Trainer struct {
	opts   TrainOptions
	counts map[string]int64 // pre-tokenized piece -> occurrences
	bytes  int64
	chunk  int // AddReader's read size
}

// NewTrainer returns an empty Trainer.
func NewTrainer(opts TrainOptions) *Trainer {
	return &Trainer{opts: opts, counts: make(map[string]int64), chunk: 1 << 20}
}

// Add counts the pieces of text. Special-token spellings in text are plain text here.
func (tr *Trainer) Add(text string) {
	tr.bytes += int64(len(text))
	forEachPiece(splitLlama3, text, func(p string) { tr.counts[p]++ })
}

// SetProgress replaces TrainOptions.Progress, e.g. to attach a progress bar once the
// text has been read.
func (tr *Trainer) SetProgress(fn func(done, total int)) { tr.opts.Progress = fn }

// Bytes is the number of bytes of text added so far.
func (tr *Trainer) Bytes() int64 { return tr.bytes }

// AddMessages adds the plain-text parts of a chat as RenderChat encodes them (role names,
// the blank line after each header, and the contents), so the vocabulary fits the chat
// format.
func (tr *Trainer) AddMessages(msgs []Message) error {
	if err := validateMessages(msgs); err != nil {
		return err
	}
	for _, m := range msgs {
		tr.Add(m.Role)
		tr.Add(headerGap)
		tr.Add(m.Content)
	}
	tr.Add(AssistantRole)
	tr.Add(headerGap)
	return nil
}

// AddReader adds all text from r, reading it in chunks cut at piece boundaries so the
// result equals Add of the whole text. It returns the number of bytes read.
func (tr *Trainer) AddReader(ctx context.Context, r io.Reader) (int64, error) {
	var pending []byte
	var total int64
	buf := make([]byte, tr.chunk)
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		n, err := io.ReadFull(r, buf)
		total += int64(n)
		pending = append(pending, buf[:n]...)
		eof := errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if err != nil && !eof {
			return total, err
		}
		if eof {
			tr.Add(string(pending))
			return total, nil
		}
		if cut := safeCut(pending); cut > 0 {
			tr.Add(string(pending[:cut]))
			pending = append(pending[:0], pending[cut:]...)
		}
	}
}

// safeCut returns the last index i such that b[i-1] is '\n' and b[i] starts a letter, or
// 0. Both pre-tokenizer patterns always end a piece there: a newline never joins the
// letters after it.
func safeCut(b []byte) int {
	for i := len(b) - 1; i > 0; i-- {
		if b[i-1] != '\n' {
			continue
		}
		r, _ := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError && unicode.IsLetter(r) {
			return i
		}
	}
	return 0
}

// Train learns a vocabulary of vocabSize ids from texts: 256 byte tokens, the learned
// merges, then the special tokens. See Trainer for the details.
func Train(ctx context.Context, texts iter.Seq[string], vocabSize int, opts TrainOptions) (*Tokenizer, error) {
	tr := NewTrainer(opts)
	for s := range texts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		tr.Add(s)
	}
	return tr.Train(ctx, vocabSize)
}

// trainWord is one distinct piece of the corpus as current symbols.
type trainWord struct {
	sym  []int32
	freq int64
}

// Train learns merges from the added text until the vocabulary (byte tokens + merges +
// special tokens) holds vocabSize ids, or no pair occurs MinFrequency times. Pair counts
// are updated incrementally: a merge touches only the words that contain its pair. The
// most frequent pair wins; ties go to the pair with the smaller ids, so the result is
// deterministic.
func (tr *Trainer) Train(ctx context.Context, vocabSize int) (*Tokenizer, error) {
	specials := tr.opts.SpecialTokens
	if specials == nil {
		specials = Llama3SpecialTokens()
	}
	specials = append([]string(nil), specials...)
	for i := 0; i < tr.opts.ReservedSpecialTokens; i++ {
		specials = append(specials, ReservedSpecialToken(i))
	}
	seen := map[string]bool{}
	for i, s := range specials {
		if s == "" || seen[s] {
			return nil, fmt.Errorf("train: special token %d (%q) is empty or repeated", i, s)
		}
		if !utf8.ValidString(s) {
			return nil, fmt.Errorf("train: special token %d (%q) is not valid UTF-8", i, s)
		}
		seen[s] = true
	}
	modelSize := vocabSize - len(specials)
	if modelSize < 256 {
		return nil, fmt.Errorf("train: vocab size %d is too small: need at least 256 byte tokens + %d special tokens", vocabSize, len(specials))
	}
	minFreq := int64(tr.opts.MinFrequency)
	if minFreq <= 0 {
		minFreq = 2
	}

	alpha := newByteAlphabet()
	vocab := make([]string, 256, vocabSize)
	ids := make(map[string]int32, vocabSize)
	for b := 0; b < 256; b++ {
		vocab[b] = string(alpha.toRune[b])
		ids[vocab[b]] = int32(b)
	}

	// Distinct pieces in sorted order, so word indices (and thus everything) are
	// independent of map iteration order.
	keys := make([]string, 0, len(tr.counts))
	for k := range tr.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	words := make([]trainWord, len(keys))
	counts := make(map[uint64]int64)
	where := make(map[uint64][]int32)
	for wi, k := range keys {
		w := trainWord{sym: make([]int32, len(k)), freq: tr.counts[k]}
		for i := 0; i < len(k); i++ {
			w.sym[i] = int32(k[i])
		}
		for i := 0; i+1 < len(w.sym); i++ {
			p := pairKey(w.sym[i], w.sym[i+1])
			counts[p] += w.freq
			if l := where[p]; len(l) == 0 || l[len(l)-1] != int32(wi) {
				where[p] = append(l, int32(wi))
			}
		}
		words[wi] = w
	}
	h := &pairHeap{}
	for p, c := range counts {
		h.push(pairEntry{c, p})
	}

	var merges []Merge
	merged := make(map[uint64]bool)
	wantMerges := modelSize - 256
	touched := make(map[uint64]bool)
	for len(vocab) < modelSize && h.len() > 0 {
		if len(merges)%64 == 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
		}
		top := h.pop()
		if merged[top.pair] {
			continue
		}
		cur := counts[top.pair]
		if cur != top.count {
			if cur >= minFreq {
				h.push(pairEntry{cur, top.pair})
			}
			continue
		}
		if cur < minFreq {
			break
		}
		a, b := int32(top.pair>>32), int32(uint32(top.pair))
		spelling := vocab[a] + vocab[b]
		out, ok := ids[spelling]
		if !ok {
			out = int32(len(vocab))
			vocab = append(vocab, spelling)
			ids[spelling] = out
		}
		merges = append(merges, Merge{a, b, out})
		merged[top.pair] = true
		clear(touched)
		for _, wi := range where[top.pair] {
			tr.mergeWord(&words[wi], wi, a, b, out, counts, where, touched)
		}
		delete(where, top.pair)
		delete(counts, top.pair)
		// Only pairs containing the new token can have grown; push them with their
		// final counts (sorted, to keep heap order independent of map order).
		grown := make([]uint64, 0, len(touched))
		for p := range touched {
			grown = append(grown, p)
		}
		sort.Slice(grown, func(i, j int) bool { return grown[i] < grown[j] })
		for _, p := range grown {
			if c := counts[p]; c >= minFreq && !merged[p] {
				h.push(pairEntry{c, p})
			}
		}
		if tr.opts.Progress != nil && (len(merges)%32 == 0 || len(vocab) == modelSize) {
			tr.opts.Progress(len(vocab)-256, wantMerges)
		}
	}

	inModel := make([]bool, len(vocab), len(vocab)+len(specials))
	for i := range inModel {
		inModel[i] = true
	}
	added := make([]AddedToken, len(specials))
	for i, s := range specials {
		id := int32(len(vocab))
		vocab = append(vocab, s)
		inModel = append(inModel, false)
		added[i] = AddedToken{ID: id, Content: s, Special: true}
	}
	return assemble(model{vocab: vocab, inModel: inModel, merges: merges, added: added, mode: splitLlama3})
}

// mergeWord replaces every (a, b) in the word, left to right, by out and updates the
// pair counts; pairs that gain occurrences are recorded in touched and where.
func (tr *Trainer) mergeWord(w *trainWord, wi, a, b, out int32, counts map[uint64]int64, where map[uint64][]int32, touched map[uint64]bool) {
	s := w.sym
	found := false
	for i := 0; i+1 < len(s); i++ {
		if s[i] == a && s[i+1] == b {
			found = true
			break
		}
	}
	if !found {
		return // stale entry: an earlier merge already consumed this occurrence
	}
	f := w.freq
	for i := 0; i+1 < len(s); i++ {
		counts[pairKey(s[i], s[i+1])] -= f
	}
	j := 0
	for i := 0; i < len(s); {
		if i+1 < len(s) && s[i] == a && s[i+1] == b {
			s[j] = out
			i += 2
		} else {
			s[j] = s[i]
			i++
		}
		j++
	}
	s = s[:j]
	w.sym = s
	for i := 0; i+1 < len(s); i++ {
		p := pairKey(s[i], s[i+1])
		counts[p] += f
		if s[i] == out || s[i+1] == out {
			touched[p] = true
			if l := where[p]; len(l) == 0 || l[len(l)-1] != wi {
				where[p] = append(l, wi)
			}
		}
	}
}

// Evaluate encodes the added text's pieces with tok and returns the text's size in bytes
// and tokens, for the compression figure (bytes per token).
func (tr *Trainer) Evaluate(tok *Tokenizer) (bytes, tokens int64) {
	var buf []int32
	for p, c := range tr.counts {
		buf = tok.appendPiece(buf[:0], p)
		bytes += int64(len(p)) * c
		tokens += int64(len(buf)) * c
	}
	return bytes, tokens
}

// pairEntry is a heap entry: a pair and the count it had when pushed.
type pairEntry struct {
	count int64
	pair  uint64
}

// pairHeap is a max-heap on count, then the smaller pair.
type pairHeap struct{ s []pairEntry }

func (h *pairHeap) len() int { return len(h.s) }

func (h *pairHeap) less(i, j int) bool {
	if h.s[i].count != h.s[j].count {
		return h.s[i].count > h.s[j].count
	}
	return h.s[i].pair < h.s[j].pair
}

func (h *pairHeap) push(e pairEntry) {
	h.s = append(h.s, e)
	for i := len(h.s) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h.s[i], h.s[p] = h.s[p], h.s[i]
		i = p
	}
}

func (h *pairHeap) pop() pairEntry {
	top := h.s[0]
	last := len(h.s) - 1
	h.s[0] = h.s[last]
	h.s = h.s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h.s) && h.less(l, m) {
			m = l
		}
		if r < len(h.s) && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h.s[i], h.s[m] = h.s[m], h.s[i]
		i = m
	}
	return top
}
