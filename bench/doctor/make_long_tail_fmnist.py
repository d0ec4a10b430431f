"""Writes a long-tailed Fashion-MNIST as a finch `csv` dataset, for the class-imbalance
figures of `finch data doctor`.

usage: /usr/bin/python3 bench/doctor/make_long_tail_fmnist.py OUT_DIR [--imbalance 100]
           [--seed 0] [--root /usr/share/datasets/fashion-mnist]

The exponential profile of Cui et al. 2019 ("Class-balanced loss based on effective number
of samples"): class c (in label order, 0..9) keeps n_c = floor(6000 * imbalance^(-c / 9))
seeded-random train images, so class 0 keeps 6000 and class 9 keeps 6000 / imbalance
(60 at the default); all 10,000 test images are kept. Writes OUT_DIR/images/{train,test}/
NNNNN.png (NNNNN = the index in the Fashion-MNIST file, so an image can be traced back) and
the manifest OUT_DIR/data.csv (`path,label,split`, label = class name), and prints the
per-class counts.
"""
import argparse
import csv
import math
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fashion_mnist import CLASSES, ROOT, read_idx  # noqa: E402

PER_CLASS = 6000  # Fashion-MNIST's train images per class


def class_counts(imbalance, classes=len(CLASSES)):
    # The 1e-9 keeps a product that is an integer on paper (6000 * 100^-1 = 60) from
    # flooring to one less after floating-point rounding.
    return [math.floor(PER_CLASS * imbalance ** (-c / (classes - 1)) + 1e-9)
            for c in range(classes)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--imbalance", type=float, default=100.0,
                        help="n_0 / n_9, the head-to-tail ratio (>= 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", default=ROOT)
    args = parser.parse_args()
    if not args.imbalance >= 1:
        sys.exit("--imbalance must be at least 1")
    rng = np.random.default_rng(args.seed)
    counts = class_counts(args.imbalance)
    rows = []
    for split, stem in (("train", "train"), ("test", "t10k")):
        x = read_idx(os.path.join(args.root, f"{stem}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(args.root, f"{stem}-labels-idx1-ubyte.gz"))
        if split == "train":
            # Per class, a seeded random subset, kept in file order.
            keep = np.sort(np.concatenate([
                rng.choice(np.flatnonzero(y == c), counts[c], replace=False)
                for c in range(len(CLASSES))]))
        else:
            keep = np.arange(len(y))
        os.makedirs(os.path.join(args.out, "images", split), exist_ok=True)
        for i in keep:
            path = f"images/{split}/{i:05d}.png"
            Image.fromarray(x[i]).save(os.path.join(args.out, path))
            rows.append([path, CLASSES[y[i]], split])
    with open(os.path.join(args.out, "data.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    test = [r[1] for r in rows if r[2] == "test"]
    print(f"{'class':12s} {'train':>6s} {'test':>6s}")
    for c, name in enumerate(CLASSES):
        print(f"{name:12s} {counts[c]:6d} {test.count(name):6d}")
    print(f"wrote {sum(counts)} train and {len(test)} test images (imbalance "
          f"{counts[0] / counts[-1]:.1f}) to {args.out}")


main()
