"""Confident learning (Northcutt, Jiang & Chuang 2021, JAIR), written from the specification
that finch's C++ (src/doctor/label_issues.cpp) follows, for the parity tests of
`finch data doctor`'s label issues.

usage: confident_learning_reference.py PROBS.csv OUT.json
       confident_learning_reference.py --self-test

PROBS.csv: header `label,p0,...,p{m-1}`, one row per sample; label = the given class index
in [0, m), p = out-of-sample predicted probabilities. With n samples, m classes, given
labels s and probabilities P [n, m]:
  t_j     = mean of P[x, j] over the samples with s(x) = j (a class without one: exit 2)
  C[i][j] = confident joint: sample x counts once, at (s(x), y(x)), y(x) = the class with
            the largest P[x, j] among those with P[x, j] >= t_j (ties: smallest j); a
            sample with no such class is not counted
  Q       = C's rows scaled to the given-label counts (C[i][j] / sum_k C[i][k] * n_i; a
            zero row stays zero), then divided by the total (sums to 1)
  noise[i][j] = Q[i][j] / sum_k Q[i][k]: the share of samples labelled i whose class is j
Label issues
  confident_joint      every counted sample with y(x) != s(x); suggested y(x)
  prune_by_noise_rate  per off-diagonal (i, j): the k_ij = floor(n Q[i][j] + 0.5) samples
                       labelled i with the largest margin P[x, j] - P[x, i] (ties: smaller
                       index); a sample taken for several j keeps its largest margin (ties:
                       smaller j) as the suggestion
Both ranked by self-confidence P[x, s(x)] ascending, ties by index.
OUT.json: {"thresholds", "confident_joint", "joint", "noise_matrix",
           "issues": {"confident_joint": [{"index", "suggested"}...],
                      "prune_by_noise_rate": [...]}}

Sums run in sample (or row-major) order, one term at a time, and every formula is evaluated
in the order written above: the thresholds and the joint then round exactly as a plain C++
loop does, so a sample sitting on a threshold is decided the same way on both sides.

--self-test: a seeded synthetic problem with known flipped labels; prints the precision
and recall of both methods and exits non-zero when a recall is below 0.5 (or a hand-worked
example disagrees).
"""
import csv
import json
import math
import os
import sys
import tempfile


class SpecError(Exception):
    """Input the specification leaves undefined (exit 2)."""


def read_probs(path):
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or header[0].strip() != "label" or len(header) < 2:
            raise SpecError(f"{path}: the header must be label,p0,...,p{{m-1}}")
        m = len(header) - 1
        labels, probs = [], []
        for line_no, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != m + 1:
                raise SpecError(f"{path}:{line_no}: {len(row)} fields, the header has {m + 1}")
            try:
                label = int(row[0])
                p = [float(v) for v in row[1:]]
            except ValueError as e:
                raise SpecError(f"{path}:{line_no}: {e}")
            if not 0 <= label < m:
                raise SpecError(f"{path}:{line_no}: label {label} is not in [0, {m})")
            if not all(math.isfinite(v) for v in p):
                raise SpecError(f"{path}:{line_no}: a probability is not finite")
            labels.append(label)
            probs.append(p)
    if not labels:
        raise SpecError(f"{path}: no samples")
    return labels, probs


def confident_learning(labels, probs):
    n, m = len(labels), len(probs[0])
    count = [0] * m
    sums = [0.0] * m
    for x in range(n):
        count[labels[x]] += 1
        sums[labels[x]] += probs[x][labels[x]]
    for j in range(m):
        if count[j] == 0:
            raise SpecError(f"class {j} has no sample, so its threshold is undefined")
    thresholds = [sums[j] / count[j] for j in range(m)]

    confident = [None] * n  # y(x), None when no class reaches its threshold
    joint_counts = [[0] * m for _ in range(m)]
    for x in range(n):
        best = None
        for j in range(m):
            # Strictly larger: the first (smallest) j wins a tie.
            if probs[x][j] >= thresholds[j] and (best is None or probs[x][j] > probs[x][best]):
                best = j
        confident[x] = best
        if best is not None:
            joint_counts[labels[x]][best] += 1

    joint = [[0.0] * m for _ in range(m)]
    total = 0.0
    for i in range(m):
        row = sum(joint_counts[i])
        if row == 0:
            continue
        for j in range(m):
            joint[i][j] = joint_counts[i][j] / row * count[i]
            total += joint[i][j]
    # total is 0 only when no sample was counted at all: Q stays zero then (the spec's
    # division is undefined; zero rows are what "a row with zero sum stays zero" extends to).
    if total > 0:
        joint = [[v / total for v in row] for row in joint]
    noise = []
    for i in range(m):
        row = 0.0
        for j in range(m):
            row += joint[i][j]
        noise.append([v / row if row > 0 else 0.0 for v in joint[i]])

    def ranked(found):  # found: {index: suggested}
        order = sorted(found, key=lambda x: (probs[x][labels[x]], x))
        return [{"index": x, "suggested": found[x]} for x in order]

    by_joint = {x: confident[x] for x in range(n)
                if confident[x] is not None and confident[x] != labels[x]}

    members = [[] for _ in range(m)]
    for x in range(n):
        members[labels[x]].append(x)
    picked = {}  # index -> (margin, suggested)
    for i in range(m):
        for j in range(m):
            if i == j:
                continue
            k = math.floor(n * joint[i][j] + 0.5)  # round half up, not Python's half-even
            if k == 0:
                continue
            order = sorted(members[i], key=lambda x: (-(probs[x][j] - probs[x][i]), x))
            for x in order[:k]:
                margin = probs[x][j] - probs[x][i]
                old = picked.get(x)
                if old is None or margin > old[0] or (margin == old[0] and j < old[1]):
                    picked[x] = (margin, j)
    by_margin = {x: j for x, (_, j) in picked.items()}

    return {
        "thresholds": thresholds,
        "confident_joint": joint_counts,
        "joint": joint,
        "noise_matrix": noise,
        "issues": {"confident_joint": ranked(by_joint),
                   "prune_by_noise_rate": ranked(by_margin)},
    }


