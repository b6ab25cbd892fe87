package tokenizer

import (
	"context"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// benchCorpus returns about n bytes of text with a natural-language-like spread: 20,000
// word types built from syllables, drawn with a Zipf law, plus numbers, punctuation,
// newlines and a little non-Latin text. Deterministic.
func benchCorpus(n int) string {
	rng := rand.New(rand.NewSource(42))
	syll := strings.Fields("ka to ri mo na se lu pe di fa go ha ji ku ne so ta vi wa yo ze an el in on un str th ch sh qu pr bl gr")
	words := make([]string, 20_000)
	for i := range words {
		var w strings.Builder
		for k := 1 + rng.Intn(4); k > 0; k-- {
			w.WriteString(syll[rng.Intn(len(syll))])
		}
		words[i] = w.String()
	}
	extra := []string{"日本語", "данные", "naïve", "😀", "über"}
	zipf := rand.NewZipf(rng, 1.1, 2, uint64(len(words)-1))
	var sb strings.Builder
	sb.Grow(n + 64)
	for sb.Len() < n {
		switch r := rng.Intn(40); {
		case r == 0:
			sb.WriteString(strconv.Itoa(rng.Intn(100000)))
		case r == 1:
			sb.WriteString(extra[rng.Intn(len(extra))])
		case r < 4:
			sb.WriteString(strings.ToUpper(words[zipf.Uint64()][:1]) + words[zipf.Uint64()][1:])
		default:
			sb.WriteString(words[zipf.Uint64()])
		}
		switch r := rng.Intn(30); {
		case r == 0:
			sb.WriteString(".\n\n")
		case r < 3:
			sb.WriteString(", ")
		case r == 3:
			sb.WriteString(". ")
		default:
			sb.WriteByte(' ')
		}
	}
	return sb.String()
}

var benchTok = sync.OnceValues(func() (*Tokenizer, error) {
	tr := NewTrainer(TrainOptions{})
	tr.Add(benchCorpus(2 << 20))
	return tr.Train(context.Background(), 4096)
})

// BenchmarkTrain4096 trains a 4096-id vocabulary on 2 MiB of text (counting included).
func BenchmarkTrain4096(b *testing.B) {
	text := benchCorpus(2 << 20)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		tr := NewTrainer(TrainOptions{})
		tr.Add(text)
		tok, err := tr.Train(b.Context(), 4096)
		if err != nil || tok.VocabSize() != 4096 {
			b.Fatalf("train: %v", err)
		}
	}
}

// BenchmarkEncode measures steady-state encoding throughput (warm piece cache) on fresh
// text from the same distribution as the training text.
func BenchmarkEncode(b *testing.B) {
	tok, err := benchTok()
	if err != nil {
		b.Fatal(err)
	}
	text := benchCorpus(1 << 20)[1<<19:]
	tok.Encode(text)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	var ids []int32
	for b.Loop() {
		ids = tok.AppendEncode(ids[:0], text)
	}
	b.ReportMetric(float64(len(text))/float64(len(ids)), "bytes/token")
}

// BenchmarkEncodeCold encodes with an empty piece cache each time: the cost of BPE itself.
func BenchmarkEncodeCold(b *testing.B) {
	tok, err := benchTok()
	if err != nil {
		b.Fatal(err)
	}
	text := benchCorpus(256 << 10)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		tok.cache.mu.Lock()
		tok.cache.m = nil
		tok.cache.mu.Unlock()
		tok.Encode(text)
	}
}

// BenchmarkDecode measures decoding throughput in bytes of text produced.
func BenchmarkDecode(b *testing.B) {
	tok, err := benchTok()
	if err != nil {
		b.Fatal(err)
	}
	text := benchCorpus(1 << 20)
	ids := tok.Encode(text)
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		tok.Decode(ids)
	}
}
