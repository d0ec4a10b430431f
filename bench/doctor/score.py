"""Scores `finch data doctor`'s flagged.csv against the ground truth of
bench/doctor/make_planted_fmnist.py: per detector, how many planted problems it found
(recall) and how many of its flags are planted problems (precision).

usage: /usr/bin/python3 bench/doctor/score.py PLANTED.csv FLAGGED.csv [--json]
       /usr/bin/python3 bench/doctor/score.py --self-test

PLANTED.csv: `path,problem,detail` (detail = the original's path for the copy problems).
FLAGGED.csv: `path,split,label,reason,detail,score`, one row per (image, reason); path is
the manifest path, detail of a duplicate-type flag names the other image of the pair.

A planted problem counts as found when its image is flagged with a reason that detects it
(ACCEPTED below). For the pair problems (the duplicates, leak, conflicting_label) either
image of the pair may carry the flag, but the flag's detail must name the other one. A flag
counts as matched when it finds some planted problem in that sense. Precision is a lower
bound: Fashion-MNIST has genuine problems of its own (duplicates, mislabelled, faint
images) that were never planted, and their flags count against it.

Markdown tables by default (one row per detector, then one per planted problem, then the
reasons nothing was planted for); --json prints the same numbers as JSON.
--self-test scores a tiny hand-made case and checks every number.
"""
import csv
import io
import json
import re
import sys
from collections import Counter, defaultdict

# The reasons that count as detecting each planted problem.
ACCEPTED = {
    "zero_byte": {"zero_byte"},
    "truncated": {"truncated", "undecodable"},
    "corrupt": {"undecodable", "truncated"},
    "wrong_extension": {"wrong_extension"},
    "exact_duplicate": {"exact_duplicate"},
    # JPEG q95 changes pixel values by a few levels, so a detector that calls "exact" only
    # identical decoded pixels reports the re-encoded copy as a near duplicate: both count.
    "reencoded_duplicate": {"exact_duplicate", "near_duplicate"},
    "resized_duplicate": {"near_duplicate", "exact_duplicate"},
    "cropped_duplicate": {"near_duplicate", "exact_duplicate"},
    "flipped_duplicate": {"near_duplicate", "exact_duplicate"},
    "leak": {"leak"},
    "conflicting_label": {"conflicting_labels"},
    "blurred": {"blurry"},
    "darkened": {"dark"},
    "brightened": {"bright"},
    "constant": {"near_constant", "low_information"},
    "label_noise": {"label_issue"},
}
PAIRS = {"exact_duplicate", "reencoded_duplicate", "resized_duplicate", "cropped_duplicate",
         "flipped_duplicate", "leak", "conflicting_label"}

# Detectors: a group of reasons and the planted problems it is meant to find.
DETECTORS = [
    ("zero_byte", ["zero_byte"], ["zero_byte"]),
    ("truncated/undecodable", ["truncated", "undecodable"], ["truncated", "corrupt"]),
    ("wrong_extension", ["wrong_extension"], ["wrong_extension"]),
    ("exact_duplicate", ["exact_duplicate"], ["exact_duplicate", "reencoded_duplicate"]),
    ("near_duplicate", ["near_duplicate"],
     ["resized_duplicate", "cropped_duplicate", "flipped_duplicate"]),
    ("leak", ["leak"], ["leak"]),
    ("conflicting_labels", ["conflicting_labels"], ["conflicting_label"]),
    ("blurry", ["blurry"], ["blurred"]),
    ("dark", ["dark"], ["darkened"]),
    ("bright", ["bright"], ["brightened"]),
    ("near_constant/low_information", ["near_constant", "low_information"], ["constant"]),
    ("label_issue", ["label_issue"], ["label_noise"]),
]
ALL_REASONS = ["zero_byte", "truncated", "undecodable", "wrong_extension", "grayscale", "alpha",
               "high_bit_depth", "cmyk", "too_small", "too_large", "extreme_aspect",
               "exif_orientation", "blurry", "dark", "bright", "low_information",
               "near_constant", "exact_duplicate", "near_duplicate", "leak",
               "conflicting_labels", "label_issue", "outlier"]


def names(detail, path):
    """Whether a flag's detail names `path`: the whole detail, or the path as a whole word of
    it (so images/train/00001.png is not found inside images/train/000010.png)."""
    if not path:
        return False
    if detail.strip() == path:
        return True
    return re.search(r"(?<![\w/.\-])" + re.escape(path) + r"(?![\w/\-]|\.\w)", detail) is not None


