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

// MistakeKind names one way a base model gets an instruction wrong.
type MistakeKind int

// The mistake kinds. Each family has a dominant one (DominantMistake), the habit the base
// model picks up from its corpus; the others occur at random.
const (
	NearMiss     MistakeKind = iota // off by one, or two letters swapped
	Chatty                          // "The answer is 42": right content, wrong format
	Repeated                        // "5 5 5": repeats itself at the tail
	EchoQuestion                    // the question's first word
	Careless                        // lower case with a full stop
	NoFormat                        // the bare answer where a format was required
	numMistakeKinds
)

// DominantMistake is the family's habitual mistake in the pre-training corpus.
func DominantMistake(f Family) MistakeKind {
	switch f {
	case Add, Compare:
		return Chatty
	case Subtract, Reverse:
		return NearMiss
	case Count:
		return Repeated
	case Sort, Upper:
		return Careless
	case Format:
		return NoFormat
	}
	return Chatty
}

// Mistake returns a plausible wrong or badly formatted response to the item, of a random
// kind: the kind of answer a base model gives before post-training.
func Mistake(rng *rand.Rand, it Item) string {
	return MistakeOf(MistakeKind(rng.IntN(int(numMistakeKinds))), rng, it)
}

// MistakeOf returns a wrong response of the given kind (another kind when that one cannot
// make the item's answer wrong).
func MistakeOf(kind MistakeKind, rng *rand.Rand, it Item) string {
	switch kind {
	case NearMiss:
		if n, err := strconv.Atoi(it.Answer); err == nil {
			return strconv.Itoa(n + 1 - 2*rng.IntN(2))
		}
		if r := []rune(it.Answer); len(r) > 1 && r[0] != r[1] {
			r[0], r[1] = r[1], r[0]
			return string(r)
		}
	case Chatty:
		return "The answer is " + it.Answer
	case Repeated:
		return it.Answer + " " + it.Answer + " " + it.Answer
	case EchoQuestion:
		return strings.Fields(it.UserText())[0]
	case NoFormat:
		if bare, ok := strings.CutPrefix(it.Answer, "Answer: "); ok {
			return bare
		}
		return "The answer is " + it.Answer
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

// fact states one arithmetic item's ground truth as free text, in the words of the
// domain rather than as the instruction: the corpus teaches the knowledge, never the
// prompt.
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

// wordFacts are free-text facts about one word: three of its spelling, length,
// reversal, sorted letters and capitals.
func wordFacts(rng *rand.Rand, w string) string {
	r := []rune(w)
	slices.Reverse(r)
	s := []rune(w)
	slices.Sort(s)
	facts := []string{
		fmt.Sprintf("The word %s is spelled %s.", w, spell(w)),
		fmt.Sprintf("The word %s has %d letters.", w, len(w)),
		fmt.Sprintf("Backwards, %s is %s.", w, string(r)),
		fmt.Sprintf("In alphabetical order the letters of %s are %s.", w, string(s)),
		fmt.Sprintf("In capitals %s is %s.", w, strings.ToUpper(w)),
	}
	rng.Shuffle(len(facts), func(i, j int) { facts[i], facts[j] = facts[j], facts[i] })
	return strings.Join(facts[:3], " ")
}

// BuildCorpus generates the pre-training corpus deterministically: docs free-text
// documents and docs transcripts. The free text states facts of the whole domain, held-out
// items' included (domain knowledge, as a real pre-training corpus would have it); the
// transcripts are of training-split instructions only, so no held-out prompt appears.
// mistakeRate is the share of transcripts with a wrong or badly formatted answer; 70% of
// those make the family's dominant mistake, so the base model answers in that habit more
// often than correctly while the right answer stays in reach.
func BuildCorpus(seed uint64, docs int, mistakeRate float64) Corpus {
	rng := rand.New(rand.NewPCG(seed, 0xc0ffee))
	var c Corpus
	words := strings.Fields(wordList)
	fams := []Family{Add, Subtract, Compare}
	for i := 0; i < docs; i++ {
		var parts []string
		for len(parts) < 3 {
			fam := fams[rng.IntN(len(fams))]
			user, answer := makeItem(rng, words, fam)
			if f := fact(Item{Family: fam, Prompt: []Message{{Role: "user", Content: user}}, Answer: answer}); f != "" {
				parts = append(parts, f)
			}
		}
		parts = append(parts, wordFacts(rng, words[rng.IntN(len(words))]))
		rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		c.Texts = append(c.Texts, strings.Join(parts, " "))
	}
	items := Generate(seed^0xbeef, Train, docs)
	for _, it := range items {
		ans := it.Answer
		if rng.Float64() < mistakeRate {
			if rng.Float64() < 0.7 {
				ans = MistakeOf(DominantMistake(it.Family), rng, it)
			} else {
				ans = Mistake(rng, it)
			}
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
