// Package averaging builds model soups: uniform, weighted and greedy averages of
// checkpoints that share an architecture and a tokenizer, streamed tensor by tensor.
package averaging
