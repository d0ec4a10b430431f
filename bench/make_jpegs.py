"""Generates a benchmark ImageFolder of photographic-looking JPEGs (~500x375, CUB's typical
size): smooth colour gradients, a few blurred ellipses and polygons, sensor-like noise,
JPEG quality drawn from 75-95. Deterministic in --seed. Images are generated, never
committed.

usage: /usr/bin/python3 bench/make_jpegs.py OUT [--classes 4] [--per-class 100] [--seed 0]
"""
import argparse
import os

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def make_image(rng, w, h):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    angle = rng.uniform(0, np.pi)
    t = (np.cos(angle) * x / w + np.sin(angle) * y / h)
    t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    pil = Image.fromarray(img.astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for _ in range(rng.integers(3, 8)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        rx, ry = rng.uniform(20, w / 3), rng.uniform(20, h / 3)
        colour = tuple(int(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
        else:
            pts = [(cx + rx * np.cos(a), cy + ry * np.sin(a))
                   for a in np.sort(rng.uniform(0, 2 * np.pi, rng.integers(3, 7)))]
            draw.polygon(pts, fill=colour)
    pil = pil.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.5)))
    arr = np.asarray(pil).astype(np.float32) + rng.normal(0, rng.uniform(3, 10), (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--per-class", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    for c in range(args.classes):
        folder = os.path.join(args.out, "train", f"class{c}")
        os.makedirs(folder, exist_ok=True)
        for i in range(args.per_class):
            w, h = (500, 375) if rng.random() < 0.7 else (375, 500)
            w += int(rng.integers(-20, 21))
            h += int(rng.integers(-20, 21))
            make_image(rng, w, h).save(os.path.join(folder, f"{i:05d}.jpg"),
                                       quality=int(rng.integers(75, 96)))


if __name__ == "__main__":
    main()
