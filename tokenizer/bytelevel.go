package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// byteAlphabet maps each byte to the printable rune that stands for it in byte-level BPE
// vocabularies (GPT-2's bytes_to_unicode): printable Latin-1 bytes map to themselves and
// the others to U+0100 upwards, so that every token is a printable string.
type byteAlphabet struct {
	toRune [256]rune
	toByte map[rune]byte
}

func newByteAlphabet() *byteAlphabet {
	a := &byteAlphabet{toByte: make(map[rune]byte, 256)}
	next := rune(256)
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = next
			next++
		}
		a.toRune[b] = r
		a.toByte[r] = byte(b)
	}
	return a
}

// encode returns the byte-level spelling of raw bytes.
func (a *byteAlphabet) encode(raw string) string {
	var sb strings.Builder
	sb.Grow(len(raw) * 2)
	for i := 0; i < len(raw); i++ {
		sb.WriteRune(a.toRune[raw[i]])
	}
	return sb.String()
}

// decode turns a byte-level spelling back into raw bytes; it fails on a rune outside the
// alphabet.
func (a *byteAlphabet) decode(tok string) (string, error) {
	if !utf8.ValidString(tok) {
		return "", fmt.Errorf("token %q is not valid UTF-8", tok)
	}
	out := make([]byte, 0, len(tok))
	for _, r := range tok {
		b, ok := a.toByte[r]
		if !ok {
			return "", fmt.Errorf("token %q contains %q, which is not in the byte-level alphabet", tok, r)
		}
		out = append(out, b)
	}
	return string(out), nil
}
