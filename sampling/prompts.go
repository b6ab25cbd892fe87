package sampling

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/tokenizer"
)

// Prompt is one prompt ready for sampling.
type Prompt struct {
	// ID identifies the prompt across runs, shards and resumes: the row's id, else a
	// content hash (with "-2", "-3", ... for repeated content). Seeds derive from it.
	ID string `json:"id"`
	// Index is the prompt's position in the full input list (not in a shard).
	Index int `json:"index"`
	// Line is the 1-based line in the prompts file (0 when not read from a file).
	Line int `json:"line,omitempty"`
	// Tokens are the prompt ids fed to the policy.
	Tokens []int32 `json:"prompt_ids"`
	// Source is the row as given, and System the system prompt the encoder added to it
	// ("" when none); both are kept to write SFT rows in the row's own form.
	Source datasets.Prompt `json:"-"`
	System string          `json:"system,omitempty"`
}

// name describes the prompt in errors.
func (p *Prompt) name() string {
	if p.Line > 0 {
		return fmt.Sprintf("prompt %q (line %d)", p.ID, p.Line)
	}
	return fmt.Sprintf("prompt %q (index %d)", p.ID, p.Index)
}

// ContentID is the content hash that identifies a prompt row without an id: the first 16
// hex digits of the SHA-256 of the row's canonical JSON.
func ContentID(row datasets.Prompt) string {
	r := row
	r.ID = ""
	b, _ := json.Marshal(r.Row()) // maps of strings, messages and ints always marshal
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// EncodePrompts turns rows into Prompts with enc. systems are the round's system
// prompts (may be empty): with one, every text prompt without its own system message
// gets it; with several, each prompt gets systems[hash(id) mod len], so the choice
// depends only on the prompt, never on sharding or order. Pre-tokenized prompts are
// used exactly as given. Errors name the row's line.
func EncodePrompts(rows []datasets.Prompt, enc datasets.Encoder, systems []string) ([]Prompt, error) {
	out := make([]Prompt, len(rows))
	seen := make(map[string]int, len(rows))
	explicit := make(map[string]int, len(rows))
	for i, row := range rows {
		where := rowName(row, i)
		id := row.ID
		if id != "" {
			if prev, dup := explicit[id]; dup {
				return nil, fmt.Errorf("%s: id %q repeats the id of %s", where, id, rowName(rows[prev], prev))
			}
			explicit[id] = i
		} else {
			id = ContentID(row)
			if n := seen[id]; n > 0 {
				seen[id] = n + 1
				id = fmt.Sprintf("%s-%d", id, n+1)
			} else {
				seen[id] = 1
			}
		}
		e := enc
		e.System = ""
		if len(systems) > 0 && row.Prompt.Form != datasets.FormIDs && !hasSystem(row.Prompt) {
			e.System = systems[pick(id, len(systems))]
		}
		ids, err := e.EncodePrompt(row.Prompt)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		if len(ids) == 0 {
			return nil, fmt.Errorf("%s: the prompt encodes to no tokens", where)
		}
		out[i] = Prompt{ID: id, Index: i, Line: row.Line, Tokens: ids, Source: row, System: e.System}
	}
	return out, nil
}

func rowName(row datasets.Prompt, i int) string {
	if row.Line > 0 {
		return fmt.Sprintf("prompt row at line %d", row.Line)
	}
	return fmt.Sprintf("prompt row %d", i)
}

func hasSystem(t datasets.Text) bool {
	return t.Form == datasets.FormMessages && len(t.Messages) > 0 && t.Messages[0].Role == tokenizer.SystemRole
}

// hash64 is FNV-1a of s.
func hash64(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

func pick(id string, n int) int { return int(hash64("system:"+id) % uint64(n)) }

// sampleSeed is the RNG seed of one prompt's samples: a mix of the run seed and the
// prompt id (the sample index is the RNG's second word), so a sample's tokens do not
// depend on which shard, batch or order it ran in.
func sampleSeed(runSeed uint64, promptID string) uint64 {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], runSeed)
	h := fnv.New64a()
	_, _ = h.Write(b[:])
	_, _ = h.Write([]byte(promptID))
	return splitmix(h.Sum64())
}

// splitmix is SplitMix64's finaliser, to spread nearby inputs over the whole state.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// Shard returns shard i of n of items: the contiguous block [i*len/n, (i+1)*len/n), so
// shards are balanced to one item, cover every item once, and depend only on the list.
// Running Sample on each shard gives exactly the candidates of one run over all items.
func Shard[T any](items []T, n, i int) ([]T, error) {
	if n < 1 {
		return nil, fmt.Errorf("shard: the shard count must be >= 1, got %d", n)
	}
	if i < 0 || i >= n {
		return nil, fmt.Errorf("shard: index %d is outside [0,%d)", i, n)
	}
	lo, hi := i*len(items)/n, (i+1)*len(items)/n
	return items[lo:hi], nil
}
