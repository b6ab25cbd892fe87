// Package demotask is the bundled task of `posttrain demo`: small instructions with a
// verifiable ground truth, in several capability families, rendered as chat messages. It is
// a stand-in for the paper's capabilities that a tiny model can learn on a CPU in minutes,
// and it is generated deterministically from a seed. The package also holds the simulated
// annotator, the curated SFT seed data and the pre-training corpus for the base model.
package demotask

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
)

// Family names one capability.
type Family string

// The capability families.
const (
	Add      Family = "add"
	Subtract Family = "subtract"
	Compare  Family = "compare"
	Reverse  Family = "reverse"
	Sort     Family = "sort"
	Count    Family = "count"
	Upper    Family = "upper"
	Format   Family = "format"
)

// Families lists every family in a fixed order.
func Families() []Family {
	return []Family{Add, Subtract, Compare, Reverse, Sort, Count, Upper, Format}
}

// Split says whether a prompt is for training or held-out evaluation.
type Split string

// The two splits. A prompt's split is a function of its text, so no evaluation prompt can
// ever be generated for training.
const (
	Train Split = "train"
	Eval  Split = "eval"
)

// Message is one chat turn, in the JSON shape TRL users know.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Item is one instruction with its ground truth.
type Item struct {
	ID     string    `json:"id"`
	Family Family    `json:"family"`
	Split  Split     `json:"split"`
	Prompt []Message `json:"prompt"`
	// Answer is the correct, well-formatted response, exactly.
	Answer string `json:"answer"`
}

// UserText is the text of the item's user turn.
func (it Item) UserText() string {
	for _, m := range it.Prompt {
		if m.Role == "user" {
			return m.Content
		}
	}
	return ""
}

// Correct reports whether a response is right for the item. It ignores surrounding white
// space only: the task rewards exact answers.
func (it Item) Correct(response string) bool {
	return strings.TrimSpace(response) == it.Answer
}

// wordList is the small vocabulary of the letter tasks: short, common, distinct words.
const wordList = "cat dog sun map pen cup box hat red sky tree fish bird rain star moon lamp rock milk door " +
	"apple house river chair bread light plant stone cloud water green table music paper sleep train smile grape horse lemon " +
	"ant bee cow fox owl pig rat bat bus car cab jam jar key leg lip mud net oak pot rug sea tea toy van web yak zoo " +
	"bell boat book cake coat corn desk drum duck farm fork frog gate gift goat hill kite leaf lion nest road rose sand " +
	"ship shoe snow sock song tent town wind wolf yard brick clock dance earth field flame glass grass heart juice knife " +
	"mouse night ocean piano queen radio robot salad sheep snake spoon storm sugar tiger tooth wheel world zebra"

// maskSplit puts about one prompt in eight into the evaluation split, by a hash of the text.
func maskSplit(text string) Split {
	h := fnv.New32a()
	h.Write([]byte(text))
	if h.Sum32()%8 == 0 {
		return Eval
	}
	return Train
}

// makeItem draws one item of the given family.
func makeItem(rng *rand.Rand, words []string, f Family) (user, answer string) {
	word := func() string { return words[rng.IntN(len(words))] }
	switch f {
	case Add:
		a, b := rng.IntN(50), rng.IntN(10)
		return fmt.Sprintf("What is %d + %d?", a, b), strconv.Itoa(a + b)
	case Subtract:
		a := 10 + rng.IntN(50)
		b := rng.IntN(10)
		return fmt.Sprintf("What is %d - %d?", a, b), strconv.Itoa(a - b)
	case Compare:
		a, b := rng.IntN(100), rng.IntN(100)
		for b == a {
			b = rng.IntN(100)
		}
		return fmt.Sprintf("Which is larger, %d or %d?", a, b), strconv.Itoa(max(a, b))
	case Reverse:
		w := word()
		r := []rune(w)
		slices.Reverse(r)
		return fmt.Sprintf("Reverse the word %s.", w), string(r)
	case Sort:
		w := word()
		r := []rune(w)
		slices.Sort(r)
		return fmt.Sprintf("Sort the letters of %s.", w), string(r)
	case Count:
		w := word()
		return fmt.Sprintf("How many letters are in %s?", w), strconv.Itoa(len(w))
	case Upper:
		w := word()
		return fmt.Sprintf("Write %s in capital letters.", w), strings.ToUpper(w)
	case Format:
		a, b := rng.IntN(10), rng.IntN(10)
		return fmt.Sprintf("Reply as Answer: N. What is %d + %d?", a, b), fmt.Sprintf("Answer: %d", a+b)
	}
	return "", ""
}

// Generate returns n distinct items of the split, cycling through the families, drawn
// deterministically from seed. It returns fewer than n only if every family's prompt space
// runs out.
func Generate(seed uint64, split Split, n int) []Item {
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	fams := Families()
	words := strings.Fields(wordList)
	seen := make(map[string]bool, n)
	items := make([]Item, 0, n)
	misses := make([]int, len(fams))
	// Families are taken in turn; one whose prompt space is used up (many draws in a row
	// give only duplicates) drops out, so large n still terminates.
	const giveUp = 2000
	for turn := 0; len(items) < n; turn++ {
		fi := turn % len(fams)
		if misses[fi] >= giveUp {
			if slices.Min(misses) >= giveUp {
				break
			}
			continue
		}
		f := fams[fi]
		user, answer := makeItem(rng, words, f)
		if seen[user] || maskSplit(user) != split {
			misses[fi]++
			turn--
			continue
		}
		misses[fi] = 0
		seen[user] = true
		items = append(items, Item{
			ID:     fmt.Sprintf("%s-%s-%04d", split, f, len(items)),
			Family: f, Split: split,
			Prompt: []Message{{Role: "user", Content: user}},
			Answer: answer,
		})
	}
	return items
}

// Conversation is the item's prompt followed by the given assistant response.
func (it Item) Conversation(response string) []Message {
	msgs := slices.Clone(it.Prompt)
	return append(msgs, Message{Role: "assistant", Content: response})
}
