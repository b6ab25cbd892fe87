// Package averaging builds model soups: uniform, weighted and greedy averages of
// checkpoints that share an architecture and a tokenizer, streamed tensor by tensor.
//
// A soup is the element-wise average of the weights of models fine-tuned from the same
// start (Wortsman et al. 2022, "Model soups"); Llama 3 averages the runs of each stage
// (reward model, SFT, DPO). Three recipes:
//
//   - Uniform: out = (1/N) sum_i x_i, summed in float64 in input order, rounded once.
//   - Weighted: out = sum_i w_i x_i with w normalised to sum to 1 (negative weights and a
//     zero sum are errors).
//   - Greedy: candidates are scored one by one with a caller-supplied held-out score,
//     sorted best first, and added to the running uniform soup one at a time; a
//     candidate stays only if the soup's score does not get worse. The score's
//     direction is explicit (HigherIsBetter for reward-model or DPO accuracy,
//     LowerIsBetter for an SFT validation loss).
//
// Inputs must agree on architecture, configuration, tensor names and shapes, and
// tokenizer (tokenizer.json compared by SHA-256; a model without one only mixes with
// others without one); a mismatch is an error naming both model directories and the
// key or tensor. Averaging opens every input's model.safetensors and, for each tensor in
// turn, reads it from each input into one buffer, accumulates, and appends the result to
// a streaming writer, so memory is about three copies of the largest tensor whatever
// the number of inputs. The output directory (config.json and tokenizer.json copied
// from the first input, model.safetensors in F32) appears atomically.
package averaging
