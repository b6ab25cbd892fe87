// Package dpo runs Direct Preference Optimization as in Llama 3: a policy trained from the
// SFT model against a frozen reference (by default the same SFT weights, loaded as a
// second model), with formatting tokens masked out of both log-ratios and an NLL term on
// the chosen responses.
//
// Per pair, with the per-token log-probs of the response given the prompt (prompt tokens
// are never scored):
//
//	logr(y) = sum over unmasked response tokens of (log pi - log pi_ref)
//	L_DPO   = -log sigmoid(beta * (logr(chosen) - logr(rejected)))
//	L       = L_DPO + coef * L_NLL(chosen)
//
// The loss over per-sequence sums is the gorgonia objective of package objectives; its
// gradients with respect to those sums become per-token coefficients for the engine's
// backward pass: a chosen token gets dL/dPolicyChosen when unmasked plus dL/dPolicyChosenAll
// (the NLL covers every chosen token, formatting included), a rejected token gets
// dL/dPolicyRejected when unmasked, and masked tokens get no DPO gradient.
//
// The masked set is the formatting mask of each encoded response (datasets.Encoder
// marks the tokenizer's header and end-of-turn tokens, or an explicit id list); masking
// is on by default and can be turned off.
//
// Ranked rows with an edited response (edited > chosen > rejected) become pairs by a
// named option, EditedMode: "edited-rejected" (default: the edit, the best response, as
// chosen against the rejected one: the widest gap the annotator expressed),
// "chosen-rejected" (ignore the edit), or "all-pairs" (the three ordered pairs, each a
// DPO pair of its own).
//
// Reference log-probs are computed once per dataset: in memory for the whole run, and on
// disk in a cache directory as refcache-<key>.json, keyed by a SHA-256 of the pairs
// (tokens and masks), the masking switch and the reference's configuration and weights.
package dpo