def read_csv(source, required):
    reader = csv.DictReader(source)
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise SystemExit(f"{getattr(source, 'name', 'csv')}: missing column(s) "
                         f"{', '.join(missing)} (has {reader.fieldnames})")
    return list(reader)


def matches(problem, flag):
    """Whether one flag finds one planted problem."""
    if flag["reason"] not in ACCEPTED[problem["problem"]]:
        return False
    if problem["problem"] not in PAIRS:
        return flag["path"] == problem["path"]
    a, b = problem["path"], problem["detail"]
    return (flag["path"] == a and names(flag["detail"], b)) or \
           (flag["path"] == b and names(flag["detail"], a))


def score(planted, flagged):
    unknown = sorted({p["problem"] for p in planted} - set(ACCEPTED))
    if unknown:
        raise SystemExit(f"unknown planted problem(s): {', '.join(unknown)}")
    # Index the planted problems by each path a matching flag may carry.
    by_path = defaultdict(list)
    for k, p in enumerate(planted):
        by_path[p["path"]].append(k)
        if p["problem"] in PAIRS:
            by_path[p["detail"]].append(k)
    found_by = defaultdict(set)   # planted index -> reasons that found it
    flag_matched = []
    for f in flagged:
        hit = [k for k in by_path.get(f["path"], ()) if matches(planted[k], f)]
        for k in hit:
            found_by[k].add(f["reason"])
        flag_matched.append(bool(hit))

    flags_of = Counter(f["reason"] for f in flagged)
    matched_of = Counter(f["reason"] for f, m in zip(flagged, flag_matched) if m)

    def ratio(a, b):
        return a / b if b else None

    detectors = []
    for name, reasons, problems in DETECTORS:
        mine = [k for k, p in enumerate(planted) if p["problem"] in problems]
        found = sum(1 for k in mine if found_by[k])
        flags = sum(flags_of[r] for r in reasons)
        matched = sum(matched_of[r] for r in reasons)
        detectors.append({"detector": name, "reasons": reasons, "problems": problems,
                          "planted": len(mine), "found": found,
                          "recall": ratio(found, len(mine)), "flagged": flags,
                          "flagged_planted": matched, "precision": ratio(matched, flags)})
    per_problem = []
    for problem in ACCEPTED:
        mine = [k for k, p in enumerate(planted) if p["problem"] == problem]
        if not mine:
            continue
        found = sum(1 for k in mine if found_by[k])
        reasons = Counter(r for k in mine for r in found_by[k])
        per_problem.append({"problem": problem, "accepted": sorted(ACCEPTED[problem]),
                            "planted": len(mine), "found": found,
                            "recall": ratio(found, len(mine)), "found_by": dict(reasons)})
    grouped = {r for _, reasons, _ in DETECTORS for r in reasons}
    others = [{"reason": r, "flagged": flags_of[r]}
              for r in ALL_REASONS + sorted(set(flags_of) - set(ALL_REASONS))
              if r not in grouped and (flags_of[r] or r in ALL_REASONS)]
    return {"detectors": detectors, "problems": per_problem, "other_reasons": others,
            "flags": len(flagged), "planted": len(planted),
            "note": "Precision counts only planted problems as correct: unplanted flags may "
                    "be genuine problems of Fashion-MNIST itself."}


def fmt(value):
    return "-" if value is None else f"{value:.3f}"


def markdown(result):
    out = ["| detector | planted | found | recall | flagged | flagged planted | precision |",
           "|---|---:|---:|---:|---:|---:|---:|"]
    for d in result["detectors"]:
        out.append(f"| {d['detector']} | {d['planted']} | {d['found']} | {fmt(d['recall'])} | "
                   f"{d['flagged']} | {d['flagged_planted']} | {fmt(d['precision'])} |")
    out += ["", "found: flagged with any reason that counts for the problem (see the next "
            "table); precision = flags of the detector's reasons that match a planted problem / "
            f"all its flags. {result['note']}", "",
            "| planted problem | counts as | planted | found | recall | found by |",
            "|---|---|---:|---:|---:|---|"]
    for p in result["problems"]:
        by = ", ".join(f"{r} {n}" for r, n in sorted(p["found_by"].items())) or "-"
        out.append(f"| {p['problem']} | {'/'.join(p['accepted'])} | {p['planted']} | "
                   f"{p['found']} | {fmt(p['recall'])} | {by} |")
    out += ["", "| reason (nothing planted) | flagged |", "|---|---:|"]
    for o in result["other_reasons"]:
        out.append(f"| {o['reason']} | {o['flagged']} |")
    out += ["", f"{result['planted']} planted problems, {result['flags']} flags."]
    return "\n".join(out)


