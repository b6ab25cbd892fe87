package tokenizer

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTrainVocabSize(t *testing.T) {
	text := corpus(60_000)
	cases := []struct {
		vocab, reserved int
	}{{300, 0}, {512, 0}, {800, 4}}
	for _, c := range cases {
		tr := NewTrainer(TrainOptions{ReservedSpecialTokens: c.reserved})
		tr.Add(text)
		tok, err := tr.Train(t.Context(), c.vocab)
		require.NoError(t, err)
		assert.Equal(t, c.vocab, tok.VocabSize())
		specials := 7 + c.reserved
		// Every learned token comes from one merge (spellings are unique here).
		assert.Equal(t, c.vocab-256-specials, tok.NumMerges())
		added := tok.AddedTokens()
		require.Len(t, added, specials)
		for i, a := range added {
			assert.Equal(t, int32(c.vocab-specials+i), a.ID)
			assert.True(t, a.Special)
		}
		if c.reserved > 0 {
			assert.Equal(t, ReservedSpecialToken(c.reserved-1), added[len(added)-1].Content)
		}
		// Merges only use tokens that exist before them.
		for r, m := range tok.Merges() {
			assert.Less(t, m.A, int32(256+r), "merge %d", r)
			assert.Less(t, m.B, int32(256+r), "merge %d", r)
		}
	}
}

func TestTrainDeterministic(t *testing.T) {
	lines := strings.SplitAfter(corpus(80_000), "\n")
	train := func(lines []string) []byte {
		tok, err := Train(t.Context(), slices.Values(lines), 700, TrainOptions{})
		require.NoError(t, err)
		out, err := tok.MarshalJSON()
		require.NoError(t, err)
		return out
	}
	first := train(lines)
	assert.Equal(t, first, train(lines))
	// Counts are what matter, not the order text arrives in.
	reversed := slices.Clone(lines)
	slices.Reverse(reversed)
	assert.Equal(t, first, train(reversed))
}

func TestTrainTieBreak(t *testing.T) {
	// "ab" and "cd" both occur twice; the pair with the smaller ids (a=97, b=98) wins.
	tok, err := Train(t.Context(), slices.Values([]string{"cd", "ab", "cd", "ab"}), 256+7+1, TrainOptions{})
	require.NoError(t, err)
	require.Equal(t, 1, tok.NumMerges())
	m := tok.Merges()[0]
	assert.Equal(t, "ab", tok.vocab[m.Out])
}

func TestTrainStopsWhenPairsRunOut(t *testing.T) {
	tok, err := Train(t.Context(), slices.Values([]string{"aaaa aaaa"}), 5000, TrainOptions{SpecialTokens: []string{}})
	require.NoError(t, err)
	// Pieces "aaaa" and " aaaa": a+a (6 times) then aa+aa (twice); " "+aaaa occurs once,
	// below the default minimum frequency of 2, so training stops at 258 ids.
	assert.Equal(t, 258, tok.VocabSize())
	assert.Equal(t, []int32{257, ' ', 257}, tok.Encode("aaaa aaaa"))
	assert.Equal(t, "aaaa", tok.vocab[257])
}

func TestTrainErrors(t *testing.T) {
	cases := []struct {
		name  string
		vocab int
		opts  TrainOptions
		ctx   func() context.Context
		want  string
	}{
		{"too small", 260, TrainOptions{}, nil, "too small"},
		{"repeated special", 1000, TrainOptions{SpecialTokens: []string{"<a>", "<a>"}}, nil, "repeated"},
		{"empty special", 1000, TrainOptions{SpecialTokens: []string{""}}, nil, "empty"},
		{"invalid utf8 special", 1000, TrainOptions{SpecialTokens: []string{"<\xff>"}}, nil, "UTF-8"},
		{"canceled", 1000, TrainOptions{}, func() context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx
		}, "canceled"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := t.Context()
			if c.ctx != nil {
				ctx = c.ctx()
			}
			_, err := Train(ctx, slices.Values([]string{corpus(5000)}), c.vocab, c.opts)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
		})
	}
}

func TestTrainProgress(t *testing.T) {
	var calls [][2]int
	opts := TrainOptions{Progress: func(done, total int) { calls = append(calls, [2]int{done, total}) }}
	_, err := Train(t.Context(), slices.Values([]string{corpus(50_000)}), 600, opts)
	require.NoError(t, err)
	require.NotEmpty(t, calls)
	last := calls[len(calls)-1]
	assert.Equal(t, [2]int{600 - 256 - 7, 600 - 256 - 7}, last)
	for i := 1; i < len(calls); i++ {
		assert.GreaterOrEqual(t, calls[i][0], calls[i-1][0])
	}
}

func TestAddReaderMatchesAdd(t *testing.T) {
	text := corpus(50_000) + "\xff tail without newline"
	whole := NewTrainer(TrainOptions{})
	whole.Add(text)
	chunked := NewTrainer(TrainOptions{})
	chunked.chunk = 1000 // many chunk boundaries
	n, err := chunked.AddReader(t.Context(), strings.NewReader(text))
	require.NoError(t, err)
	assert.Equal(t, int64(len(text)), n)
	assert.Equal(t, whole.counts, chunked.counts)
	assert.Equal(t, whole.Bytes(), chunked.Bytes())
}

func TestAddMessagesAndEvaluate(t *testing.T) {
	tr := NewTrainer(TrainOptions{})
	msgs := []Message{{Role: "user", Content: "hello there"}, {Role: "assistant", Content: "general kenobi"}}
	for range 50 {
		require.NoError(t, tr.AddMessages(msgs))
	}
	err := tr.AddMessages([]Message{{Role: "narrator", Content: "x"}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "message 0")
	tok, err := tr.Train(t.Context(), 400)
	require.NoError(t, err)
	bytes, tokens := tr.Evaluate(tok)
	assert.Equal(t, tr.Bytes(), bytes)
	// Rendering the chat uses the learned merges: each content is one token or close.
	r, err := tok.RenderChat(msgs, RenderOptions{})
	require.NoError(t, err)
	assert.Less(t, len(r.IDs), 20)
	assert.Less(t, tokens, bytes/4)
}
