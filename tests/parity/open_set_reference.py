"""Recomputes `finch eval --open-set` metrics from its exported scores with scikit-learn.

  open_set_reference.py SCORES.csv FINCH_EVAL.json
For each score column: AUROC = sklearn.metrics.roc_auc_score with the known images as
positives; FPR at the TPR of the report = the first point of sklearn.metrics.roc_curve whose
TPR reaches it; OSCR = sklearn.metrics.auc over (FPR, CCR) points computed with numpy
(CCR = correct known images at or above each threshold / known images). Exits non-zero when
finch's numbers differ by more than 1e-9.
"""
import csv
import json
import sys

import numpy as np
from sklearn.metrics import auc, roc_auc_score, roc_curve


def oscr(known, correct, unknown):
    thresholds = np.unique(np.concatenate([known, unknown]))[::-1]
    ccr = [0.0] + [np.sum(correct & (known >= t)) / len(known) for t in thresholds]
    fpr = [0.0] + [np.sum(unknown >= t) / len(unknown) for t in thresholds]
    return auc(fpr, ccr)


def main():
    with open(sys.argv[1], newline="") as f:
        rows = list(csv.DictReader(f))
    report = json.load(open(sys.argv[2]))
    is_known = np.array([r["set"] == "known" for r in rows])
    correct = np.array([r["correct"] == "1" for r in rows])[is_known]
    failures = []
    for name, finch in report["scores"].items():
        s = np.array([float(r[name]) for r in rows])
        known, unknown = s[is_known], s[~is_known]
        tpr_target = finch["tpr"]
        fpr_curve, tpr_curve, _ = roc_curve(is_known.astype(int), s)
        expected = {
            "auroc": roc_auc_score(is_known.astype(int), s),
            "fpr_at_tpr": fpr_curve[np.argmax(tpr_curve >= tpr_target - 1e-12)],
            "oscr": oscr(known, correct, unknown),
            "closed_accuracy": correct.mean(),
        }
        for key, value in expected.items():
            if abs(finch[key] - value) > 1e-9:
                failures.append(f"{name} {key}: finch {finch[key]} sklearn {value}")
        print(f"{name}: AUROC {expected['auroc']:.6f} FPR {expected['fpr_at_tpr']:.6f} "
              f"OSCR {expected['oscr']:.6f}")
    if failures:
        print("\n".join(failures))
        sys.exit(1)
    print(f"open-set reference: match ({len(report['scores'])} scores, {len(rows)} images)")


main()
