#!/usr/bin/python3
"""Golden values for package objectives, computed with PyTorch (float64).

A straightforward implementation of the formulas in
shared/notes/llama3-recipe.md, written independently of the Go code:
torch.nn.functional.logsigmoid for the losses and torch.autograd for the
gradients. Writes torch_golden.json next to this script; the Go test
compare_test.go reads it (Python is not needed at test time).

Run:  /usr/bin/python3 objectives/testdata/torch_reference.py
"""
import json
import os

import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)


def dpo_case(name, beta, coef, norm, pc, pr, rc, rr, pall, ntok):
    pc = torch.tensor(pc, requires_grad=True)
    pr = torch.tensor(pr, requires_grad=True)
    pall = torch.tensor(pall, requires_grad=True)
    rc_t, rr_t = torch.tensor(rc), torch.tensor(rr)
    n_t = torch.tensor(ntok, dtype=torch.float64)

    chosen_logratio = pc - rc_t
    rejected_logratio = pr - rr_t
    logits = beta * (chosen_logratio - rejected_logratio)
    dpo_loss = -F.logsigmoid(logits).mean()
    if norm == "per-sequence-mean":
        nll = (-pall / n_t).mean()
    elif norm == "batch-token-mean":
        nll = -pall.sum() / n_t.sum()
    elif norm == "per-sequence-sum":
        nll = (-pall).mean()
    else:
        raise ValueError(norm)
    loss = dpo_loss + coef * nll
    loss.backward()

    rewards_chosen = beta * chosen_logratio.detach()
    rewards_rejected = beta * rejected_logratio.detach()
    gall = pall.grad if pall.grad is not None else torch.zeros_like(pall)
    return {
        "name": name,
        "options": {"beta": beta, "nll_coef": coef, "nll_norm": norm},
        "inputs": {
            "policy_chosen": pc.detach().tolist(),
            "policy_rejected": pr.detach().tolist(),
            "reference_chosen": rc,
            "reference_rejected": rr,
            "policy_chosen_all": pall.detach().tolist(),
            "chosen_tokens": ntok,
        },
        "want": {
            "loss": loss.item(),
            "dpo_loss": dpo_loss.item(),
            "nll_loss": nll.item(),
            "rewards_chosen": rewards_chosen.mean().item(),
            "rewards_rejected": rewards_rejected.mean().item(),
            "margin": (rewards_chosen - rewards_rejected).mean().item(),
            "accuracy": (rewards_chosen > rewards_rejected).double().mean().item(),
            "logps_chosen": pc.detach().mean().item(),
            "logps_rejected": pr.detach().mean().item(),
            "grad_policy_chosen": pc.grad.tolist(),
            "grad_policy_rejected": pr.grad.tolist(),
            "grad_policy_chosen_all": gall.tolist(),
        },
    }


def random_rows(gen, n, spread=3.0):
    ntok = torch.randint(3, 60, (n,), generator=gen)
    pc = -ntok * (0.3 + torch.rand(n, generator=gen))
    pr = -torch.randint(3, 60, (n,), generator=gen) * (0.3 + torch.rand(n, generator=gen))
    rc = pc + spread * torch.randn(n, generator=gen)
    rr = pr + spread * torch.randn(n, generator=gen)
    pall = pc - 0.2 * torch.rand(n, generator=gen)  # plus formatting tokens
    return (pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist(), pall.tolist(),
            [int(t) + 2 for t in ntok])


