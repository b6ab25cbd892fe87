// Package sampling runs the rejection-sampling stage of the Llama 3 recipe: for each
// prompt, K samples from the current policy, each scored by the reward model, the best
// kept as SFT data. It knows nothing of Temporal or PostgreSQL: the caller stores the
// returned candidates.
//
// # Memory and sharing
//
// A prompt is prefilled once (inference.Engine.Prefill) and its KV cache is read by all K
// samples, each of which owns only the cache of its own generated tokens. Admission
// control reserves, per prompt, the worst case of its prompt plus K x MaxNewTokens
// positions (inference.RequestKVBytes) and admits prompts in input order only while the
// reservations fit Options.KVBudget, so a sample never waits for memory, and nothing is
// evicted or recomputed once started. The samples of every admitted prompt decode
// together, MaxBatch rows per decode call, so several prompts fill one batch. A prompt
// whose reservation alone exceeds the budget is an error naming it, before any work.
//
// # Scoring
//
// A prompt is scored once all its samples finish. Finished prompts wait, keeping their
// reservations, until their samples fill a decode batch, nothing else is decoding, or
// their reservations are what keeps the next prompt out; then they are scored in one
// Scorer call. reward.Scorer runs the full prompt+response per sample; PrefixScorer
// runs the reward model through the KV-cached engine, each prompt once and the
// responses batched, and its cache is counted against the same budget (the reservation
// of a prompt covers the larger of the policy's and the scorer's cache).
//
// # Determinism and shards
//
// Each sample draws from its own RNG seeded by (run seed, prompt ID) and the sample
// index, and a sample's computation does not depend on what else shares its batch, so a
// run over any Shard of the prompts gives exactly the candidates the full run gives for
// those prompts, and a resumed run (Options.Done) gives the rest.
//
// # Selection
//
// Every candidate is returned with its reward, finish reason and selection flags.
// Selection keeps the TopN highest rewards per prompt (default 1, best-of-K), optionally
// above MinReward and with identical completions counted once (Dedup). Named choices
// where the paper is silent: truncated samples (cut at MaxNewTokens) and empty answers
// are not selected unless KeepTruncated; ties go to the lower sample index; with several
// system prompts, each prompt's is picked by a hash of its ID.
//
// The token sampler (temperature, top-k, top-p) uses inference's top-k and top-p
// selection but keeps its own draw, whose float64 weight total keeps earlier seeds'
// samples unchanged; see tokenSampler.
package sampling
