package sampling

import (
	"fmt"
	"math"
	"time"

	"github.com/posttrain/posttrain/tokenizer"
)

// Defaults of Options.
const (
	// DefaultK is the samples per prompt (the recipe uses 10-30).
	DefaultK = 16
	// DefaultKVBudget bounds the KV cache of the prompts in flight.
	DefaultKVBudget int64 = 256 << 20
	// DefaultMaxBatch is the most sequences one decode step computes at once.
	DefaultMaxBatch = 64
)

// Options configure a rejection-sampling run. Zero values take the defaults above.
type Options struct {
	// K is the number of samples per prompt.
	K int
	// Params control token drawing and stopping.
	Params Params
	// Seed is the run seed; each sample's RNG derives from (Seed, prompt ID, sample
	// index), so results do not depend on sharding, batching or admission order.
	Seed uint64
	// KVBudget is the most KV cache bytes the prompts in flight may hold. A prompt is
	// admitted only when its prompt + K x MaxNewTokens positions fit next to the
	// prompts already in flight, so no cache is evicted or recomputed mid-generation.
	// 0 means DefaultKVBudget; a negative value means no limit (every prompt is
	// admitted at once: the pipeline config's kv_budget_bytes 0).
	KVBudget int64
	// MaxBatch is the most sequences per decode call; more admitted samples decode in
	// several calls per step.
	MaxBatch int
	// NoSharing makes every sample prefill its own copy of the prompt instead of sharing
	// one prefix cache: the baseline that measures what sharing saves. Completions are
	// identical either way.
	NoSharing bool
	// Select chooses the kept candidates of each prompt.
	Select Selection
	// Verifier, when set, checks each finished candidate against the prompt's ground
	// truth before selection: it returns checked=false for a prompt it cannot check, else
	// whether the candidate is right. Failing candidates are never selected, so a prompt
	// with no passing sample contributes nothing; the reward model ranks the rest. This is
	// the paper's filtering of verifiable prompts (final answers for math, execution
	// feedback for code) on top of reward-model selection.
	Verifier Verifier
	// Done lists prompt ids finished by an earlier run (resume): they are skipped.
	Done map[string]bool
	// Tokenizer, when set, fills each candidate's Text.
	Tokenizer *tokenizer.Tokenizer
	// Progress, when set, is called after each prompt finishes, and also between decode
	// steps whenever ProgressInterval has passed since the last call (0: only per
	// prompt), so a heartbeat keeps beating through long prompts.
	Progress         func(Progress)
	ProgressInterval time.Duration
	// OnPrompt, when set, receives each finished prompt's scored candidates as soon as
	// they are selected, so a caller can store them before the run ends (an error stops
	// the run).
	OnPrompt func(p *Prompt, cands []Candidate) error
}

// withDefaults fills zero fields and checks the rest.
func (o Options) withDefaults(vocab int) (Options, error) {
	if o.K == 0 {
		o.K = DefaultK
	}
	switch {
	case o.KVBudget == 0:
		o.KVBudget = DefaultKVBudget
	case o.KVBudget < 0:
		o.KVBudget = math.MaxInt64
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = DefaultMaxBatch
	}
	if o.Select.TopN == 0 {
		o.Select.TopN = 1
	}
	switch {
	case o.K < 0:
		return o, fmt.Errorf("sampling: k must be >= 1, got %d", o.K)
	case o.MaxBatch < 0:
		return o, fmt.Errorf("sampling: max batch must be >= 1, got %d", o.MaxBatch)
	case o.Select.TopN < 0:
		return o, fmt.Errorf("sampling: top-n must be >= 1, got %d", o.Select.TopN)
	}
	if err := o.Params.validate(vocab); err != nil {
		return o, fmt.Errorf("sampling: %w", err)
	}
	return o, nil
}

// Progress is a snapshot for progress bars and heartbeats.
type Progress struct {
	// PromptsDone counts finished and skipped prompts; PromptsTotal all prompts given.
	PromptsDone  int `json:"prompts_done"`
	PromptsTotal int `json:"prompts_total"`
	// Samples are the samples finished so far in this run.
	Samples       int           `json:"samples"`
	SamplesPerSec float64       `json:"samples_per_s"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	// DecodeSteps are the decode steps run so far.
	DecodeSteps int64 `json:"decode_steps"`
	// LastPromptID is the prompt that just finished.
	LastPromptID string `json:"last_prompt_id"`
}

// Stats describe a run.
type Stats struct {
	Prompts int `json:"prompts"` // prompts sampled in this run
	Skipped int `json:"skipped"` // prompts skipped as already done
	Samples int `json:"samples"`
	// Selected counts the candidates kept; StoppedSamples finished on a stop token and
	// TruncatedSamples at MaxNewTokens.
	Selected int `json:"selected"`
	// VerifiedSamples passed the Verifier and RejectedSamples failed it.
	VerifiedSamples  int   `json:"verified_samples"`
	RejectedSamples  int   `json:"rejected_samples"`
	StoppedSamples   int   `json:"stopped_samples"`
	TruncatedSamples int   `json:"truncated_samples"`
	GeneratedTokens  int64 `json:"generated_tokens"`
	// PrefillTokens were run through the model for prompts; PrefillTokensSaved were not,
	// because the K samples shared one prompt cache.
	PrefillTokens      int64 `json:"prefill_tokens"`
	PrefillTokensSaved int64 `json:"prefill_tokens_saved"`
	// Prefills counts prompt prefills (one per prompt when sharing, K without).
	Prefills    int64 `json:"prefills"`
	DecodeSteps int64 `json:"decode_steps"`
	// DecodeTokens were fed one step at a time.
	DecodeTokens int64 `json:"decode_tokens"`
	// PeakKVBytes is the most KV cache held at once; PeakReservedBytes the most reserved
	// by admission (prompt + K x MaxNewTokens per prompt in flight); both <= KVBudget.
	PeakKVBytes       int64 `json:"peak_kv_bytes"`
	PeakReservedBytes int64 `json:"peak_reserved_bytes"`
	KVBudget          int64 `json:"kv_budget_bytes"`
	// PeakPromptsInFlight is the most prompts admitted at once.
	PeakPromptsInFlight int `json:"peak_prompts_in_flight"`
	// Time by phase; Wall is the whole run.
	PrefillTime time.Duration `json:"prefill_ns"`
	DecodeTime  time.Duration `json:"decode_ns"`
	DrawTime    time.Duration `json:"draw_ns"`
	ScoreTime   time.Duration `json:"score_ns"`
	Wall        time.Duration `json:"wall_ns"`
	// SamplesPerSec and TokensPerSec are over Wall (scoring included);
	// GenTokensPerSec over prefill + decode + draw time only.
	SamplesPerSec   float64 `json:"samples_per_s"`
	TokensPerSec    float64 `json:"tokens_per_s"`
	GenTokensPerSec float64 `json:"gen_tokens_per_s"`
}