def self_test():
    planted = io.StringIO(
        "path,problem,detail\n"
        "images/train/00001.png,zero_byte,was 500 bytes\n"
        "images/test/00002.png,corrupt,\n"
        "images/train/planted_00001.png,exact_duplicate,images/train/00010.png\n"
        "images/train/planted_00002.png,resized_duplicate,images/train/00011.png\n"
        "images/train/planted_00003.png,leak,images/test/00012.png\n"
        "images/train/planted_00004.png,conflicting_label,images/train/00013.png\n"
        "images/train/00020.png,label_noise,Coat\n"
        "images/train/00021.png,label_noise,Bag\n")
    flagged = io.StringIO(
        "path,split,label,reason,detail,score\n"
        "images/train/00001.png,train,Coat,zero_byte,,0\n"                    # found
        "images/test/00002.png,test,Bag,undecodable,zlib error,0\n"           # found
        # the original flagged, naming the copy: found
        "images/train/00010.png,train,Bag,exact_duplicate,"
        "the same pixels as images/train/planted_00001.png,0\n"
        # right pair, but the detail names another image: not found
        "images/train/planted_00002.png,train,Bag,near_duplicate,"
        "perceptual hash 2 bits from images/train/000110.png,2\n"
        "images/train/planted_00003.png,train,Coat,leak,images/test/00012.png,0\n"  # found
        # both images of the conflicting pair: one planted problem, two matched flags
        "images/train/planted_00004.png,train,Coat,conflicting_labels,"
        "the same pixels as images/train/00013.png (labelled Bag there, Coat here),0\n"
        "images/train/00013.png,train,Bag,conflicting_labels,"
        "the same pixels as images/train/planted_00004.png,0\n"
        "images/train/00020.png,train,Bag,label_issue,suggested Coat,0.1\n"   # found
        "images/train/00030.png,train,Bag,label_issue,suggested Coat,0.2\n"   # unplanted
        "images/train/00021.png,train,Bag,blurry,sharpness 0.01,0.01\n"       # wrong reason
        "images/train/00040.png,train,Bag,outlier,,3\n")
    r = score(read_csv(planted, ["path", "problem", "detail"]),
              read_csv(flagged, ["path", "reason", "detail"]))
    d = {x["detector"]: x for x in r["detectors"]}
    want = {  # detector: (planted, found, flagged, flagged_planted)
        "zero_byte": (1, 1, 1, 1), "truncated/undecodable": (1, 1, 1, 1),
        "exact_duplicate": (1, 1, 1, 1), "near_duplicate": (1, 0, 1, 0), "leak": (1, 1, 1, 1),
        "conflicting_labels": (1, 1, 2, 2), "label_issue": (2, 1, 2, 1), "blurry": (0, 0, 1, 0),
    }
    bad = [f"{k}: want {v}, got {tuple(d[k][f] for f in ('planted', 'found', 'flagged', 'flagged_planted'))}"
           for k, v in want.items()
           if tuple(d[k][f] for f in ("planted", "found", "flagged", "flagged_planted")) != v]
    if d["label_issue"]["recall"] != 0.5 or d["label_issue"]["precision"] != 0.5:
        bad.append("label_issue recall/precision should be 0.5/0.5")
    if {o["reason"]: o["flagged"] for o in r["other_reasons"]}.get("outlier") != 1:
        bad.append("the outlier flag should be listed among the other reasons")
    if names("images/train/000110.png", "images/train/00011.png") or \
            not names("as images/train/00011.png.", "images/train/00011.png"):
        bad.append("names() word boundaries")
    print(markdown(r))
    if bad:
        print("\n".join(["", "self-test FAILED:"] + bad))
        return 1
    print("\nscore.py self-test passed")
    return 0


def main():
    args = sys.argv[1:]
    if args == ["--self-test"]:
        sys.exit(self_test())
    as_json = "--json" in args
    files = [a for a in args if a != "--json"]
    if len(files) != 2:
        sys.exit(__doc__)
    with open(files[0], newline="") as f:
        planted = read_csv(f, ["path", "problem", "detail"])
    with open(files[1], newline="") as f:
        flagged = read_csv(f, ["path", "reason", "detail"])
    result = score(planted, flagged)
    print(json.dumps(result, indent=1) if as_json else markdown(result))


main()
