package sampling

import (
	"math"
	"slices"
	"sort"
)

// Candidate is one sample of one prompt with its reward.
type Candidate struct {
	PromptID    string `json:"prompt_id"`
	PromptIndex int    `json:"prompt_index"`
	SampleIndex int    `json:"sample_index"`
	// Tokens are the generated ids, ending with the stop token when FinishReason is
	// "stop".
	Tokens []int32 `json:"token_ids"`
	// Text is the completion decoded without its final stop token (when a tokenizer
	// was given).
	Text         string  `json:"text,omitempty"`
	Reward       float64 `json:"reward"`
	FinishReason string  `json:"finish_reason"`
	// Duplicate marks a completion identical to an earlier sample of the same prompt
	// (set only when Selection.Dedup is on).
	Duplicate bool `json:"duplicate,omitempty"`
	// Verified is the verifier's verdict (Options.Verifier): nil when the candidate was
	// not checked, false when it failed and so could not be selected.
	Verified *bool `json:"verified,omitempty"`
	Selected bool  `json:"selected"`
	// Rank is the selection rank (1 = best) of a selected candidate, else 0.
	Rank int `json:"rank,omitempty"`
}

// Finish reasons.
const (
	FinishStop   = "stop"   // a stop token was drawn
	FinishLength = "length" // MaxNewTokens were generated
)

// Selection chooses which candidates of a prompt are kept.
type Selection struct {
	// TopN keeps the N highest rewards (default 1: best-of-K).
	TopN int `json:"top_n"`
	// MinReward, when set, drops candidates whose reward is below it, so a prompt whose
	// samples are all bad contributes nothing.
	MinReward *float64 `json:"min_reward,omitempty"`
	// Dedup counts identical completions (same token ids) once: only the first sample
	// of each distinct completion is eligible, so TopN picks distinct completions.
	Dedup bool `json:"dedup,omitempty"`
	// KeepTruncated makes completions cut at MaxNewTokens eligible. Off by default: a
	// truncated answer trained on as if complete teaches the model to stop mid-answer.
	KeepTruncated bool `json:"keep_truncated,omitempty"`
}

// Select marks the selected candidates of one prompt in place (Selected, Rank, and
// Duplicate when deduplicating) and returns how many were selected. Ties in reward go to
// the lower sample index, so selection is deterministic.
func Select(cands []Candidate, sel Selection) int {
	topN := sel.TopN
	if topN <= 0 {
		topN = 1
	}
	seen := make(map[string]bool, len(cands))
	var pool []int
	for i := range cands {
		c := &cands[i]
		c.Selected, c.Rank, c.Duplicate = false, 0, false
		if sel.Dedup {
			key := tokensKey(c.Tokens)
			if seen[key] {
				c.Duplicate = true
				continue
			}
			seen[key] = true
		}
		if c.Verified != nil && !*c.Verified {
			continue // the ground truth says it is wrong: no reward can make it a target
		}
		if !sel.KeepTruncated && c.FinishReason != FinishStop {
			continue
		}
		if len(c.Tokens) == 0 || (c.FinishReason == FinishStop && len(c.Tokens) == 1) {
			continue // an empty answer (only the stop token) is never a useful target
		}
		if math.IsNaN(c.Reward) || (sel.MinReward != nil && c.Reward < *sel.MinReward) {
			continue
		}
		pool = append(pool, i)
	}
	sort.SliceStable(pool, func(a, b int) bool {
		ca, cb := &cands[pool[a]], &cands[pool[b]]
		if ca.Reward != cb.Reward {
			return ca.Reward > cb.Reward
		}
		return ca.SampleIndex < cb.SampleIndex
	})
	pool = pool[:min(topN, len(pool))]
	for r, i := range pool {
		cands[i].Selected, cands[i].Rank = true, r+1
	}
	return len(pool)
}

// tokensKey is a map key holding the token ids' bytes.
func tokensKey(ids []int32) string {
	b := make([]byte, 0, 4*len(ids))
	for _, t := range ids {
		b = append(b, byte(t), byte(t>>8), byte(t>>16), byte(t>>24))
	}
	return string(b)
}

// Selected returns the selected candidates of cands, best first within each prompt,
// prompts in input order.
func Selected(cands []Candidate) []Candidate {
	var out []Candidate
	for _, c := range cands {
		if c.Selected {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b Candidate) int {
		if a.PromptIndex != b.PromptIndex {
			return a.PromptIndex - b.PromptIndex
		}
		return a.Rank - b.Rank
	})
	return out
}
