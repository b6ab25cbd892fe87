// Package reward trains, evaluates and runs Bradley-Terry reward models: a Llama backbone
// plus a score head (LlamaForSequenceClassification, score.weight [1, hidden]) whose
// reward is read at the final token of prompt+response.
//
// # Training
//
// Train minimises, over the pairs of each micro-batch (objectives.BradleyTerry),
//
//	L = mean_p -log sigmoid(r_better - r_worse - m_p) [+ eta * mean_p (r_better + r_worse)^2]
//
// Every response of a micro-batch's preference rows is one batch row and is scored once;
// pairs index into that rewards vector, so a ranked row with an edited response
// (edited > chosen > rejected) trains on its 3 ordered pairs at the cost of 3 rows.
//
// Named options, where the paper is silent or earlier recipes differ:
//   - Margin (MarginNone, the Llama 3 default; MarginLlama2 and MarginLlama2Large map the
//     row's rating through Llama 2's tables; MarginField uses the row's "margin" value).
//   - Centering: eta of the reward-centering term (Eisenstein et al. 2023), 0 = off.
//   - Weighting: per-pair mean (default) or per-row (objectives.PairWeighting).
//   - SimilarityThreshold: pairs whose two responses are too similar are dropped before
//     training (Llama 3 filters such pairs). The measure is TokenSimilarity, one minus
//     the Levenshtein distance between the two responses' token ids divided by the
//     longer length: 1 for identical responses, 0 for responses with nothing in place in
//     common. A pair is dropped when its similarity is >= the threshold; 0 disables it.
//
// # Evaluation and scoring
//
// Evaluate reports, over held-out pairs, the mean Bradley-Terry loss, the accuracy
// (fraction of pairs with r_better > r_worse) and the mean margin (mean r_better -
// r_worse), plus every row's rewards. Scorer and Score compute rewards for arbitrary
// prompt+response sequences in length-sorted, padded batches; rejection sampling uses
// them to rank candidates.
package reward
