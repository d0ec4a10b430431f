"""Writes Fashion-MNIST in the FGVC-Aircraft 2013b layout with a three-level hierarchy, for
the taxonomy benchmark of docs/open-world.md (generated, never committed):

  variant (the 10 Fashion-MNIST classes) -> family (6) -> manufacturer (3)
    T-shirt/top, Shirt        -> light tops        -> clothing
    Pullover, Coat            -> warm tops         -> clothing
    Trouser, Dress            -> legwear & dresses -> clothing
    Sandal                    -> open footwear     -> footwear
    Sneaker, Ankle boot       -> closed footwear   -> footwear
    Bag                       -> bags              -> accessories

Splits: train = the first 54,000 train images, val = the last 6,000, trainval = both, test =
the 10,000 test images. Images are 28 x 28 JPEGs (quality 95) with no copyright banner, so
train with data.crop_banner=false.

usage: /usr/bin/python3 bench/make_aircraft_fmnist.py OUT [--root /usr/share/datasets/fashion-mnist]
"""
import argparse
import os
import sys

from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_mnist import CLASSES, ROOT, read_idx  # noqa: E402

FAMILY = {"T-shirt/top": "light tops", "Shirt": "light tops", "Pullover": "warm tops",
          "Coat": "warm tops", "Trouser": "legwear & dresses", "Dress": "legwear & dresses",
          "Sandal": "open footwear", "Sneaker": "closed footwear", "Ankle boot": "closed footwear",
          "Bag": "bags"}
MANUFACTURER = {"light tops": "clothing", "warm tops": "clothing",
                "legwear & dresses": "clothing", "open footwear": "footwear",
                "closed footwear": "footwear", "bags": "accessories"}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--root", default=ROOT)
    args = parser.parse_args()
    data = os.path.join(args.out, "data")
    os.makedirs(os.path.join(data, "images"), exist_ok=True)
    train_x = read_idx(os.path.join(args.root, "train-images-idx3-ubyte.gz"))
    train_y = read_idx(os.path.join(args.root, "train-labels-idx1-ubyte.gz"))
    test_x = read_idx(os.path.join(args.root, "t10k-images-idx3-ubyte.gz"))
    test_y = read_idx(os.path.join(args.root, "t10k-labels-idx1-ubyte.gz"))
    splits = {"train": [], "val": [], "test": []}
    for i, (x, y) in enumerate(zip(train_x, train_y)):
        splits["train" if i < 54000 else "val"].append((f"{1000000 + i:07d}", x, y))
    for i, (x, y) in enumerate(zip(test_x, test_y)):
        splits["test"].append((f"{2000000 + i:07d}", x, y))
    splits["trainval"] = splits["train"] + splits["val"]
    families = sorted(set(FAMILY.values()))
    with open(os.path.join(data, "variants.txt"), "w") as f:
        f.write("".join(c + "\n" for c in CLASSES))
    with open(os.path.join(data, "families.txt"), "w") as f:
        f.write("".join(c + "\n" for c in families))
    with open(os.path.join(data, "manufacturers.txt"), "w") as f:
        f.write("".join(c + "\n" for c in sorted(set(MANUFACTURER.values()))))
    boxes = []
    for split, items in splits.items():
        files = {level: open(os.path.join(data, f"images_{level}_{split}.txt"), "w")
                 for level in ("variant", "family", "manufacturer")}
        with open(os.path.join(data, f"images_{split}.txt"), "w") as ids:
            for image_id, x, y in items:
                name = CLASSES[y]
                ids.write(image_id + "\n")
                files["variant"].write(f"{image_id} {name}\n")
                files["family"].write(f"{image_id} {FAMILY[name]}\n")
                files["manufacturer"].write(f"{image_id} {MANUFACTURER[FAMILY[name]]}\n")
                if split != "trainval":
                    Image.fromarray(x).save(os.path.join(data, "images", image_id + ".jpg"),
                                            quality=95)
                    boxes.append(f"{image_id} 1 1 28 28\n")
        for f in files.values():
            f.close()
    with open(os.path.join(data, "images_box.txt"), "w") as f:
        f.write("".join(boxes))
    print(f"wrote {sum(len(splits[s]) for s in ('train', 'val', 'test'))} images to {data}")


main()
