#!/bin/sh
# make-basemodel.sh recreates assets/basemodel, the base model `posttrain demo` starts from:
# generate the corpus, train the tokenizer, initialise the model, pre-train it on the free
# text, teach it the chat format on transcripts of which most carry mistakes, and store
# the weights as BF16 (half the size; the loader widens them to float32).
# Usage: assets/make-basemodel.sh [OUT_DIR]   (POSTTRAIN=path/to/posttrain to pick a binary)
set -eu
BIN=${POSTTRAIN:-./bin/posttrain}
OUT=${1:-assets/basemodel}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. The corpus: 12000 free-text documents and 12000 chat transcripts, 60% with mistakes.
"$BIN" demo corpus --out "$WORK/corpus" --seed 1 --docs 12000 --mistake-rate 0.6
# 2. A 512-id byte-level BPE vocabulary learned on both files.
"$BIN" tokenizer train --vocab 512 --out "$WORK/tok" "$WORK/corpus/text.jsonl" "$WORK/corpus/chats.jsonl"
# 3. 2.56M parameters: 6 layers, hidden 192, 6 heads (2 KV heads), SwiGLU 512.
"$BIN" model init --config "$HERE/model-config.json" --tokenizer "$WORK/tok" --seed 1 --out "$WORK/init"
# 4. Pre-training on the free text (the domain: sums, spellings, reversals, capitals...).
"$BIN" pretrain --model "$WORK/init" --data "$WORK/corpus/text.jsonl" --out "$WORK/pre" \
	--steps 2400 --batch 16 --seq 128 --lr 2e-3 --warmup 60 --seed 1 --checkpoint-every 0 --threads 2
# 5. The chat format: posttrain pretrain reads special tokens written in text as plain
#    characters, so the transcripts go through sft train (the Llama 3 template with real
#    header and end-of-turn ids; the answers, right or wrong, are the targets).
"$BIN" sft train --model "$WORK/pre" --train "$WORK/corpus/chats.jsonl" --out "$WORK/chat" \
	--steps 400 --batch 32 --packing --seq 128 --lr 1e-3 --warmup 20 --seed 1 --checkpoint-every 0 --threads 2
# 6. BF16 weights: 5 MB instead of 10.
"$BIN" model convert --model "$WORK/chat" --out "$WORK/bf16" --dtype bf16
mkdir -p "$OUT"
cp "$WORK/bf16/config.json" "$WORK/bf16/model.safetensors" "$WORK/bf16/tokenizer.json" "$OUT/"
echo "wrote $OUT"
