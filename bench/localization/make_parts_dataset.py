#!/usr/bin/env python3
"""Generated weakly-supervised-localization data: clutter with one small discriminative part.

usage: make_parts_dataset.py OUT_DIR [--train N] [--test N] [--size 64] [--part 10] [--seed 0]

Each image is SIZE x SIZE RGB random clutter (noise, random rectangles and ellipses in random
colours) with one PART x PART glyph pasted at a random position. There are 4 classes of
glyph (a cross, a ring, a diagonal, a checkerboard), drawn in white on black so that they
stand out from any clutter; the label depends only on the glyph, so a classifier that works
must look at the part, and the part's box is the ground truth for CorLoc.
Writes OUT_DIR/images/*.png and OUT_DIR/parts.csv with the finch csv format's header
`path,label,split,x,y,w,h` (boxes in pixels, top-left corner and size). Use with
  finch train ... --set data.format=csv --set data.root=OUT_DIR --set data.csv_file=parts.csv
(numpy and PIL only; Debian's python3-numpy, python3-pil).
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ["cross", "ring", "diagonal", "checker"]


def glyph(kind, n):
    g = np.zeros((n, n), dtype=bool)
    c = n // 2
    if kind == "cross":
        g[c - 1:c + 1, :] = True
        g[:, c - 1:c + 1] = True
    elif kind == "ring":
        yy, xx = np.mgrid[0:n, 0:n]
        r = np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2)
        g[(r > n / 2 - 2.5) & (r <= n / 2 - 0.5)] = True
    elif kind == "diagonal":
        for i in range(n):
            g[i, max(0, i - 1):min(n, i + 2)] = True
    elif kind == "checker":
        s = max(1, n // 4)
        yy, xx = np.mgrid[0:n, 0:n]
        g[((yy // s) + (xx // s)) % 2 == 0] = True
    return g


def clutter(rng, size):
    img = Image.fromarray(rng.integers(40, 200, (size, size, 3), dtype=np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(rng.integers(4, 9)):
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(4, size // 2, 2)
        colour = tuple(int(v) for v in rng.integers(30, 220, 3))
        box = [int(x0), int(y0), int(x0 + w), int(y0 + h)]
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)(box, fill=colour)
    return np.asarray(img).copy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=800)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--part", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    glyphs = {k: glyph(k, args.part) for k in CLASSES}
    lines = ["path,label,split,x,y,w,h"]
    for split, count in (("train", args.train), ("test", args.test)):
        for i in range(count):
            label = CLASSES[i % len(CLASSES)]
            img = clutter(rng, args.size)
            x, y = (int(v) for v in rng.integers(0, args.size - args.part + 1, 2))
            patch = np.where(glyphs[label][..., None], 255, 0).astype(np.uint8)
            img[y:y + args.part, x:x + args.part] = patch
            name = "images/%s_%04d.png" % (split, i)
            Image.fromarray(img).save(os.path.join(args.out, name))
            lines.append("%s,%s,%s,%d,%d,%d,%d" % (name, label, split, x, y, args.part, args.part))
    with open(os.path.join(args.out, "parts.csv"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote", len(lines) - 1, "images to", args.out)


if __name__ == "__main__":
    main()
