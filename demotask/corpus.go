package demotask

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
)

// CuratedSFT returns n correct, well-formatted conversations from the training split: the
// curated seed data of the SFT stage.
func CuratedSFT(seed uint64, n int) [][]Message {
	items := Generate(seed^0xc0de, Train, n)
	out := make([][]Message, len(items))
	for i, it := range items {
		out[i] = it.Conversation(it.Answer)
	}
	return out
}

// Mistake returns a plausible wrong or badly formatted response to the item, the kind of
// answer a base model gives before post-training.
func Mistake(rng *rand.Rand, it Item) string {
	switch rng.IntN(5) {
	case 0: // off by one, or a near word
		if n, err := strconv.Atoi(it.Answer); err == nil {
			return strconv.Itoa(n + 1 - 2*rng.IntN(2))
		}
		if len(it.Answer) > 1 {
			r := []rune(it.Answer)
			r[0], r[1] = r[1], r[0]
			return string(r)
		}
	case 1: // chatty
		return "The answer is " + it.Answer
	case 2: // repeats itself at the tail
		return it.Answer + " " + it.Answer + " " + it.Answer
	case 3: // the question's first word
		return strings.Fields(it.UserText())[0]
	}
	return strings.ToLower(it.Answer) + "."
}

// Corpus returns the pre-training text of the base model: free text about the task domain,
// and chat transcripts of which a share carry mistakes, so the model knows the format and
// the domain without reliably following instructions. Each string is one document; chat
// documents are rendered by the caller's template via the Transcripts result.
type Corpus struct {
	Texts       []string
	Transcripts [][]Message
}

// BuildCorpus generates the pre-training corpus deterministically. mistakeRate is the share
// of transcripts whose answer is wrong or badly formatted.
func BuildCorpus(seed uint64, docs int, mistakeRate float64) Corpus {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	var c Corpus
	words := strings.Fields(wordList)
	for i := 0; i < docs; i++ {
		a, b := rng.IntN(100), rng.IntN(100)
		w := words[rng.IntN(len(words))]
		order := "not larger"
		if a > b {
			order = "larger"
		}
		c.Texts = append(c.Texts, fmt.Sprintf(
			"%d plus %d is %d. The word %s has %d letters. In capitals it is %s. %d is %s than %d.",
			a, b, a+b, w, len(w), strings.ToUpper(w), a, order, b))
	}
	items := Generate(seed^0xbeef, Train, docs)
	for _, it := range items {
		ans := it.Answer
		if rng.Float64() < mistakeRate {
			ans = Mistake(rng, it)
		}
		c.Transcripts = append(c.Transcripts, it.Conversation(ans))
	}
	return c
}
