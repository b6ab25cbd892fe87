package reward

import (
	"fmt"
	"math"

	"github.com/posttrain/posttrain/objectives"
	"github.com/posttrain/posttrain/trainer"
	"github.com/posttrain/posttrain/trainer/pretrain"
)

// MarginMode says where a pair's Bradley-Terry margin comes from.
type MarginMode string

// The margin modes.
const (
	// MarginNone uses m = 0 for every pair (Llama 3).
	MarginNone MarginMode = "none"
	// MarginLlama2 maps the row's rating through Llama 2's "margin small" table
	// (1, 2/3, 1/3, 0); a row with an explicit "margin" uses that value instead.
	MarginLlama2 MarginMode = "llama2"
	// MarginLlama2Large is the same with the "margin large" table (3, 2, 1, 0).
	MarginLlama2Large MarginMode = "llama2-large"
	// MarginField uses each row's "margin" value; a row without one is an error.
	MarginField MarginMode = "field"
)

// MarginModes lists the accepted modes.
func MarginModes() []MarginMode {
	return []MarginMode{MarginNone, MarginLlama2, MarginLlama2Large, MarginField}
}

// ParseMarginMode validates a mode name; "" means MarginNone.
func ParseMarginMode(s string) (MarginMode, error) {
	if s == "" {
		return MarginNone, nil
	}
	for _, m := range MarginModes() {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("reward: margin %q is not one of %v", s, MarginModes())
}

// DefaultSimilarityThreshold drops pairs whose responses agree on at least 95% of their
// tokens (TokenSimilarity), identical responses included.
const DefaultSimilarityThreshold = 0.95

// Config is one reward-model training run's settings.
type Config struct {
	Steps int // optimizer updates in total (a resumed run continues up to it)
	// Batch is the number of preference rows per micro-batch; each contributes one batch
	// row per response (2, or 3 with an edited response).
	Batch int
	Accum int // micro-batches per update

	Schedule trainer.Schedule    // PeakLR, WarmupSteps, MinLRRatio, Decay (TotalSteps = Steps)
	AdamW    trainer.AdamWConfig // optimizer hyper-parameters
	Seed     uint64              // seed of the data order

	// Margin selects the pair margins (default MarginNone, as in Llama 3).
	Margin MarginMode
	// Centering is eta of the reward-centering term; 0 turns it off.
	Centering float64
	// Weighting is the pair weighting of the loss (default per-pair).
	Weighting objectives.PairWeighting
	// SimilarityThreshold drops pairs whose TokenSimilarity is >= it; 0 keeps every pair.
	SimilarityThreshold float64

	// OutDir receives checkpoints (model + trainer state) every CheckpointEvery updates
	// (0: only at the end), at the end, and on cancellation. Empty means no checkpoints.
	OutDir          string
	CheckpointEvery int // see OutDir
	// Resume continues the run saved in OutDir; the base model then only fixes the
	// architecture and pool.
	Resume bool
	// TokenizerJSON, when set, is written into every checkpoint.
	TokenizerJSON []byte
	// EvalEvery evaluates the validation pairs every that many updates (0: only before
	// and after training).
	EvalEvery int
}

// DefaultConfig is a sensible reward-model setting for the small presets.
func DefaultConfig() Config {
	return Config{
		Steps: 100, Batch: 8, Accum: 1,
		Schedule:            trainer.Schedule{PeakLR: 1e-4, WarmupSteps: 10, MinLRRatio: 0.1, Decay: trainer.DecayCosine},
		AdamW:               trainer.DefaultAdamW(),
		Seed:                1,
		Margin:              MarginNone,
		Weighting:           objectives.WeightPerPair,
		SimilarityThreshold: DefaultSimilarityThreshold,
	}
}

func (c Config) validate() error {
	if _, err := ParseMarginMode(string(c.Margin)); err != nil {
		return err
	}
	if err := pretrain.CheckSizes("reward", c.Steps, c.Batch, c.Accum); err != nil {
		return err
	}
	switch {
	case !(c.Centering >= 0) || math.IsInf(c.Centering, 0):
		return fmt.Errorf("reward: centering must be a number >= 0, got %g", c.Centering)
	case !(c.SimilarityThreshold >= 0 && c.SimilarityThreshold <= 1):
		return fmt.Errorf("reward: similarity threshold must be in [0,1], got %g", c.SimilarityThreshold)
	}
	return pretrain.CheckRunOutput("reward", c.CheckpointEvery, c.EvalEvery, c.Resume, c.OutDir)
}

// objective builds the Bradley-Terry evaluator for the config.
func (c Config) objective() (*objectives.BradleyTerry, error) {
	bt, err := objectives.NewBradleyTerry(objectives.BTOptions{CenteringCoef: c.Centering, Weighting: c.Weighting})
	if err != nil {
		return nil, fmt.Errorf("reward: %w", err)
	}
	return bt, nil
}
