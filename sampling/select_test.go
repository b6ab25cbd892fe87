package sampling

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func cand(i int, reward float64, finish string, toks ...int32) Candidate {
	return Candidate{PromptID: "p", SampleIndex: i, Reward: reward, FinishReason: finish, Tokens: toks}
}

func selectedIdx(cs []Candidate) []int {
	out := []int{}
	for _, c := range Selected(cs) {
		out = append(out, c.SampleIndex)
	}
	return out
}

func TestSelect(t *testing.T) {
	minR := func(v float64) *float64 { return &v }
	// Hand-set rewards so each option is checked on its own. Sample 3 repeats sample
	// 1's completion (and, as a real reward model would, its reward).
	base := func() []Candidate {
		return []Candidate{
			cand(0, 0.5, FinishStop, 5, 9),
			cand(1, 2.0, FinishStop, 7, 9),
			cand(2, 1.0, FinishLength, 8, 8),
			cand(3, 2.0, FinishStop, 7, 9), // duplicate of 1, same reward: tie -> lower index
			cand(4, -1.0, FinishStop, 6, 9),
			cand(5, 3.0, FinishStop, 9), // only the stop token: never selected
		}
	}
	tests := []struct {
		name    string
		sel     Selection
		want    []int // selected sample indices, best first
		dupes   []int
		nSelect int
	}{
		{"best of K", Selection{}, []int{1}, nil, 1},
		{"top-3 without dedup keeps identical completions", Selection{TopN: 3}, []int{1, 3, 0}, nil, 3},
		{"top-3 with dedup", Selection{TopN: 3, Dedup: true}, []int{1, 0, 4}, []int{3}, 3},
		{"threshold", Selection{TopN: 10, MinReward: minR(0.5)}, []int{1, 3, 0}, nil, 3},
		{"threshold drops everything", Selection{TopN: 10, MinReward: minR(5)}, []int{}, nil, 0},
		{"truncated eligible on request", Selection{TopN: 3, KeepTruncated: true, Dedup: true}, []int{1, 2, 0}, []int{3}, 3},
		{"negative threshold keeps bad but eligible", Selection{TopN: 10, MinReward: minR(-2), Dedup: true}, []int{1, 0, 4}, []int{3}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := base()
			n := Select(cs, tc.sel)
			assert.Equal(t, tc.nSelect, n)
			assert.Equal(t, tc.want, selectedIdx(cs))
			var dupes []int
			for _, c := range cs {
				if c.Duplicate {
					dupes = append(dupes, c.SampleIndex)
				}
				if c.Selected {
					assert.Positive(t, c.Rank)
				} else {
					assert.Zero(t, c.Rank)
				}
			}
			assert.Equal(t, tc.dupes, dupes)
		})
	}
}

func TestSelectSkipsFailedVerdicts(t *testing.T) {
	pass, fail := true, false
	tests := []struct {
		name     string
		verdicts []*bool
		want     []int
	}{
		{"unchecked candidates rank by reward", []*bool{nil, nil, nil}, []int{2}},
		{"a failed best gives way to the next passing", []*bool{&pass, &pass, &fail}, []int{1}},
		{"only passing candidates are eligible", []*bool{&pass, &fail, &fail}, []int{0}},
		{"nothing passes: nothing selected", []*bool{&fail, &fail, &fail}, []int{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cs := []Candidate{cand(0, 0.1, FinishStop, 4, 9), cand(1, 0.5, FinishStop, 5, 9), cand(2, 0.9, FinishStop, 6, 9)}
			for i, v := range tc.verdicts {
				cs[i].Verified = v
			}
			assert.Equal(t, len(tc.want), Select(cs, Selection{}))
			assert.Equal(t, tc.want, selectedIdx(cs))
		})
	}
}

func TestSelectIsRepeatable(t *testing.T) {
	cs := []Candidate{cand(0, 1, FinishStop, 1, 2), cand(1, 2, FinishStop, 3, 2)}
	Select(cs, Selection{TopN: 2})
	Select(cs, Selection{TopN: 1})
	assert.Equal(t, []int{1}, selectedIdx(cs), "a second selection replaces the first")
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"1024", 1024}, {"64MiB", 64 << 20}, {"64mib", 64 << 20}, {"1.5GiB", 3 << 29}, {"500MB", 500e6}, {"2k", 2048}, {"10 B", 10},
	}
	for _, tc := range tests {
		got, err := ParseByteSize(tc.in)
		assert.NoError(t, err, tc.in)
		assert.Equal(t, tc.want, got, tc.in)
	}
	for _, bad := range []string{"", "-5", "abc", "0", "12XB", "NaN"} {
		_, err := ParseByteSize(bad)
		assert.Error(t, err, bad)
	}
	assert.Equal(t, "64.0 MiB", FormatBytes(64<<20))
	assert.Equal(t, "512 B", FormatBytes(512))
}
