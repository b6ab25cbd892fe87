// Package evaluation measures a policy (and a reward model) on the bundled task's
// held-out prompts: exact-match accuracy overall and per capability, format compliance
// (ends with end-of-turn, no tail repetition, no abrupt stop at the length limit), mean
// response length, the win rate against the previous round's model by ground truth, and
// a reward model's accuracy on held-out preference pairs. Results are flat name -> value
// maps that fit the datastore's metrics table.
package evaluation

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/posttrain/posttrain/datasets"
	"github.com/posttrain/posttrain/demotask"
	"github.com/posttrain/posttrain/inference"
	"github.com/posttrain/posttrain/reward"
	"github.com/posttrain/posttrain/tokenizer"
	"github.com/posttrain/posttrain/transformer"
)

// Metric names. Per-capability accuracies are AccuracyPrefix + family, e.g. "accuracy_add".
const (
	Accuracy         = "accuracy"
	AccuracyPrefix   = "accuracy_"
	FormatCompliance = "format_compliance"
	EndsWithEOT      = "ends_with_eot"
	TailRepetition   = "tail_repetition"
	Truncated        = "truncated"
	MeanLength       = "mean_length"
	MeanTokens       = "mean_tokens"
	WinRate          = "win_rate"
	Prompts          = "prompts"
	RMAccuracy       = "rm_accuracy"
	RMLoss           = "rm_loss"
	RMMargin         = "rm_margin"
	RMPairs          = "rm_pairs"
)

// DefaultMaxNewTokens bounds a greedy answer when Options leave it unset.
const DefaultMaxNewTokens = 24

// Options tune Run.
type Options struct {
	// MaxNewTokens bounds each answer (0: DefaultMaxNewTokens); an answer that reaches it
	// without a stop token counts as an abrupt stop.
	MaxNewTokens int
	// MaxBatch is the most answers decoded together (0: the engine's default).
	MaxBatch int
	// Previous are the previous model's responses to the same items, in order; when set,
	// the report carries WinRate (ties count one half).
	Previous []string
	// Progress, when set, is called as answers finish with (done, total).
	Progress func(done, total int)
}

// Response is a model's greedy answer to one item.
type Response struct {
	ItemID string          `json:"item_id"`
	Family demotask.Family `json:"family"`
	Text   string          `json:"text"`
	// Tokens is the answer's length in tokens, stop token excluded.
	Tokens int `json:"tokens"`
	// Stop says how decoding ended: StopEOT, StopOther (another stop token, such as
	// end-of-text) or StopLength (the token budget ran out).
	Stop Stop `json:"stop"`
}

// Stop is how an answer's decoding ended.
type Stop string

// The ways an answer ends.
const (
	StopEOT    Stop = "eot"
	StopOther  Stop = "other"
	StopLength Stop = "length"
)

// Report is the result of Run: every answer and the metrics.
type Report struct {
	Responses []Response         `json:"responses"`
	Metrics   map[string]float64 `json:"metrics"`
}

// Texts are the responses' texts in item order (the Previous of the next evaluation).
func (r Report) Texts() []string {
	out := make([]string, len(r.Responses))
	for i, x := range r.Responses {
		out[i] = x.Text
	}
	return out
}

