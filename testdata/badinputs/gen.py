#!/usr/bin/env python3
"""Regenerates the binary cases of the bad-input corpus from a valid micro model.

Usage: python3 gen.py VALID_MODEL_DIR   (made with `posttrain model init --config
micro-config.json --out DIR --seed 1`). Text cases are written by hand and not touched.
"""
import json, os, shutil, struct, sys

src = sys.argv[1]
blob = open(os.path.join(src, "model.safetensors"), "rb").read()
n = struct.unpack("<Q", blob[:8])[0]
header = json.loads(blob[8:8 + n])
data = blob[8 + n:]
cfg = open(os.path.join(src, "config.json")).read()


def model(name, st_bytes, config=cfg):
    d = os.path.join("models", name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    open(os.path.join(d, "config.json"), "w").write(config)
    open(os.path.join(d, "model.safetensors"), "wb").write(st_bytes)


def pack(h, d=data):
    hb = json.dumps(h).encode()
    return struct.pack("<Q", len(hb)) + hb + d


def edit(fn):
    h = json.loads(json.dumps(header))
    fn(h)
    return pack(h)


# The header length claims more bytes than the file has.
model("st_header_len_huge", struct.pack("<Q", 1 << 40) + blob[8:])
# The header length points into the middle of the JSON.
model("st_header_len_short", struct.pack("<Q", 10) + blob[8:])
# A tensor's end offset lies past the data section.
model("st_offset_out_of_range", edit(lambda h: h["lm_head.weight"].update(data_offsets=[624 + 4096, 752 + 4096])))
# Two tensors share bytes.
model("st_offsets_overlap", edit(lambda h: h["model.norm.weight"].update(data_offsets=[600, 616])))
# A dtype the format does not define.
model("st_bad_dtype", edit(lambda h: h["model.norm.weight"].update(dtype="F31")))
# The shape does not match the byte length.
model("st_shape_mismatch", edit(lambda h: h["model.norm.weight"].update(shape=[5])))
# The shape is consistent with the bytes but not with config.json.
def wrong_model_shape(h):
    h["model.norm.weight"].update(shape=[2, 2])
model("st_wrong_model_shape", edit(wrong_model_shape))
# The file stops inside the data section.
model("st_truncated", blob[: len(blob) - 100])
# A required tensor is missing.
def drop(h):
    del h["lm_head.weight"]
h = json.loads(json.dumps(header))
drop(h)
model("st_missing_tensor", pack(h, data[:624]))
# config.json is not JSON.
model("config_broken_json", blob, config='{"architectures": ["LlamaForCausalLM"], "vocab_size": 8,')
# config.json with an impossible size.
model("config_zero_heads", blob, config=cfg.replace('"num_attention_heads": 1', '"num_attention_heads": 0'))
