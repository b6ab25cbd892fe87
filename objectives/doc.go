// Package objectives holds the sequence-level training objectives of the
// post-training stages, written as gorgonia (gorgonia.org/gorgonia v0.9.18)
// float64 expressions over per-sequence quantities.
//
// The engine computes, per sequence, summed token log-probs and final-token
// rewards; an objective turns them into a scalar loss, and gorgonia's
// symbolic differentiation returns dLoss/d(each per-sequence input), which
// the engine back-propagates through the network. Token-level losses (SFT)
// stay in the engine's fused kernel.
//
// # Bradley-Terry reward-model loss
//
// BradleyTerry evaluates, over pairs p of one rewards vector,
//
//	L = sum_p w_p * -log sigmoid(r_better,p - r_worse,p - m_p)
//	    + eta * sum_p w_p * (r_better,p + r_worse,p)^2
//
// Sources and choices:
//   - The pairwise loss with a rating-dependent margin m is Llama 2's
//     (Touvron et al. 2023, eq. 2); Llama2Margin and Llama2MarginLarge are
//     its table 28. Llama 3 (Dubey et al. 2024, section 4.1.2) drops the
//     margin, so the zero-value Pair has m = 0.
//   - Llama 3 rows with an edited response rank edited > chosen > rejected;
//     the paper does not give the loss. Ours: all ordered pairs
//     (RankedPairs), each a Bradley-Terry term.
//   - Pair weights w are our named option (PairWeighting). WeightPerPair,
//     the default, is the plain mean over all pairs of the batch, so a
//     triple counts as 3 pairs and a plain row as 1. WeightPerRow gives each
//     row total weight 1 split evenly over its pairs (InstructGPT's
//     1/C(K,2)).
//   - Reward centering, eta * mean((r_c + r_r)^2), is from Eisenstein et al.
//     2023 ("Helping or Herding?"); off by default (eta = 0). Ours: it uses
//     the same pair weights as the main term, so each ordered pair of a
//     triple is centred.
//   - Accuracy (fraction of pairs with r_better > r_worse, strictly) and mean
//     margin (mean of r_better - r_worse, margins not subtracted) are plain
//     unweighted means over pairs.
//
// # DPO with an NLL term
//
// DPO evaluates, over rows i,
//
//	logr(y) = sum over unmasked response tokens of (log pi - log pi_ref)
//	L_DPO   = mean_i -log sigmoid(beta * (logr(y_chosen,i) - logr(y_rejected,i)))
//	L       = L_DPO + coef * L_NLL(chosen)
//
// Sources and choices:
//   - L_DPO is Rafailov et al. 2023 with summed (not averaged) log-probs.
//     Masking the formatting tokens from both log-ratios is Llama 3's
//     (section 4.1.4); the caller masks them before summing.
//   - The NLL term on chosen responses is Pang et al. 2024 ("Iterative
//     Reasoning Preference Optimization"); Llama 3 uses coefficient 0.2. It
//     runs over all chosen tokens, formatting tokens included (that keeps
//     the format).
//   - Its normalisation is our named option (NLLNorm): per-sequence-mean
//     (default; Pang, OpenRLHF), batch-token-mean (TRL), per-sequence-sum
//     (NeMo).
//   - beta 0.1 is the common default. Metric names follow TRL.
//
// # Numerics
//
// -log sigmoid(x) is written as Softplus(-x). gorgonia's Softplus returns x
// for x > 16 and 0 for x < -708, and its derivative, Sigmoid, returns 1 for
// x > 19: in rows whose loss is already above 16 the value is off by less
// than 1.2e-7 (relative 1e-8) and the gradient by less than 6e-9 of its
// size. Values and gradients are finite for any finite input (checked at
// |x| = 100 and 1000), and exact at 0, where every DPO logit sits on the
// first step (policy = reference). gorgonia's SoftMax, LogSoftMax and AdamW
// are not used (known bugs).
//
// # Writing a new objective
//
// Declare inputs with builder.vector/matrix, write the loss with the builder
// helpers (sub, scale, negLogSigmoid, mean, dot, matVec, ...), compile it
// with the outputs to read and the inputs to differentiate, and keep the
// compiled program per input shape: each call only copies new values into
// the bound tensors and re-runs the TapeMachine. The evaluators (DPO,
// BradleyTerry) hold no package-level state and serialise their calls.
package objectives
