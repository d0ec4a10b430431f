"""Copies of one real photograph for the doctor's duplicate checks on photo-sized images.

usage: make_photo_copies.py OUT_DIR [PHOTO]
PHOTO defaults to grace_hopper.jpg of Debian's python-matplotlib-data (512 x 600). Writes an
imagefolder: a/orig.jpg (quality 95), a/half.jpg (half size, quality 80), a/dark.jpg (x 0.12),
b/crop10.jpg (5% cut from every side), b/mirror.png, b/blur.jpg (Gaussian radius 3),
b/rot.jpg (rotated 90 degrees). PIL only.
"""
import glob
import os
import sys

from PIL import Image, ImageFilter, ImageOps


def main():
    out = sys.argv[1]
    photo = sys.argv[2] if len(sys.argv) > 2 else sorted(
        glob.glob("/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg") +
        glob.glob("/usr/share/**/grace_hopper.jpg", recursive=True))[0]
    for d in ("a", "b"):
        os.makedirs(os.path.join(out, d), exist_ok=True)
    im = Image.open(photo).convert("RGB")
    w, h = im.size
    im.save(os.path.join(out, "a/orig.jpg"), quality=95)
    im.resize((w // 2, h // 2)).save(os.path.join(out, "a/half.jpg"), quality=80)
    im.point(lambda v: v * 0.12).save(os.path.join(out, "a/dark.jpg"), quality=95)
    im.crop((w // 20, h // 20, w - w // 20, h - h // 20)).save(os.path.join(out, "b/crop10.jpg"),
                                                               quality=90)
    ImageOps.mirror(im).save(os.path.join(out, "b/mirror.png"))
    im.filter(ImageFilter.GaussianBlur(3)).save(os.path.join(out, "b/blur.jpg"), quality=95)
    im.rotate(90, expand=True).save(os.path.join(out, "b/rot.jpg"), quality=95)
    print(f"wrote 7 images of {photo} ({w} x {h}) to {out}")


if __name__ == "__main__":
    main()
