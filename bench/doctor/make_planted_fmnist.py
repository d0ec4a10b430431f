"""Writes Fashion-MNIST as a finch `csv` dataset with known, planted problems, for scoring
`finch data doctor` (bench/doctor/score.py compares its flagged.csv with planted.csv).

usage: /usr/bin/python3 bench/doctor/make_planted_fmnist.py OUT_DIR [--seed 0]
           [--per-problem 25] [--noise 0.05] [--noise-kind symmetric|pair]
           [--train N] [--test N] [--root /usr/share/datasets/fashion-mnist]

Writes
  OUT_DIR/images/{train,test}/NNNNN.png   every image (28 x 28 grey PNG), NNNNN = its index
                                          in the Fashion-MNIST file (--train/--test N keep
                                          the first N)
  OUT_DIR/images/{train,test}/planted_NNNNN.{png,jpg}   the planted extra copies
  OUT_DIR/data.csv      the manifest `path,label,split` (label = class name)
  OUT_DIR/planted.csv   the ground truth `path,problem,detail`, one row per planted problem

Problems, --per-problem of each at seeded random items (no item carries two problems):
  file damage, in place:  zero_byte, truncated (first half of the bytes), corrupt (the
                          IDAT payload replaced by random bytes, same size), wrong_extension
                          (JPEG bytes under the .png name)
  extra copies (same split and label; detail = the original's path): exact_duplicate
                          (same bytes), reencoded_duplicate (JPEG q95, .jpg),
                          resized_duplicate (40 x 40 bicubic), cropped_duplicate (1-2 px off
                          each border, resized back), flipped_duplicate (mirror image)
  leak                    a test image's bytes added to train with its test label
                          (detail = the test path)
  conflicting_label       the same bytes in the same split under another label
  image quality, in place: blurred (Gaussian radius 2; train images), darkened (v * 0.15),
                          brightened (255 - (255 - v) * 0.15), constant (one flat grey)
  label_noise             --noise of the remaining train items get a wrong label in
                          data.csv (symmetric: any other class; pair: c -> c + 1 mod 10);
                          detail = the true class name
"""
import argparse
import csv
import io
import os
import struct
import sys
import time
import zlib

import numpy as np
from PIL import Image, ImageFilter, ImageOps

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from fashion_mnist import CLASSES, ROOT, read_idx  # noqa: E402


# Problems in planting order. "any" = an item of either split; "train" = a train item.
FILE_DAMAGE = ["zero_byte", "truncated", "corrupt", "wrong_extension"]
COPIES = ["exact_duplicate", "reencoded_duplicate", "resized_duplicate", "cropped_duplicate",
          "flipped_duplicate"]
QUALITY = ["blurred", "darkened", "brightened", "constant"]
PROBLEMS = FILE_DAMAGE + COPIES + ["leak", "conflicting_label"] + QUALITY


def encode(pixels, fmt="PNG"):
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    else:
        Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def png_chunks(data):
    """(offset of the payload, length, type) of each chunk after the 8-byte signature."""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        out.append((pos + 8, length, kind))
        pos += 12 + length
    return out


def inflates_to_image(idat, height, row_bytes):
    # A random payload that happened to be a valid zlib stream of well-filtered rows would
    # decode to an image, i.e. not be corrupt; re-drawn when that (astronomically rare) happens.
    try:
        d = zlib.decompressobj()
        raw = d.decompress(idat)
        if not d.eof or len(raw) != height * (row_bytes + 1):
            return False
        return all(raw[r * (row_bytes + 1)] <= 4 for r in range(height))
    except zlib.error:
        return False


