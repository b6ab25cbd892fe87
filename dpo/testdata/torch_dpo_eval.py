#!/usr/bin/env python3
"""Reference implementation of `posttrain dpo eval` in PyTorch, for the Go golden test.

Reads testdata/torch/{policy,reference} (config.json + model.safetensors, parsed here with
a small reader) and testdata/torch/pairs.jsonl (pre-tokenized rows, used exactly as given),
runs a plain float64 Llama forward (RMSNorm, rotate-half RoPE, grouped-query causal
attention, SwiGLU), and computes the DPO metrics of the Llama 3 recipe per the notes:

    logr(y)  = sum over unmasked response tokens of (log pi - log pi_ref)
    L_DPO    = -log sigmoid(beta * (logr(chosen) - logr(rejected)))
    L        = L_DPO + coef * L_NLL(chosen)      (NLL over ALL chosen tokens)

averaged over pairs, for several settings, into testdata/torch/golden.json.

A row with an edited response uses it as the chosen one (the dpo package's default
edited-rejected mode). Run from the dpo directory:  /usr/bin/python3 testdata/torch_dpo_eval.py
"""
import json
import math
import os
import struct

import numpy as np
import torch

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch")

SETTINGS = [
    dict(beta=0.1, nll_coef=0.2, nll_norm="per-sequence-mean", mask_formatting=True, formatting_token_ids=[61, 62, 63]),
    dict(beta=0.5, nll_coef=0.2, nll_norm="batch-token-mean", mask_formatting=True, formatting_token_ids=[61, 62, 63]),
    dict(beta=0.1, nll_coef=1.0, nll_norm="per-sequence-sum", mask_formatting=False, formatting_token_ids=[61, 62, 63]),
    dict(beta=0.25, nll_coef=0.0, nll_norm="per-sequence-mean", mask_formatting=True, formatting_token_ids=[63]),
    dict(beta=2.0, nll_coef=0.2, nll_norm="per-sequence-mean", mask_formatting=True, formatting_token_ids=[61, 62, 63]),
]


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (name, info["dtype"])
        lo, hi = info["data_offsets"]
        arr = np.frombuffer(body[lo:hi], dtype="<f4").reshape(info["shape"])
        out[name] = torch.tensor(arr.astype(np.float64))
    return out


def load(name):
    d = os.path.join(HERE, name)
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    return cfg, read_safetensors(os.path.join(d, "model.safetensors"))


def rms_norm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def rope(x, pos, theta):
    # x: [heads, T, hd]; Hugging Face's rotate_half convention.
    hd = x.shape[-1]
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    ang = pos[:, None].double() * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)
    sin = torch.cat([ang.sin(), ang.sin()], -1)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2 :]
    rot = torch.cat([-x2, x1], -1)
    return x * cos + rot * sin


def token_logprobs(cfg, w, ids):
    """log p(ids[t+1] | ids[:t+1]) for t in 0..len-2."""
    T = len(ids) - 1
    inp = torch.tensor(ids[:T])
    H, nh, nkv = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = cfg.get("head_dim") or H // nh
    eps, theta = cfg["rms_norm_eps"], cfg["rope_theta"]
    x = w["model.embed_tokens.weight"][inp]
    pos = torch.arange(T)
    mask = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        a = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (a @ w[p + "self_attn.q_proj.weight"].T).view(T, nh, hd).transpose(0, 1)
        k = (a @ w[p + "self_attn.k_proj.weight"].T).view(T, nkv, hd).transpose(0, 1)
        v = (a @ w[p + "self_attn.v_proj.weight"].T).view(T, nkv, hd).transpose(0, 1)
        q, k = rope(q, pos, theta), rope(k, pos, theta)
        rep = nh // nkv
        k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
        s = (q @ k.transpose(1, 2)) / math.sqrt(hd)
        s = s.masked_fill(mask, float("-inf"))
        o = torch.softmax(s, -1) @ v
        x = x + o.transpose(0, 1).reshape(T, nh * hd) @ w[p + "self_attn.o_proj.weight"].T
        a = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        g = a @ w[p + "mlp.gate_proj.weight"].T
        u = a @ w[p + "mlp.up_proj.weight"].T
        x = x + (torch.nn.functional.silu(g) * u) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings") else w["lm_head.weight"]
    logp = torch.log_softmax(x @ head.T, -1)
    return logp[torch.arange(T), torch.tensor(ids[1:])]


def response_logprobs(cfg, w, prompt, resp):
    lp = token_logprobs(cfg, w, prompt + resp)
    return lp[len(prompt) - 1 :]


def main():
    pcfg, pw = load("policy")
    rcfg, rw = load("reference")
    rows = []
    with open(os.path.join(HERE, "pairs.jsonl")) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
    seqs = []
    for r in rows:
        chosen = r.get("edited_ids") or r["chosen_ids"]
        rejected = r["rejected_ids"]
        prompt = r["prompt_ids"]
        seqs.append(dict(
            chosen=chosen, rejected=rejected,
            pc=response_logprobs(pcfg, pw, prompt, chosen), rc=response_logprobs(rcfg, rw, prompt, chosen),
            pr=response_logprobs(pcfg, pw, prompt, rejected), rr=response_logprobs(rcfg, rw, prompt, rejected),
        ))
    cases = []
    for s in SETTINGS:
        fmt = set(s["formatting_token_ids"])
        beta, coef = s["beta"], s["nll_coef"]
        dpo, rew_c, rew_r, acc, logp_c, logp_r = [], [], [], [], [], []
        nll_sums, nll_counts = [], []
        for q in seqs:
            keep_c = torch.tensor([not (s["mask_formatting"] and t in fmt) for t in q["chosen"]], dtype=torch.float64)
            keep_r = torch.tensor([not (s["mask_formatting"] and t in fmt) for t in q["rejected"]], dtype=torch.float64)
            pc, rc = (q["pc"] * keep_c).sum(), (q["rc"] * keep_c).sum()
            pr, rr = (q["pr"] * keep_r).sum(), (q["rr"] * keep_r).sum()
            c, r = beta * (pc - rc), beta * (pr - rr)
            dpo.append(-torch.nn.functional.logsigmoid(c - r))
            rew_c.append(c)
            rew_r.append(r)
            acc.append(1.0 if c > r else 0.0)
            logp_c.append(pc)
            logp_r.append(pr)
            nll_sums.append(-q["pc"].sum())
            nll_counts.append(len(q["chosen"]))
        n = len(seqs)
        if s["nll_norm"] == "per-sequence-mean":
            nll = sum(a / b for a, b in zip(nll_sums, nll_counts)) / n
        elif s["nll_norm"] == "batch-token-mean":
            nll = sum(nll_sums) / sum(nll_counts)
        else:
            nll = sum(nll_sums) / n
        dpo_loss = sum(dpo) / n
        metrics = dict(
            n=n,
            loss=float(dpo_loss + coef * nll),
            dpo_loss=float(dpo_loss),
            nll_loss=float(nll),
            rewards_chosen=float(sum(rew_c) / n),
            rewards_rejected=float(sum(rew_r) / n),
            margin=float((sum(rew_c) - sum(rew_r)) / n),
            accuracy=sum(acc) / n,
            logps_chosen=float(sum(logp_c) / n),
            logps_rejected=float(sum(logp_r) / n),
        )
        cases.append(dict(s, metrics=metrics))
    with open(os.path.join(HERE, "golden.json"), "w") as f:
        json.dump(dict(torch_version=torch.__version__, cases=cases), f, indent=2)
        f.write("\n")
    print(json.dumps(cases, indent=2))


if __name__ == "__main__":
    main()
