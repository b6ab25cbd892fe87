package tokenizer

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// corpusWords is a small vocabulary for synthetic text; the generator draws from it with
// a skewed distribution so frequent words dominate, as in natural text.
var corpusWords = strings.Fields(`the of and to in is was that for it with as his on be at by
had are but from or have an they which one you were her all she there would their we him been
has when who will more no if out so said what up its about into than them can only other new
some could time these two may then do first any my now such like our over man me even most made
after also did many before must through back years where much your way well down should because
each just those people how too little state good very make world still own see men work long get
here between both life being under never day same another know while last might us great old year
off come since against go came right used take three model token train loss reward policy sample
don't it's we'll they're I'm you've she'd naïve café résumé Zürich 東京 日本語 Москва данные
مرحبا नमस्ते 😀 🚀 👩‍👩‍👧 42 2024 3.14159 1,000,000 x=y+1; foo(bar) {"key": [1, 2]} <|eot_id|>`)

// corpus returns about n bytes of deterministic pseudo-text: sentences of words drawn
// with a Zipf-like bias, some capitalised, with punctuation, newlines and indentation.
func corpus(n int) string {
	var sb strings.Builder
	sb.Grow(n + 64)
	x := uint64(0x9E3779B97F4A7C15)
	rnd := func(k int) int {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		return int(x % uint64(k))
	}
	for sb.Len() < n {
		words := 4 + rnd(14)
		for w := 0; w < words; w++ {
			// min of two draws skews toward the front of the list
			i := min(rnd(len(corpusWords)), rnd(len(corpusWords)))
			word := corpusWords[i]
			if w == 0 {
				word = strings.ToUpper(word[:1]) + word[1:]
			} else {
				sb.WriteByte(' ')
			}
			sb.WriteString(word)
			if rnd(12) == 0 {
				sb.WriteByte(',')
			}
		}
		switch rnd(10) {
		case 0:
			sb.WriteString("?\n\n")
		case 1:
			sb.WriteString(".\n    ")
		case 2:
			sb.WriteString("!\t")
		default:
			sb.WriteString(". ")
		}
	}
	return sb.String()
}

// trainedTokenizer trains (once per test binary) a 1024-id vocabulary on 200 kB of
// corpus; tests share it read-only.
var trainedTokenizer = sync.OnceValues(func() (*Tokenizer, error) {
	tr := NewTrainer(TrainOptions{ReservedSpecialTokens: 2})
	tr.Add(corpus(200_000))
	return tr.Train(context.Background(), 1024)
})

func trained(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := trainedTokenizer()
	require.NoError(t, err)
	return tok
}

// fixture loads the hand-written Llama-3-style tokenizer.json in testdata (266 model
// tokens in GPT-2's byte order, 10 merges, the 7 Llama 3 special tokens).
func fixture(t testing.TB) *Tokenizer {
	t.Helper()
	tok, err := LoadFile(filepath.Join("testdata", "tiny_llama3.json"))
	require.NoError(t, err)
	return tok
}

// spellings maps ids to their vocabulary spellings.
func spellings(t testing.TB, tok *Tokenizer, ids []int32) []string {
	t.Helper()
	out := make([]string, len(ids))
	for i, id := range ids {
		s, ok := tok.Token(id)
		require.True(t, ok, "id %d", id)
		out[i] = s
	}
	return out
}