def corrupt_png(data, rng):
    """Replaces the IDAT payload with random bytes of the same size: the signature, header,
    chunk framing (and stale CRCs) stay, so the file still looks like a PNG until decoded."""
    out = bytearray(data)
    idat = [(off, n) for off, n, kind in png_chunks(data) if kind == b"IDAT"]
    width, height = struct.unpack(">II", data[16:24])
    while True:
        for off, n in idat:
            out[off:off + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        payload = b"".join(bytes(out[off:off + n]) for off, n in idat)
        if not inflates_to_image(payload, height, width):
            return bytes(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-problem", type=int, default=25)
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--noise-kind", choices=["symmetric", "pair"], default="symmetric")
    parser.add_argument("--train", type=int, default=None, help="keep the first N train images")
    parser.add_argument("--test", type=int, default=None, help="keep the first N test images")
    parser.add_argument("--root", default=ROOT)
    args = parser.parse_args()
    if not 0 <= args.noise < 1:
        sys.exit("--noise must be in [0, 1)")
    start = time.time()
    rng = np.random.default_rng(args.seed)

    pixels, labels = {}, {}
    for split, stem in (("train", "train"), ("test", "t10k")):
        keep = args.train if split == "train" else args.test
        x = read_idx(os.path.join(args.root, f"{stem}-images-idx3-ubyte.gz"))
        y = read_idx(os.path.join(args.root, f"{stem}-labels-idx1-ubyte.gz"))
        pixels[split], labels[split] = x[:keep], y[:keep].astype(int)
    items = [(s, i) for s in ("train", "test") for i in range(len(labels[s]))]
    path_of = {item: f"images/{item[0]}/{item[1]:05d}.png" for item in items}
    split_code = np.array([0 if s == "train" else 1 for s, _ in items])
    free = np.ones(len(items), bool)  # items not yet carrying (or sourcing) a problem

    def draw(split):
        """A random free item of `split` ("any": either), taken so no later problem reuses it."""
        allowed = free if split == "any" else free & (split_code == (0 if split == "train" else 1))
        candidates = np.flatnonzero(allowed)
        if len(candidates) == 0:
            where = "images" if split == "any" else split + " images"
            sys.exit(f"not enough {where} for --per-problem {args.per_problem}")
        k = candidates[rng.integers(len(candidates))]
        free[k] = False
        return items[k]

    # Plan every problem first, then write each file once (its final bytes); the draws come
    # in a fixed order, so a seed reproduces the dataset byte for byte.
    in_place = {}   # item -> (problem, parameter)
    extras = []     # (split, path, label, problem, source item, crop or None)
    truth = []      # planted.csv rows
    # Distinct flat greys, so the constant images are not exact duplicates of each other.
    greys = rng.permutation(np.arange(32, 224))
    planted_no = 0

    def extra_name(split, ext):
        nonlocal planted_no
        planted_no += 1
        return f"images/{split}/planted_{planted_no:05d}.{ext}"

    for problem in PROBLEMS:
        for r in range(args.per_problem):
            if problem in FILE_DAMAGE or problem in QUALITY:
                item = draw("train" if problem == "blurred" else "any")
                param = int(greys[r % len(greys)]) if problem == "constant" else None
                in_place[item] = (problem, param)
                truth.append([path_of[item], problem, ""])  # detail filled in when written
                continue
            source = draw("test" if problem == "leak" else "any")
            split = "train" if problem == "leak" else source[0]
            label = labels[source[0]][source[1]]
            if problem == "conflicting_label":
                label = (label + int(rng.integers(1, len(CLASSES)))) % len(CLASSES)
            crop = tuple(int(v) for v in rng.integers(1, 3, 4)) if problem == "cropped_duplicate" \
                else None
            path = extra_name(split, "jpg" if problem == "reencoded_duplicate" else "png")
            extras.append((split, path, label, problem, source, crop))
            truth.append([path, problem, path_of[source]])

    # Label noise on the train items untouched by the problems above.
    eligible = np.flatnonzero(free & (split_code == 0))
    n_noisy = int(np.floor(args.noise * len(eligible) + 0.5))
    noisy = sorted(rng.choice(eligible, n_noisy, replace=False)) if n_noisy else []
    given = {split: labels[split].copy() for split in labels}
    for k in noisy:
        split, i = items[k]
        true = labels[split][i]
        if args.noise_kind == "pair":
            wrong = (true + 1) % len(CLASSES)
        else:
            wrong = (true + int(rng.integers(1, len(CLASSES)))) % len(CLASSES)
        given[split][i] = wrong
        truth.append([path_of[items[k]], "label_noise", CLASSES[true]])

    # The originals, with the in-place problems applied.
    for split in ("train", "test"):
        os.makedirs(os.path.join(args.out, "images", split), exist_ok=True)
    details = {}
    sources = {extra[4] for extra in extras}
    original_bytes = {}  # PNG bytes of the copies' sources (never damaged: items are disjoint)
    for item in items:
        px = pixels[item[0]][item[1]]
        problem, param = in_place.get(item, (None, None))
        detail = ""
        if problem == "blurred":
            px = np.asarray(Image.fromarray(px).filter(ImageFilter.GaussianBlur(2)))
            detail = "Gaussian blur radius 2"
        elif problem == "darkened":
            px = np.round(px * 0.15).astype(np.uint8)
            detail = "v * 0.15"
        elif problem == "brightened":
            px = np.round(255 - (255 - px.astype(float)) * 0.15).astype(np.uint8)
            detail = "255 - (255 - v) * 0.15"
        elif problem == "constant":
            px = np.full_like(px, param)
            detail = f"grey {param}"
        data = encode(px)
        if item in sources:
            original_bytes[item] = data
        if problem == "zero_byte":
            detail = f"was {len(data)} bytes"
            data = b""
        elif problem == "truncated":
            detail = f"kept {len(data) // 2} of {len(data)} bytes"
            data = data[:len(data) // 2]
        elif problem == "corrupt":
            data = corrupt_png(data, rng)
            detail = "IDAT payload replaced by random bytes"
        elif problem == "wrong_extension":
            data = encode(px, "JPEG")
            detail = "JPEG (quality 95) bytes under a .png name"
        if problem:
            details[path_of[item]] = detail
        with open(os.path.join(args.out, path_of[item]), "wb") as f:
            f.write(data)
    for row in truth:
        if row[0] in details:
            row[2] = details[row[0]]

    # The planted extra copies.
    rows = [[path_of[item], CLASSES[given[item[0]][item[1]]], item[0]] for item in items]
    for split, path, label, problem, source, crop in extras:
        px = pixels[source[0]][source[1]]
        if problem in ("exact_duplicate", "leak", "conflicting_label"):
            data = original_bytes[source]
        elif problem == "reencoded_duplicate":
            data = encode(px, "JPEG")
        elif problem == "resized_duplicate":
            data = encode(np.asarray(Image.fromarray(px).resize((40, 40), Image.BICUBIC)))
        elif problem == "cropped_duplicate":
            left, top, right, bottom = crop
            h, w = px.shape
            img = Image.fromarray(px).crop((left, top, w - right, h - bottom))
            data = encode(np.asarray(img.resize((w, h), Image.BICUBIC)))
        else:  # flipped_duplicate
            data = encode(np.asarray(ImageOps.mirror(Image.fromarray(px))))
        with open(os.path.join(args.out, path), "wb") as f:
            f.write(data)
        rows.append([path, CLASSES[label], split])

    with open(os.path.join(args.out, "data.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)
    with open(os.path.join(args.out, "planted.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "problem", "detail"])
        w.writerows(truth)

    for problem in PROBLEMS + ["label_noise"]:
        mine = [row for row in truth if row[1] == problem]
        splits = [r[0].split("/")[1] for r in mine]
        example = f"  e.g. {mine[0][0]}" + (f" <- {mine[0][2]}" if mine[0][2] else "") \
            if mine else ""
        print(f"{problem:20s} {len(mine):5d}  (train {splits.count('train')}, "
              f"test {splits.count('test')}){example}")
    n_train = sum(1 for r in rows if r[2] == "train")
    print(f"wrote {len(rows)} images ({n_train} train, {len(rows) - n_train} test), "
          f"{len(truth)} planted problems ({args.noise_kind} noise {args.noise}) to {args.out} "
          f"in {time.time() - start:.1f} s")


main()
