// Package sft runs supervised fine-tuning of a causal LM on encoded examples
// (datasets.EncodedSFT): the cross-entropy is taken on target tokens only (assistant
// answers with their end-of-turn token; the prompt and the headers are masked), the data
// order is a seeded shuffle, short examples can be packed into full rows (positions
// restart and a block-diagonal causal mask keeps examples apart), validation loss is
// measured on held-out examples, and a run checkpoints weights plus trainer state so an
// interrupted run resumes bit-identically.
//
// The caller reads files and stores artifacts; this package only trains and evaluates.
//
// Sequence layout: an example of L tokens becomes L-1 positions whose input is ids[p]
// and whose target is ids[p+1], scored when Targets[p+1] is set. The first token has no
// prefix, so a target mask on it is ignored.
package sft
