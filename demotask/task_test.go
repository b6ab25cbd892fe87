package demotask

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGenerateIsDeterministicAndSplitsAreDisjoint(t *testing.T) {
	a := Generate(7, Train, 400)
	b := Generate(7, Train, 400)
	require.Equal(t, a, b, "same seed must give the same items")
	require.Len(t, a, 400)
	ev := Generate(7, Eval, 100)
	require.Len(t, ev, 100)
	train := map[string]bool{}
	for _, it := range Generate(99, Train, 2000) {
		train[it.UserText()] = true
	}
	for _, it := range ev {
		assert.False(t, train[it.UserText()], "eval prompt %q appears in training", it.UserText())
		assert.Equal(t, Eval, it.Split)
	}
	fams := map[Family]int{}
	for _, it := range a {
		fams[it.Family]++
		assert.True(t, it.Correct(it.Answer))
		assert.True(t, it.Correct(" "+it.Answer+"\n"))
		assert.False(t, it.Correct(it.Answer+"x"))
	}
	assert.Len(t, fams, len(Families()), "every family is represented")
}

func TestAnswersAreRight(t *testing.T) {
	cases := []struct {
		family Family
		check  func(user, answer string) bool
	}{
		{Reverse, func(u, a string) bool { return len(a) >= 3 }},
		{Upper, func(u, a string) bool { return a == strings.ToUpper(a) }},
		{Format, func(u, a string) bool { return len(a) > 8 && a[:8] == "Answer: " }},
	}
	items := Generate(3, Train, 300)
	for _, tc := range cases {
		n := 0
		for _, it := range items {
			if it.Family == tc.family {
				n++
				assert.True(t, tc.check(it.UserText(), it.Answer), "%s: %q -> %q", tc.family, it.UserText(), it.Answer)
			}
		}
		assert.Positive(t, n)
	}
	for _, it := range items {
		switch it.Family {
		case Add:
			var x, y int
			_, err := fmt.Sscanf(it.UserText(), "What is %d + %d?", &x, &y)
			require.NoError(t, err)
			assert.Equal(t, strconv.Itoa(x+y), it.Answer)
		case Reverse:
			var w string
			_, err := fmt.Sscanf(it.UserText(), "Reverse the word %s", &w)
			require.NoError(t, err)
			w = w[:len(w)-1]
			r := []byte(w)
			for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
				r[i], r[j] = r[j], r[i]
			}
			assert.Equal(t, string(r), it.Answer)
		}
	}
}

func TestAnnotator(t *testing.T) {
	it := Item{Prompt: []Message{{Role: "user", Content: "What is 2 + 3?"}}, Answer: "5"}
	cases := []struct {
		name         string
		x, y         string
		opts         AnnotatorOptions
		wantChosen   string
		wantEdited   string
		wantRating   Rating
		wantAnnotate bool
	}{
		{"correct beats wrong", "4", "5", AnnotatorOptions{}, "5", "", SignificantlyBetter, true},
		{"tidy beats repeated", "6 6 6", "7", AnnotatorOptions{Edit: true}, "7", "5", SlightlyBetter, true},
		{"concise beats chatty when both wrong", "The answer is 4", "4", AnnotatorOptions{}, "4", "", NegligiblyBetter, true},
		{"identical is skipped", "5", "5", AnnotatorOptions{}, "", "", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, ok := NewAnnotator(tc.opts, 1).Compare(it, tc.x, tc.y)
			require.Equal(t, tc.wantAnnotate, ok)
			if !ok {
				return
			}
			assert.Equal(t, tc.wantChosen, p.Chosen)
			assert.NotEqual(t, p.Chosen, p.Rejected)
			assert.Equal(t, tc.wantEdited, p.Edited)
			assert.Equal(t, tc.wantRating, p.Rating)
		})
	}
}

func TestAnnotatorNoiseFlipsAboutTheRightShare(t *testing.T) {
	it := Item{Prompt: []Message{{Role: "user", Content: "q"}}, Answer: "5"}
	a := NewAnnotator(AnnotatorOptions{Noise: 0.25}, 42)
	flipped := 0
	const n = 4000
	for i := 0; i < n; i++ {
		p, ok := a.Compare(it, "5", "4")
		require.True(t, ok)
		if p.Chosen == "4" {
			flipped++
		}
	}
	assert.InDelta(t, 0.25, float64(flipped)/n, 0.03)
}

func TestTailRepetition(t *testing.T) {
	for s, want := range map[string]bool{"abcabcabc": true, "5 5 5": true, "hello": false, "aa": false, "aaa": true, "Answer: 7": false} {
		assert.Equal(t, want, HasTailRepetition(s), s)
	}
}

func TestCorpusHasMistakesAndIsDeterministic(t *testing.T) {
	c := BuildCorpus(5, 300, 0.5)
	require.Equal(t, c, BuildCorpus(5, 300, 0.5))
	require.Len(t, c.Texts, 300)
	require.Len(t, c.Transcripts, 300)
	wrong := 0
	items := Generate(5^0xbeef, Train, 300)
	for i, tr := range c.Transcripts {
		if !items[i].Correct(tr[len(tr)-1].Content) {
			wrong++
		}
	}
	assert.InDelta(t, 0.5, float64(wrong)/300, 0.12, "about half the transcripts carry a mistake")
	rng := rand.New(rand.NewPCG(1, 2))
	for _, it := range items[:50] {
		assert.False(t, it.Correct(Mistake(rng, it)), "a mistake must be wrong: %q", it.UserText())
	}
	seed := CuratedSFT(5, 20)
	require.Len(t, seed, 20)
	assert.Equal(t, "assistant", seed[0][len(seed[0])-1].Role)
}

func TestMistakesAreWrongAndCorpusHoldsNoHeldOutPrompt(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	items := Generate(11, Train, 200)
	for _, it := range items {
		for k := NearMiss; k < numMistakeKinds; k++ {
			m := MistakeOf(k, rng, it)
			assert.False(t, it.Correct(m), "kind %d on %q gave the right answer %q", k, it.UserText(), m)
		}
		assert.False(t, it.Correct(MistakeOf(DominantMistake(it.Family), rng, it)))
	}
	c := BuildCorpus(1, 2000, 0.6)
	eval := map[string]bool{}
	for _, it := range Generate(1, Eval, 64) {
		eval[it.UserText()] = true
	}
	for _, tr := range c.Transcripts {
		assert.False(t, eval[tr[0].Content], "held-out prompt %q in a transcript", tr[0].Content)
	}
	text := strings.Join(c.Texts, " ")
	for p := range eval {
		assert.NotContains(t, text, p, "held-out prompt in the free text")
	}
	// The domain knowledge covers held-out items too: "a plus b is c" for most eval sums.
	known, sums := 0, 0
	for _, it := range Generate(1, Eval, 64) {
		if it.Family == Add {
			sums++
			if strings.Contains(text, fact(it)) {
				known++
			}
		}
	}
	assert.Greater(t, known, sums/2, "held-out sums are stated in the corpus")
}