// Run answers every item greedily with the causal LM m and scores the answers against
// the ground truth. Prompts are rendered with tok's Llama 3 chat template; decoding stops
// at end-of-turn or end-of-text.
func Run(ctx context.Context, m *transformer.Model, tok *tokenizer.Tokenizer, items []demotask.Item, opts Options) (Report, error) {
	if m == nil || tok == nil {
		return Report{}, errors.New("evaluation: a model and a tokenizer are required")
	}
	if len(items) == 0 {
		return Report{}, errors.New("evaluation: no items to evaluate")
	}
	if opts.Previous != nil && len(opts.Previous) != len(items) {
		return Report{}, fmt.Errorf("evaluation: %d previous responses for %d items", len(opts.Previous), len(items))
	}
	maxNew := opts.MaxNewTokens
	if maxNew <= 0 {
		maxNew = DefaultMaxNewTokens
	}
	eot := tok.EOT()
	stops := tok.StopIDs()
	if eot < 0 || len(stops) == 0 {
		return Report{}, errors.New("evaluation: the tokenizer has no end-of-turn token; the chat template needs <|eot_id|>")
	}
	reqs := make([]inference.Request, len(items))
	for i, it := range items {
		ids, err := tok.RenderPrompt(toTokenizer(it.Prompt))
		if err != nil {
			return Report{}, fmt.Errorf("evaluation: item %s: %w", it.ID, err)
		}
		mx := min(maxNew, m.Config.MaxPositionEmbeddings-len(ids))
		if mx <= 0 {
			return Report{}, fmt.Errorf("evaluation: item %s: prompt of %d tokens leaves no room in the context window of %d", it.ID, len(ids), m.Config.MaxPositionEmbeddings)
		}
		reqs[i] = inference.Request{Prompt: ids, Samples: 1, Params: inference.Params{MaxNewTokens: mx, Greedy: true, StopTokens: stops}}
	}
	eng, err := inference.NewEngine(m, inference.Options{MaxBatch: opts.MaxBatch})
	if err != nil {
		return Report{}, fmt.Errorf("evaluation: %w", err)
	}
	outs, err := eng.GenerateBatch(ctx, reqs, opts.Progress)
	if err != nil {
		return Report{}, fmt.Errorf("evaluation: generate: %w", err)
	}
	rep := Report{Responses: make([]Response, len(items))}
	for i, o := range outs {
		c := o[0]
		toks, stop := c.Tokens, StopLength
		if c.FinishReason == inference.FinishStop && len(toks) > 0 {
			stop = StopOther
			if toks[len(toks)-1] == eot {
				stop = StopEOT
			}
			toks = toks[:len(toks)-1]
		}
		rep.Responses[i] = Response{ItemID: items[i].ID, Family: items[i].Family, Text: tok.Decode(toks), Tokens: len(toks), Stop: stop}
	}
	rep.Metrics, err = Score(items, rep.Responses, opts.Previous)
	if err != nil {
		return Report{}, err
	}
	return rep, nil
}

func toTokenizer(msgs []demotask.Message) []tokenizer.Message {
	out := make([]tokenizer.Message, len(msgs))
	for i, m := range msgs {
		out[i] = tokenizer.Message{Role: m.Role, Content: m.Content}
	}
	return out
}

// Compliant reports whether an answer is well formatted: it ended with end-of-turn, is
// not empty, and does not repeat itself at the tail.
func Compliant(r Response) bool {
	return r.Stop == StopEOT && strings.TrimSpace(r.Text) != "" && !demotask.HasTailRepetition(r.Text)
}

// Score computes the metrics of responses to items (same order). previous, when not
// nil, are another model's responses to the same items, for WinRate.
func Score(items []demotask.Item, responses []Response, previous []string) (map[string]float64, error) {
	if len(items) != len(responses) {
		return nil, fmt.Errorf("evaluation: %d responses for %d items", len(responses), len(items))
	}
	if len(items) == 0 {
		return nil, errors.New("evaluation: no items to score")
	}
	n := float64(len(items))
	var correct, formatted, eot, rep, trunc, chars, toks float64
	perFam := map[demotask.Family]*[2]float64{}
	for i, it := range items {
		r := responses[i]
		f := perFam[it.Family]
		if f == nil {
			f = &[2]float64{}
			perFam[it.Family] = f
		}
		f[1]++
		if it.Correct(r.Text) {
			correct++
			f[0]++
		}
		if Compliant(r) {
			formatted++
		}
		if r.Stop == StopEOT {
			eot++
		}
		if demotask.HasTailRepetition(r.Text) {
			rep++
		}
		if r.Stop == StopLength {
			trunc++
		}
		chars += float64(len([]rune(r.Text)))
		toks += float64(r.Tokens)
	}
	out := map[string]float64{
		Prompts: n, Accuracy: correct / n, FormatCompliance: formatted / n, EndsWithEOT: eot / n,
		TailRepetition: rep / n, Truncated: trunc / n, MeanLength: chars / n, MeanTokens: toks / n,
	}
	for fam, f := range perFam {
		out[AccuracyPrefix+string(fam)] = f[0] / f[1]
	}
	if previous != nil {
		texts := make([]string, len(responses))
		for i, r := range responses {
			texts[i] = r.Text
		}
		w, err := Wins(items, texts, previous)
		if err != nil {
			return nil, err
		}
		out[WinRate] = w
	}
	return out, nil
}

