package averaging

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
)

// Direction says which way a held-out score improves.
type Direction int

// The score directions.
const (
	// HigherIsBetter: accuracies (reward-model pair accuracy, DPO reward accuracy).
	HigherIsBetter Direction = iota + 1
	// LowerIsBetter: losses (SFT validation loss).
	LowerIsBetter
)

// String names the direction.
func (d Direction) String() string {
	switch d {
	case HigherIsBetter:
		return "higher-is-better"
	case LowerIsBetter:
		return "lower-is-better"
	}
	return fmt.Sprintf("Direction(%d)", int(d))
}

// better reports whether a is strictly better than b.
func (d Direction) better(a, b float64) bool {
	if d == LowerIsBetter {
		return a < b
	}
	return a > b
}

// ScoreFunc measures a model directory on held-out data (the stage's own metric).
type ScoreFunc func(ctx context.Context, modelDir string) (float64, error)

// GreedyOptions configure Greedy.
type GreedyOptions struct {
	Options
	// Score is the held-out metric; Direction says which way it improves. Both required.
	Score     ScoreFunc
	Direction Direction // which way Score improves
	// OnStep, when set, is called after each candidate is tried.
	OnStep func(GreedyStep)
}

// GreedyStep is one candidate's fate.
type GreedyStep struct {
	Candidate string `json:"candidate"` // the model directory
	// Score is the candidate's own score; SoupScore that of the soup with it added
	// (equal to Score for the first, best, candidate).
	Score     float64 `json:"score"`
	SoupScore float64 `json:"soup_score"`
	Kept      bool    `json:"kept"` // whether the candidate joined the soup
}

// GreedyResult describes a greedy soup.
type GreedyResult struct {
	Result
	Direction   string       `json:"direction"`   // the score direction used
	Ingredients []string     `json:"ingredients"` // the kept candidates, in order added
	Steps       []GreedyStep `json:"steps"`       // every candidate's fate, best first
	// Score is the final soup's score.
	Score float64 `json:"score"`
}

// Greedy builds a greedy soup (Wortsman et al. 2022, recipe 1): every candidate is scored
// alone and they are sorted best first (ties keep input order); the soup starts as the
// best, and each next candidate is added to the running uniform soup and kept only if
// the soup's score does not get worse (ties are kept). Each trial soup is written into
// a temporary directory beside out, scored and removed; the final soup (a copy in F32
// when only the best candidate is kept) is then written to out.
func Greedy(ctx context.Context, out string, candidates []string, opts GreedyOptions) (*GreedyResult, error) {
	if opts.Score == nil {
		return nil, errors.New("averaging: greedy soup needs a score function")
	}
	if opts.Direction != HigherIsBetter && opts.Direction != LowerIsBetter {
		return nil, errors.New("averaging: greedy soup needs a score direction (higher-is-better or lower-is-better)")
	}
	if err := Check(candidates); err != nil {
		return nil, err
	}
	if _, err := checkOut(out, opts.Overwrite); err != nil {
		return nil, err
	}
	score := func(dir string) (float64, error) {
		s, err := opts.Score(ctx, dir)
		if err != nil {
			return 0, fmt.Errorf("averaging: score %s: %w", dir, err)
		}
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return 0, fmt.Errorf("averaging: score %s is %v", dir, s)
		}
		return s, nil
	}
	own := make([]float64, len(candidates))
	for i, c := range candidates {
		var err error
		if own[i], err = score(c); err != nil {
			return nil, err
		}
	}
	order := make([]int, len(candidates))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return opts.Direction.better(own[order[a]], own[order[b]]) })

	parent := filepath.Dir(filepath.Clean(out))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("averaging: %w", err)
	}
	work, err := os.MkdirTemp(parent, "."+filepath.Base(out)+".greedy-")
	if err != nil {
		return nil, fmt.Errorf("averaging: %w", err)
	}
	defer os.RemoveAll(work)

	best := candidates[order[0]]
	res := &GreedyResult{Direction: opts.Direction.String(), Ingredients: []string{best}, Score: own[order[0]]}
	res.Steps = append(res.Steps, GreedyStep{Candidate: best, Score: own[order[0]], SoupScore: own[order[0]], Kept: true})
	if opts.OnStep != nil {
		opts.OnStep(res.Steps[0])
	}
	for n, i := range order[1:] {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("averaging: %w", err)
		}
		c := candidates[i]
		trial := filepath.Join(work, fmt.Sprintf("trial-%d", n+1))
		if _, err := Uniform(ctx, trial, append(append([]string{}, res.Ingredients...), c), Options{}); err != nil {
			return nil, err
		}
		s, err := score(trial)
		if err != nil {
			return nil, err
		}
		os.RemoveAll(trial)
		step := GreedyStep{Candidate: c, Score: own[i], SoupScore: s, Kept: !opts.Direction.better(res.Score, s)}
		if step.Kept {
			res.Ingredients = append(res.Ingredients, c)
			res.Score = s
		}
		res.Steps = append(res.Steps, step)
		if opts.OnStep != nil {
			opts.OnStep(step)
		}
	}
	// The final soup is computed once more into out (trial soups are not kept, so the
	// work directory stays at one model), with the caller's progress and overwrite.
	final, err := average(ctx, out, res.Ingredients, nil, MethodGreedy, opts.Options)
	if err != nil {
		return nil, err
	}
	res.Result = *final
	res.Method = MethodGreedy
	return res, nil
}
