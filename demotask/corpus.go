package demotask

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
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
		if r := []rune(it.Answer); len(r) > 1 && r[0] != r[1] {
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

// Corpus is the pre-training text of the base model: free text about the task domain
// (Texts), and chat transcripts of which a share carry mistakes (Transcripts), so the
// model knows the domain and the chat format without reliably following instructions.
type Corpus struct {
	Texts       []string
	Transcripts [][]Message
}

// fact states one item's ground truth as free text, in the words of the domain rather
// than as the instruction, so the corpus teaches the skill without the prompt.
func fact(it Item) string {
	u := it.UserText()
	switch it.Family {
	case Add, Format:
		var a, b int
		if _, err := fmt.Sscanf(strings.TrimPrefix(u, "Reply as Answer: N. "), "What is %d + %d?", &a, &b); err == nil {
			return fmt.Sprintf("%d plus %d is %d.", a, b, a+b)
		}
	case Subtract:
		var a, b int
		if _, err := fmt.Sscanf(u, "What is %d - %d?", &a, &b); err == nil {
			return fmt.Sprintf("%d minus %d is %d.", a, b, a-b)
		}
	case Compare:
		var a, b int
		if _, err := fmt.Sscanf(u, "Which is larger, %d or %d?", &a, &b); err == nil {
			return fmt.Sprintf("Of %d and %d the larger is %s.", a, b, it.Answer)
		}
	}
	return ""
}

// spell writes a word letter by letter, which is what the letter tasks need to know.
func spell(w string) string { return strings.Join(strings.Split(w, ""), " ") }

// wordFacts are free-text facts about one word: its spelling, and of its length,
// reversal, sorted letters and capitals those whose instruction is in the training split
// (a held-out prompt's answer never appears in the corpus).
func wordFacts(rng *rand.Rand, w string) string {
	r := []rune(w)
	slices.Reverse(r)
	s := []rune(w)
	slices.Sort(s)
	facts := []string{fmt.Sprintf("The word %s is spelled %s.", w, spell(w))}
	for _, f := range []struct{ prompt, fact string }{
		{fmt.Sprintf("How many letters are in %s?", w), fmt.Sprintf("The word %s has %d letters.", w, len(w))},
		{fmt.Sprintf("Reverse the word %s.", w), fmt.Sprintf("Backwards, %s is %s.", w, string(r))},
		{fmt.Sprintf("Sort the letters of %s.", w), fmt.Sprintf("In alphabetical order the letters of %s are %s.", w, string(s))},
		{fmt.Sprintf("Write %s in capital letters.", w), fmt.Sprintf("In capitals %s is %s.", w, strings.ToUpper(w))},
	} {
		if maskSplit(f.prompt) == Train {
			facts = append(facts, f.fact)
		}
	}
	rng.Shuffle(len(facts), func(i, j int) { facts[i], facts[j] = facts[j], facts[i] })
	return strings.Join(facts[:min(3, len(facts))], " ")
}

// BuildCorpus generates the pre-training corpus deterministically: docs free-text
// documents and docs transcripts. mistakeRate is the share of transcripts whose answer is
// wrong or badly formatted. Only training-split items are used, so no held-out prompt or
// its answer appears in the corpus.
func BuildCorpus(seed uint64, docs int, mistakeRate float64) Corpus {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	var c Corpus
	words := strings.Fields(wordList)
	facts := Generate(seed^0xfac7, Train, 2*docs)
	next := 0
	for i := 0; i < docs; i++ {
		var parts []string
		for len(parts) < 3 && next < len(facts) {
			if f := fact(facts[next]); f != "" {
				parts = append(parts, f)
			}
			next++
		}
		parts = append(parts, wordFacts(rng, words[rng.IntN(len(words))]))
		rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		c.Texts = append(c.Texts, strings.Join(parts, " "))
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

// Corpus file names written by WriteCorpus.
const (
	// TextFile holds the free text, one {"text": ...} object per line: the input of
	// `posttrain pretrain` and `posttrain tokenizer train`.
	TextFile = "text.jsonl"
	// ChatFile holds the transcripts, one {"messages": [...]} object per line: the input of
	// `posttrain sft train` (chat-format training) and `posttrain tokenizer train`.
	ChatFile = "chats.jsonl"
)

// WriteCorpus writes the corpus into dir (created if missing) as TextFile and ChatFile and
// returns their paths.
func WriteCorpus(dir string, c Corpus) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("corpus: %w", err)
	}
	text := make([]any, len(c.Texts))
	for i, t := range c.Texts {
		text[i] = map[string]string{"text": t}
	}
	chats := make([]any, len(c.Transcripts))
	for i, m := range c.Transcripts {
		chats[i] = map[string][]Message{"messages": m}
	}
	var paths []string
	for _, f := range []struct {
		name string
		rows []any
	}{{TextFile, text}, {ChatFile, chats}} {
		p := filepath.Join(dir, f.name)
		if err := writeJSONL(p, f.rows); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	return paths, nil
}

func writeJSONL(path string, rows []any) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("corpus: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("corpus: %w", cerr)
		}
	}()
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for i, r := range rows {
		if err := enc.Encode(r); err != nil {
			return fmt.Errorf("corpus: %s row %d: %w", path, i+1, err)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("corpus: %s: %w", path, err)
	}
	return nil
}