// Wins is the win rate of current over previous by ground truth: a right answer beats a
// wrong one, and two right or two wrong answers tie (one half).
func Wins(items []demotask.Item, current, previous []string) (float64, error) {
	if len(current) != len(items) || len(previous) != len(items) {
		return 0, fmt.Errorf("evaluation: win rate needs one current and one previous response per item (%d items, %d current, %d previous)", len(items), len(current), len(previous))
	}
	if len(items) == 0 {
		return 0, errors.New("evaluation: win rate of no items")
	}
	var w float64
	for i, it := range items {
		a, b := it.Correct(current[i]), it.Correct(previous[i])
		switch {
		case a && !b:
			w++
		case a == b:
			w += 0.5
		}
	}
	return w / float64(len(items)), nil
}

// Pair is a held-out preference on a task item: Chosen (and, when set, Edited above it)
// preferred over Rejected.
type Pair struct {
	Item demotask.Item
	Pref demotask.Preference
}

// RewardModel measures a reward model (a sequence classifier) on held-out pairs with
// reward.Evaluate: RMAccuracy (share of pairs scored in the right order), RMLoss (mean
// Bradley-Terry loss), RMMargin and RMPairs. Every pair is evaluated, however similar its
// responses. maxLen bounds prompt + response tokens (0: the model's context window).
func RewardModel(ctx context.Context, rm *transformer.Model, tok *tokenizer.Tokenizer, pairs []Pair, maxLen int) (map[string]float64, error) {
	if rm == nil || tok == nil {
		return nil, errors.New("evaluation: reward model: a model and a tokenizer are required")
	}
	if len(pairs) == 0 {
		return nil, errors.New("evaluation: reward model: no held-out pairs")
	}
	if maxLen <= 0 {
		maxLen = rm.Config.MaxPositionEmbeddings
	}
	enc := &datasets.Encoder{Tok: tok, Formatting: tok.FormattingTokenIDs(), MaxLen: maxLen}
	rows := make([]datasets.EncodedPreference, len(pairs))
	for i, p := range pairs {
		row := datasets.Preference{
			ID:       p.Item.ID,
			Prompt:   datasets.Text{Messages: toTokenizer(p.Item.Prompt), Form: datasets.FormMessages},
			Chosen:   datasets.Text{String: p.Pref.Chosen, Form: datasets.FormString},
			Rejected: datasets.Text{String: p.Pref.Rejected, Form: datasets.FormString},
			Rating:   string(p.Pref.Rating),
			Line:     i + 1,
		}
		if p.Pref.Edited != "" {
			row.Edited = datasets.Text{String: p.Pref.Edited, Form: datasets.FormString}
		}
		e, err := enc.EncodePreference(row)
		if err != nil {
			return nil, fmt.Errorf("evaluation: reward model: pair %d (item %s): %w", i, p.Item.ID, err)
		}
		rows[i] = e
	}
	opts := reward.DefaultEvalOptions()
	opts.SimilarityThreshold = 0
	res, _, err := reward.Evaluate(ctx, rm, rows, opts)
	if err != nil {
		return nil, fmt.Errorf("evaluation: reward model: %w", err)
	}
	return map[string]float64{RMAccuracy: res.Accuracy, RMLoss: res.Loss, RMMargin: res.MeanMargin, RMPairs: float64(res.N)}, nil
}
