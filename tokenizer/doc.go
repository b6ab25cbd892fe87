// Package tokenizer implements the byte-level BPE tokenizer of the Llama 3 family: training
// a vocabulary from text, encoding and decoding, reading and writing Hugging Face
// tokenizer.json files, the Llama 3 special tokens and the Llama 3 chat template with the
// masks post-training needs (assistant answer tokens, formatting tokens).
//
// Text is handled as bytes: every byte has a token, so Decode(Encode(s)) == s for any
// string, including invalid UTF-8 (an invalid byte is its own one-byte piece and is
// encoded through its byte token). Special tokens are recognised only by
// EncodeWithSpecials and by the chat renderer, never by Encode, so user text cannot
// inject formatting tokens.
//
// The package depends on nothing else in the project.
package tokenizer