def run(probs_csv, out_json):
    labels, probs = read_probs(probs_csv)
    result = confident_learning(labels, probs)
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    return result


def hand_example():
    """A 2-class case worked out on paper; returns the list of disagreements."""
    labels = [0, 0, 0, 1, 1]
    probs = [[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.5, 0.5]]
    # t = [(0.9 + 0.8 + 0.2) / 3, (0.7 + 0.5) / 2] = [0.6333.., 0.6].
    # x0 -> 0, x1 -> 0, x2 -> 1 (0.8 >= 0.6), x3 -> 1, x4: 0.5 < both thresholds: not counted.
    # C = [[2, 1], [0, 1]]; Q~ = [[2, 1], [0, 2]]; Q = [[0.4, 0.2], [0, 0.4]].
    # PBNR: k_01 = floor(5 * 0.2 + 0.5) = 1 -> the largest margin among x0..x2 is x2 (+0.6).
    r = confident_learning(labels, probs)
    want = {
        "confident_joint": [[2, 1], [0, 1]],
        "joint": [[0.4, 0.2], [0.0, 0.4]],
        "noise_matrix": [[2 / 3, 1 / 3], [0.0, 1.0]],
        "cj": [{"index": 2, "suggested": 1}],
        "pbnr": [{"index": 2, "suggested": 1}],
    }
    got = {"confident_joint": r["confident_joint"], "joint": r["joint"],
           "noise_matrix": r["noise_matrix"], "cj": r["issues"]["confident_joint"],
           "pbnr": r["issues"]["prune_by_noise_rate"]}
    bad = []
    for key, value in want.items():
        if key in ("joint", "noise_matrix"):
            ok = all(abs(a - b) < 1e-12 for ra, rb in zip(value, got[key]) for a, b in zip(ra, rb))
        else:
            ok = value == got[key]
        if not ok:
            bad.append(f"hand example {key}: want {value}, got {got[key]}")
    # A class without samples is an error, not a zero threshold.
    try:
        confident_learning([0, 0], [[0.5, 0.5], [0.6, 0.4]])
        bad.append("hand example: a class without samples was accepted")
    except SpecError:
        pass
    return bad


def self_test():
    import numpy as np

    rng = np.random.default_rng(0)
    m, n, flip_rate = 3, 300, 0.15
    true = rng.integers(0, m, n)
    # A model that mostly knows the true class: Dirichlet probabilities peaked on it, with
    # some hard samples (flatter) so the problem is not trivially separable.
    alpha = np.ones((n, m))
    alpha[np.arange(n), true] += np.where(rng.random(n) < 0.8, 8.0, 1.5)
    probs = np.array([rng.dirichlet(a) for a in alpha])
    given = true.copy()
    flipped = np.flatnonzero(rng.random(n) < flip_rate)
    given[flipped] = (true[flipped] + rng.integers(1, m, len(flipped))) % m
    flipped = set(int(x) for x in flipped)

    # Through the CSV and JSON files, so parsing and writing are exercised too.
    with tempfile.TemporaryDirectory() as tmp:
        probs_csv, out_json = os.path.join(tmp, "probs.csv"), os.path.join(tmp, "out.json")
        with open(probs_csv, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["label"] + [f"p{j}" for j in range(m)])
            for x in range(n):
                w.writerow([int(given[x])] + [repr(float(v)) for v in probs[x]])
        run(probs_csv, out_json)
        with open(out_json) as f:
            result = json.load(f)

    failures = hand_example()
    joint_sum = sum(sum(row) for row in result["joint"])
    if abs(joint_sum - 1) > 1e-12:
        failures.append(f"the joint sums to {joint_sum}")
    print(f"{len(flipped)} of {n} labels flipped, {m} classes")
    for method, found in result["issues"].items():
        flagged = [issue["index"] for issue in found]
        hits = len(flipped & set(flagged))
        precision = hits / len(flagged) if flagged else 0.0
        recall = hits / len(flipped)
        right = sum(1 for issue in found
                    if issue["index"] in flipped and issue["suggested"] == true[issue["index"]])
        print(f"{method:20s} flagged {len(flagged):3d}  precision {precision:.3f}  "
              f"recall {recall:.3f}  suggested = true label for {right} of {hits}")
        selfconf = [probs[x][given[x]] for x in flagged]
        if selfconf != sorted(selfconf):
            failures.append(f"{method}: not ranked by self-confidence")
        if recall < 0.5:
            failures.append(f"{method}: recall {recall:.3f} below 0.5")
    if failures:
        print("\n".join(failures))
        return 1
    print("confident learning reference: self-test passed")
    return 0


def main():
    if sys.argv[1:] == ["--self-test"]:
        sys.exit(self_test())
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    try:
        result = run(sys.argv[1], sys.argv[2])
    except SpecError as e:
        print(f"confident_learning_reference: {e}", file=sys.stderr)
        sys.exit(2)
    issues = result["issues"]
    print(f"{len(result['thresholds'])} classes: {len(issues['confident_joint'])} "
          f"confident-joint issues, {len(issues['prune_by_noise_rate'])} prune-by-noise-rate "
          f"issues -> {sys.argv[2]}")


main()
