package transformer

import (
	"github.com/posttrain/posttrain/kernels"
)

// Model is a configured decoder with its weights. A causal LM (lm_head) yields per-token
// log-probabilities of target tokens; a sequence classifier (score head) yields one reward
// per row, read at the row's Last token.
type Model struct {
	Config Config
	W      *Params
	Pool   *kernels.Pool
}

// New allocates a zero-weight model for cfg that runs its kernels on pool.
func New(cfg Config, pool *kernels.Pool) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Model{Config: cfg, W: NewParams(cfg), Pool: pool}, nil
}

// Batch is B rows of T tokens, row-major. Shorter rows are padded at the end; causal
// attention keeps padding from influencing earlier tokens.
type Batch struct {
	B, T int
	// Tokens are the input ids, B*T.
	Tokens []int32
	// Positions are the rotary positions, B*T; nil means 0..T-1 in every row. Packed rows
	// restart positions at each example.
	Positions []int32
	// Segments give each token's example id within its row, B*T; nil means one example per
	// row. A token attends only to earlier tokens of the same segment (block-diagonal causal
	// mask), so packed examples never see each other.
	Segments []int32
	// Targets are the next-token ids scored by the LM head, B*T; a negative target is not
	// scored (its log-prob is reported as 0 and it gets no gradient).
	Targets []int32
	// Last is, per row, the index in [0,T) of the token whose final hidden state the score
	// head reads (the sequence's final real token).
	Last []int32
}
