"""Recomputes retrieval metrics from a `finch embed` file with plain PyTorch (python3-torch).

Definitions as pytorch-metric-learning's AccuracyCalculator with query set = reference set:
the query itself is excluded, queries whose label occurs once are left out, R = number of
other items with the query's label, and
  precision_at_1 (= Recall@1), r_precision, mean_average_precision_at_r
plus the literature's Recall@K (a same-label item among the K nearest). Written
independently of finch's C++ (full sort of the similarity matrix, no blocks, no top-k).

  retrieval_reference.py EMBEDDINGS.safetensors FINCH_EVAL.json
exits non-zero when finch's numbers differ by more than 1e-6.
"""
import json
import sys

import torch

from finch_ref import load_safetensors


def reference(x, y, ks):
    x = torch.nn.functional.normalize(x.double(), dim=1)
    sim = x @ x.T
    n = len(y)
    sim.fill_diagonal_(-float("inf"))
    order = sim.argsort(dim=1, descending=True)[:, : n - 1]
    rel = (y[order] == y[:, None]).double()
    r = (y[:, None] == y[None, :]).sum(1) - 1
    keep = r > 0
    rel, r = rel[keep], r[keep]
    out = {"queries": int(keep.sum()), "lone_queries": int((~keep).sum())}
    out["recall_at_k"] = {str(k): float((rel[:, :k].sum(1) > 0).double().mean()) for k in ks}
    positions = torch.arange(1, n, dtype=torch.float64)
    within_r = positions[None, :] <= r[:, None]
    precision_at_i = rel.cumsum(1) / positions
    out["map_at_r"] = float(((precision_at_i * rel * within_r).sum(1) / r).mean())
    out["r_precision"] = float(((rel * within_r).sum(1) / r).mean())
    return out


def main():
    tensors, _ = load_safetensors(sys.argv[1])
    with open(sys.argv[2]) as f:
        finch = json.load(f)["retrieval"]
    ks = [int(k) for k in finch["recall_at_k"]]
    ref = reference(tensors["embeddings"], tensors["labels"], ks)
    bad = []
    for key in ("map_at_r", "r_precision"):
        if abs(ref[key] - finch[key]) > 1e-6:
            bad.append(f"{key}: reference {ref[key]:.8f} finch {finch[key]:.8f}")
    for k in ref["recall_at_k"]:
        if abs(ref["recall_at_k"][k] - finch["recall_at_k"][k]) > 1e-6:
            bad.append(f"Recall@{k}: reference {ref['recall_at_k'][k]:.8f} finch {finch['recall_at_k'][k]:.8f}")
    for key in ("queries", "lone_queries"):
        if ref[key] != finch[key]:
            bad.append(f"{key}: reference {ref[key]} finch {finch[key]}")
    print(json.dumps(ref))
    if bad:
        print("MISMATCH " + "; ".join(bad))
        sys.exit(1)
    print("retrieval reference: match")


if __name__ == "__main__":
    main()
