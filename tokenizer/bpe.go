package tokenizer

// smallPiece is the length up to which bpe uses the quadratic scan, which beats the heap
// on the short pieces that make up almost all text.
const smallPiece = 32

// bpe appends the BPE encoding of the raw bytes p: start from one token per byte and
// repeatedly apply the lowest-ranked merge, leftmost first, until none applies. This is
// the same order Hugging Face's BPE model uses.
func (t *Tokenizer) bpe(dst []int32, p string) []int32 {
	if len(p) > smallPiece {
		return t.bpeHeap(dst, p)
	}
	var symBuf [smallPiece]int32
	var rankBuf [smallPiece]int32
	sym := symBuf[:len(p)]
	for i := 0; i < len(p); i++ {
		sym[i] = t.byteIDs[p[i]]
	}
	ranks := rankBuf[:len(p)-1]
	for i := range ranks {
		ranks[i] = t.rank(sym[i], sym[i+1])
	}
	for len(sym) > 1 {
		best := -1
		for i, r := range ranks {
			if r >= 0 && (best < 0 || r < ranks[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		sym[best] = t.ranks[pairKey(sym[best], sym[best+1])].out
		copy(sym[best+1:], sym[best+2:])
		sym = sym[:len(sym)-1]
		copy(ranks[best:], ranks[best+1:])
		ranks = ranks[:len(ranks)-1]
		if best > 0 {
			ranks[best-1] = t.rank(sym[best-1], sym[best])
		}
		if best < len(ranks) {
			ranks[best] = t.rank(sym[best], sym[best+1])
		}
	}
	return append(dst, sym...)
}

// rank is the merge rank of (a, b), or -1 when they do not merge.
func (t *Tokenizer) rank(a, b int32) int32 {
	if ro, ok := t.ranks[pairKey(a, b)]; ok {
		return ro.rank
	}
	return -1
}

// bpeHeap is bpe for long pieces in O(n log n): symbols form a linked list and candidate
// merges sit in a min-heap keyed by (rank, position); entries made stale by an earlier
// merge are skipped when popped.
func (t *Tokenizer) bpeHeap(dst []int32, p string) []int32 {
	n := len(p)
	sym := make([]int32, n)
	next := make([]int32, n)
	prev := make([]int32, n)
	for i := 0; i < n; i++ {
		sym[i] = t.byteIDs[p[i]]
		next[i] = int32(i + 1)
		prev[i] = int32(i - 1)
	}
	next[n-1] = -1
	h := make(mergeHeap, 0, n)
	push := func(pos int32) {
		if nx := next[pos]; nx >= 0 {
			if r := t.rank(sym[pos], sym[nx]); r >= 0 {
				h.push(uint64(r)<<32 | uint64(pos))
			}
		}
	}
	for i := 0; i < n-1; i++ {
		push(int32(i))
	}
	for len(h) > 0 {
		top := h.pop()
		r, pos := int32(top>>32), int32(uint32(top))
		nx := next[pos]
		if sym[pos] < 0 || nx < 0 || t.rank(sym[pos], sym[nx]) != r {
			continue // stale: a neighbour merged since this entry was pushed
		}
		sym[pos] = t.ranks[pairKey(sym[pos], sym[nx])].out
		sym[nx] = -1
		next[pos] = next[nx]
		if next[nx] >= 0 {
			prev[next[nx]] = pos
		}
		if pv := prev[pos]; pv >= 0 {
			push(pv)
		}
		push(pos)
	}
	for i := int32(0); i >= 0; i = next[i] {
		dst = append(dst, sym[i])
	}
	return dst
}

// mergeHeap is a binary min-heap of rank<<32|position keys.
type mergeHeap []uint64

func (h *mergeHeap) push(v uint64) {
	*h = append(*h, v)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if s[parent] <= s[i] {
			break
		}
		s[parent], s[i] = s[i], s[parent]
		i = parent
	}
}

func (h *mergeHeap) pop() uint64 {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s[l] < s[m] {
			m = l
		}
		if r < len(s) && s[r] < s[m] {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}
