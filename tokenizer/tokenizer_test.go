package tokenizer

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var roundTripCases = []struct{ name, text string }{
	{"empty", ""},
	{"ascii", "The quick brown fox jumps over the lazy dog. It's 12:30, isn't it?"},
	{"code", "func main() {\n\tfmt.Println(\"hi\") // comment\n}\n"},
	{"multilingual", "日本語のテキスト, русский текст, العربية, हिन्दी, Ελληνικά, 한국어"},
	{"combining marks", "e\u0301 n\u0303 \u0928\u093f"},
	{"emoji", "😀🚀 👩‍👩‍👧 🇫🇷 ❤️ family: 👨🏽‍💻"},
	{"whitespace runs", "  \t\t\n\n\r\n   \u00a0\u2003 x  \n\n\n   "},
	{"long space run", strings.Repeat(" ", 1000) + "x" + strings.Repeat("\n", 300)},
	{"long punctuation run", strings.Repeat("=-", 400)},
	{"long word", strings.Repeat("abcdefgh", 200)},
	{"invalid utf8", "abc\x80def\xff\xfe"},
	{"truncated rune", "日\xe6\x97"},
	{"nul and controls", "\x00\x01\x1b[0m\x7f"},
	{"surrogate bytes", "\xed\xa0\x80"},
	{"special token text", "<|begin_of_text|>hi<|eot_id|><|reserved_special_token_1|>"},
	{"digits", "3.14159265358979 1,000,000 ٣٤٥"},
}

func TestRoundTrip(t *testing.T) {
	toks := map[string]*Tokenizer{"trained": trained(t), "fixture": fixture(t)}
	for tname, tok := range toks {
		for _, c := range roundTripCases {
			t.Run(tname+"/"+c.name, func(t *testing.T) {
				ids := tok.Encode(c.text)
				assert.Equal(t, c.text, tok.Decode(ids))
				for _, id := range ids {
					assert.False(t, tok.IsSpecial(id), "Encode produced special id %d", id)
				}
				assert.Equal(t, c.text, tok.Decode(tok.EncodeWithSpecials(c.text)))
			})
		}
	}
}

func TestRoundTripCorpus(t *testing.T) {
	tok := trained(t)
	text := corpus(100_000)
	ids := tok.Encode(text)
	require.Equal(t, text, tok.Decode(ids))
	// A 1024-id vocabulary trained on this text must compress it well below a byte per
	// token: a broken merge order would leave mostly single bytes.
	assert.Greater(t, float64(len(text))/float64(len(ids)), 2.5)
}

func TestEncodeCacheConsistent(t *testing.T) {
	tok := trained(t)
	text := corpus(20_000)
	first := tok.Encode(text)  // fills the cache
	second := tok.Encode(text) // served from it
	assert.Equal(t, first, second)
	// The cache must not share backing arrays with results handed out.
	second[0] = -5
	assert.Equal(t, first, tok.Encode(text))
}

func TestEncodeConcurrent(t *testing.T) {
	tok := trained(t)
	text := corpus(30_000)
	want := tok.Encode(text)
	var wg sync.WaitGroup
	got := make([][]int32, 4)
	for g := range got {
		wg.Go(func() { got[g] = tok.Encode(text) })
	}
	wg.Wait()
	for _, g := range got {
		assert.Equal(t, want, g)
	}
}

func TestSpecialTokens(t *testing.T) {
	tok := trained(t)
	eot, ok := tok.SpecialID(EOTID)
	require.True(t, ok)
	bos := tok.BOS()
	cases := []struct {
		name, text   string
		withSpecials []int32 // expected special ids in EncodeWithSpecials, in order
	}{
		{"alone", "<|eot_id|>", []int32{eot}},
		{"embedded", "a<|eot_id|>b<|begin_of_text|>", []int32{eot, bos}},
		{"partial is text", "<|eot_id|", nil},
		{"reserved", ReservedSpecialToken(1), []int32{tok.specialOr(ReservedSpecialToken(1))}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plain := tok.Encode(c.text)
			for _, id := range plain {
				assert.False(t, tok.IsSpecial(id), "Encode must not produce special ids")
			}
			with := tok.EncodeWithSpecials(c.text)
			var specials []int32
			for _, id := range with {
				if tok.IsSpecial(id) {
					specials = append(specials, id)
				}
			}
			assert.Equal(t, c.withSpecials, specials)
			assert.Equal(t, c.text, tok.Decode(with))
		})
	}
}

