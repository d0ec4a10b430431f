"""Writes images whose headers the data doctor must read, with PIL (a writer finch did not write).

  odd_images_writer.py OUT_DIR
cmyk.jpg (a CMYK JPEG), gray16.png (16-bit grey PNG), gray_alpha.png (LA), palette.png (P),
rotated.jpg (an RGB JPEG with Exif orientation 6), rgb.jpg (an RGB JPEG, no Exif), all 48 x 32
of a gradient with texture.
"""
import os
import sys

import numpy as np
from PIL import Image


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:32, 0:48]
    base = (x * 3 + y * 2 + rng.integers(0, 80, (32, 48))).clip(0, 255).astype(np.uint8)
    rgb = np.stack([base, 255 - base, (base // 2 + 60)], axis=2).astype(np.uint8)
    Image.fromarray(rgb).convert("CMYK").save(os.path.join(out, "cmyk.jpg"), quality=95)
    Image.fromarray((base.astype(np.uint16) * 257), mode="I;16").save(os.path.join(out, "gray16.png"))
    Image.fromarray(np.stack([base, np.full_like(base, 200)], axis=2), mode="LA").save(
        os.path.join(out, "gray_alpha.png"))
    Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE).save(os.path.join(out, "palette.png"))
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(os.path.join(out, "rotated.jpg"), quality=95, exif=exif)
    Image.fromarray(rgb).save(os.path.join(out, "rgb.jpg"), quality=95)
    print("wrote", out)


if __name__ == "__main__":
    main()