def bt_case(name, eta, weighting, rewards, pairs):
    r = torch.tensor(rewards, requires_grad=True)
    better = torch.tensor([p[0] for p in pairs])
    worse = torch.tensor([p[1] for p in pairs])
    margin = torch.tensor([p[2] for p in pairs])
    rows = [p[3] for p in pairs]
    if weighting == "per-pair":
        w = torch.full((len(pairs),), 1.0 / len(pairs))
    else:
        counts = {row: rows.count(row) for row in rows}
        w = torch.tensor([1.0 / len(counts) / counts[row] for row in rows])
    rb, rw = r[better], r[worse]
    bt = (w * -F.logsigmoid(rb - rw - margin)).sum()
    center = (w * (rb + rw) ** 2).sum()
    loss = bt + eta * center
    loss.backward()
    d = (rb - rw).detach()
    return {
        "name": name,
        "options": {"centering_coef": eta, "weighting": weighting},
        "rewards": rewards,
        "pairs": [{"better": p[0], "worse": p[1], "margin": p[2], "row": p[3]} for p in pairs],
        "want": {
            "loss": loss.item(),
            "bt_loss": bt.item(),
            "centering": center.item(),
            "accuracy": (d > 0).double().mean().item(),
            "mean_margin": d.mean().item(),
            "grad": r.grad.tolist(),
        },
    }


def main():
    gen = torch.Generator().manual_seed(20240731)
    dpo = []
    rows8 = random_rows(gen, 8)
    dpo.append(dpo_case("llama3 defaults, 8 rows", 0.1, 0.2, "per-sequence-mean", *rows8))
    dpo.append(dpo_case("batch-token-mean, 8 rows", 0.1, 0.2, "batch-token-mean", *rows8))
    dpo.append(dpo_case("per-sequence-sum, 8 rows", 0.1, 0.2, "per-sequence-sum", *rows8))
    dpo.append(dpo_case("beta 0.5 coef 1", 0.5, 1.0, "per-sequence-mean", *random_rows(gen, 5)))
    dpo.append(dpo_case("beta 0.01 no nll", 0.01, 0.0, "per-sequence-mean", *random_rows(gen, 6)))
    dpo.append(dpo_case("one row", 0.1, 0.2, "batch-token-mean", *random_rows(gen, 1)))
    dpo.append(dpo_case("64 rows", 0.1, 0.2, "per-sequence-mean", *random_rows(gen, 64)))
    # Policy equal to reference (the first DPO step): every logit is 0.
    pc, pr, _, _, pall, ntok = random_rows(gen, 4)
    dpo.append(dpo_case("policy equals reference", 0.1, 0.2, "per-sequence-mean", pc, pr, pc, pr, pall, ntok))
    # Tails: beta * logratio difference of +-17 and +-25 (where gorgonia's
    # Softplus and Sigmoid switch to their asymptotes) and +-100, +-1000.
    xs = [17.0, -17.0, 25.0, -25.0, 100.0, -100.0, 1000.0, -1000.0, 0.0]
    dpo.append(dpo_case("tails", 1.0, 0.2, "per-sequence-mean",
                        [x / 2 for x in xs], [-x / 2 for x in xs],
                        [0.0] * len(xs), [0.0] * len(xs), [-3.0] * len(xs), [3] * len(xs)))

    bt = []
    r = torch.randn(10, generator=gen).tolist()
    plain = [(0, 1, 0.0, 0), (2, 3, 0.0, 1), (5, 4, 0.0, 2)]
    triple = [(6, 7, 0.0, 3), (6, 8, 0.0, 3), (7, 8, 0.0, 3)]
    margins = [(0, 1, 1.0, 0), (2, 3, 2.0 / 3.0, 1), (5, 4, 1.0 / 3.0, 2), (9, 8, 0.0, 4)]
    bt.append(bt_case("plain pairs", 0.0, "per-pair", r, plain))
    bt.append(bt_case("llama2 margins", 0.0, "per-pair", r, margins))
    bt.append(bt_case("triple and pairs per-pair", 0.0, "per-pair", r, plain + triple))
    bt.append(bt_case("triple and pairs per-row", 0.0, "per-row", r, plain + triple))
    bt.append(bt_case("centering 0.01", 0.01, "per-pair", r, plain + triple))
    bt.append(bt_case("centering 0.5 per-row margins", 0.5, "per-row", r, margins + triple))

    out = {
        "generator": "objectives/testdata/torch_reference.py",
        "torch_version": torch.__version__,
        "dpo": dpo,
        "bradley_terry": bt,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "torch_golden.json")
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
        f.write("\n")
    print(f"wrote {path}: {len(dpo)} DPO cases, {len(bt)} Bradley-Terry cases")


if __name__ == "__main__":
    main()
