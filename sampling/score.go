package sampling

import (
	"context"

	"github.com/posttrain/posttrain/datasets"
)

// Scorer gives the reward of each prompt+response sequence, in input order.
// reward.Scorer (reward.NewScorer on a LlamaForSequenceClassification model) is the
// implementation: batched, length-sorted, reward read at each sequence's final token.
type Scorer interface {
	Score(ctx context.Context, seqs []datasets.Sequence) ([]float64, error)
}
