// Package sampling runs rejection sampling: K samples per prompt from the policy with the
// prompt's KV cache shared, admission control by KV memory, and reward-model selection.
package sampling
