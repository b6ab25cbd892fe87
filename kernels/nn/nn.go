// Package nn holds the hand-written float32 forward and backward kernels of the Llama
// decoder (embedding, RMSNorm, rotary embeddings, grouped-query causal attention, SwiGLU and
// the fused log-softmax + target log-probability). Each kernel is a plain function over flat
// row-major slices that allocates nothing; the row-wise kernels work on any number of rows,
// so callers parallelise them by handing disjoint row ranges to different workers, and the
// same functions serve single-token decoding.
package nn