func TestSpecialAccessors(t *testing.T) {
	tok := trained(t)
	n := int32(tok.VocabSize())
	// Train appends the 7 Llama 3 tokens then 2 reserved ones at the end of the vocab.
	assert.Equal(t, n-9, tok.BOS())
	assert.Equal(t, n-8, tok.EOS())
	assert.Equal(t, n-7, tok.StartHeader())
	assert.Equal(t, n-6, tok.EndHeader())
	assert.Equal(t, n-5, tok.EOT())
	assert.Equal(t, n-4, tok.EOM())
	py, ok := tok.SpecialID(PythonTag)
	require.True(t, ok)
	assert.Equal(t, n-3, py)
	assert.Equal(t, []int32{n - 7, n - 6, n - 5, n - 4, n - 3}, tok.FormattingTokenIDs())
	assert.Equal(t, []int32{n - 5, n - 4, n - 8}, tok.StopIDs())
	_, ok = tok.SpecialID("<|nope|>")
	assert.False(t, ok)

	none, err := func() (*Tokenizer, error) {
		tr := NewTrainer(TrainOptions{SpecialTokens: []string{}})
		tr.Add("abc abc")
		return tr.Train(t.Context(), 256)
	}()
	require.NoError(t, err)
	assert.Equal(t, int32(-1), none.BOS())
	assert.Empty(t, none.FormattingTokenIDs())
}

func TestDecodeVariants(t *testing.T) {
	tok := trained(t)
	ids := append(tok.Encode("hi"), tok.EOT())
	assert.Equal(t, "hi<|eot_id|>", tok.Decode(ids))
	assert.Equal(t, "hi", tok.DecodeWithoutSpecials(ids))
	assert.Equal(t, "hi\uFFFD", tok.Decode(append(tok.Encode("hi"), 1<<20)))
	_, err := tok.DecodeStrict([]int32{1, -1})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ids[1] = -1")
	s, err := tok.DecodeStrict(ids)
	require.NoError(t, err)
	assert.Equal(t, "hi<|eot_id|>", s)
}

// naiveBPE is the textbook definition: repeatedly merge the lowest-ranked adjacent pair,
// leftmost first.
func naiveBPE(tok *Tokenizer, p string) []int32 {
	sym := make([]int32, len(p))
	for i := range len(p) {
		sym[i] = tok.byteIDs[p[i]]
	}
	for {
		best, bestRank := -1, int32(-1)
		for i := 0; i+1 < len(sym); i++ {
			if r := tok.rank(sym[i], sym[i+1]); r >= 0 && (best < 0 || r < bestRank) {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			return sym
		}
		sym[best] = tok.merges[bestRank].Out
		sym = append(sym[:best+1], sym[best+2:]...)
	}
}

func TestBPEMatchesDefinition(t *testing.T) {
	tok := trained(t)
	text := strings.ReplaceAll(corpus(40_000), " ", "")
	for start := 0; start+300 < len(text); start += 997 {
		for _, n := range []int{2, 7, 31, 32, 33, 64, 250} {
			p := text[start : start+n]
			want := naiveBPE(tok, p)
			assert.Equal(t, want, tok.bpe(nil, p), "scan/heap at %d len %d", start, n)
			assert.Equal(t, want, tok.bpeHeap(nil, p), "heap at %d len %d", start, n)
		}
	}
}
