package tokenizer

import (
	"unicode"
	"unicode/utf8"
)

// splitMode selects the pre-tokenizer: how text is cut into word-like pieces before BPE.
type splitMode int

const (
	// splitLlama3 follows Llama 3's (and cl100k's) pattern:
	//   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
	//   ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
	splitLlama3 splitMode = iota
	// splitGPT2 follows GPT-2's pattern (ByteLevel with use_regex):
	//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
	splitGPT2
	// splitNone keeps each text segment whole (ByteLevel without use_regex).
	splitNone
)

// The regular expressions the modes implement, as Hugging Face files spell them.
const (
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	gpt2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
)

// forEachPiece calls fn with each piece of s, in order; the pieces concatenate to s.
// Go's regexp has no lookahead, so the patterns above are implemented as a scanner; an
// invalid UTF-8 byte counts as a one-byte "other" character (neither letter, number nor
// space), which is what keeps invalid input round-tripping.
func forEachPiece(mode splitMode, s string, fn func(piece string)) {
	if mode == splitNone {
		if s != "" {
			fn(s)
		}
		return
	}
	for i := 0; i < len(s); {
		var end int
		if mode == splitLlama3 {
			end = nextLlama3(s, i)
		} else {
			end = nextGPT2(s, i)
		}
		fn(s[i:end])
		i = end
	}
}

// runeAt decodes the rune at s[i] with an ASCII fast path.
func runeAt(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

func isLetter(r rune) bool {
	if r < utf8.RuneSelf {
		return (r|0x20) >= 'a' && (r|0x20) <= 'z'
	}
	return unicode.IsLetter(r)
}

func isNumber(r rune) bool {
	if r < utf8.RuneSelf {
		return r >= '0' && r <= '9'
	}
	return unicode.IsNumber(r)
}

// isSpace is \s: Unicode White_Space.
func isSpace(r rune) bool {
	if r < utf8.RuneSelf {
		return r == ' ' || (r >= '\t' && r <= '\r')
	}
	return unicode.IsSpace(r)
}

// isOther is [^\s\p{L}\p{N}]; utf8.RuneError (an invalid byte) is "other".
func isOther(r rune) bool { return !isSpace(r) && !isLetter(r) && !isNumber(r) }

// contraction returns the length of a contraction suffix ('s, 't, 're, 've, 'm, 'll, 'd)
// starting right after an apostrophe at s[j:], or 0. foldCase matches (?i:...), under
// which Unicode simple case folding also lets U+017F (long s) match s.
func contraction(s string, j int, foldCase bool) int {
	lower := func(k int) (rune, int) {
		if k >= len(s) {
			return 0, 0
		}
		r, n := runeAt(s, k)
		if foldCase {
			if r >= 'A' && r <= 'Z' {
				r += 'a' - 'A'
			} else if r == 'ſ' {
				r = 's'
			}
		}
		return r, n
	}
	r1, n1 := lower(j)
	switch r1 {
	case 's', 't', 'm', 'd':
		return n1
	case 'r', 'v':
		if r2, n2 := lower(j + n1); r2 == 'e' {
			return n1 + n2
		}
	case 'l':
		if r2, n2 := lower(j + n1); r2 == 'l' {
			return n1 + n2
		}
	}
	return 0
}

func scanWhile(s string, i int, pred func(rune) bool) int {
	for i < len(s) {
		r, n := runeAt(s, i)
		if !pred(r) {
			break
		}
		i += n
	}
	return i
}

// scanSpaces handles the whitespace alternatives shared by both patterns once the piece
// is known to start with whitespace: \s+(?!\S) then \s+. It returns the piece end. When
// newlineEnd is set (Llama 3's \s*[\r\n]+, tried first), a run containing a newline ends
// just after its last newline.
func scanSpaces(s string, i int, newlineEnd bool) int {
	end, lastStart, runes, lastNL := i, i, 0, -1
	for end < len(s) {
		r, n := runeAt(s, end)
		if !isSpace(r) {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = end + n
		}
		lastStart = end
		end += n
		runes++
	}
	if newlineEnd && lastNL >= 0 {
		return lastNL
	}
	if end == len(s) || runes < 2 {
		return end
	}
	// \s+(?!\S): leave the last space to start the next piece.
	return lastStart
}

func nextLlama3(s string, i int) int {
	r0, n0 := runeAt(s, i)
	if r0 == '\'' {
		if l := contraction(s, i+1, true); l > 0 {
			return i + 1 + l
		}
	}
	if isLetter(r0) {
		return scanWhile(s, i+n0, isLetter)
	}
	if r0 != '\r' && r0 != '\n' && !isNumber(r0) && i+n0 < len(s) {
		if r1, n1 := runeAt(s, i+n0); isLetter(r1) {
			return scanWhile(s, i+n0+n1, isLetter)
		}
	}
	if isNumber(r0) {
		end := i + n0
		for k := 1; k < 3 && end < len(s); k++ {
			r, n := runeAt(s, end)
			if !isNumber(r) {
				break
			}
			end += n
		}
		return end
	}
	j := i
	if r0 == ' ' {
		j = i + n0
	}
	if j < len(s) {
		if r, n := runeAt(s, j); isOther(r) {
			end := scanWhile(s, j+n, isOther)
			return scanWhile(s, end, func(r rune) bool { return r == '\r' || r == '\n' })
		}
	}
	return scanSpaces(s, i, true)
}

func nextGPT2(s string, i int) int {
	r0, n0 := runeAt(s, i)
	if r0 == '\'' {
		if l := contraction(s, i+1, false); l > 0 {
			return i + 1 + l
		}
	}
	j := i
	if r0 == ' ' {
		j = i + n0
	}
	if j < len(s) {
		r, n := runeAt(s, j)
		switch {
		case isLetter(r):
			return scanWhile(s, j+n, isLetter)
		case isNumber(r):
			return scanWhile(s, j+n, isNumber)
		case isOther(r):
			return scanWhile(s, j+n, isOther)
		}
	}
	return scanSpaces(s, i, false)
}
