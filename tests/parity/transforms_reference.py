"""torchvision reference for finch's image transforms (tests/unit/data/transforms_test.cpp).

  transforms_reference.py INPUT.png OUTDIR

Reads the RGB PNG the C++ test wrote, applies torchvision 0.14 functional ops on the uint8
CHW tensor (the tensor path: bilinear resize without antialiasing, round-to-nearest back to
uint8), and writes each result as raw bytes OUTDIR/NAME.bin: uint8 HxWxC for images,
float32 CxHxW (little-endian) for the normalised tensor. Prints one line per result:
`NAME DTYPE D0 D1 D2`.
"""
import os
import sys

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def main():
    path, out = sys.argv[1], sys.argv[2]
    img = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).contiguous()
    bilinear, nearest, bicubic = (InterpolationMode.BILINEAR, InterpolationMode.NEAREST,
                                  InterpolationMode.BICUBIC)
    results = {
        # finch `resize {size: 24}`: shorter side 24, aspect kept.
        "resize_short24": F.resize(img, [24], bilinear, antialias=False),
        "resize_up_50x80": F.resize(img, [50, 80], bilinear, antialias=False),
        "resize_down_20x30": F.resize(img, [20, 30], bilinear, antialias=False),
        "resize_nearest_20x30": F.resize(img, [20, 30], nearest),
        "resize_bicubic_50x70": F.resize(img, [50, 70], bicubic, antialias=False),
        "center_crop_20": F.center_crop(img, [20]),
        "center_crop_18x22": F.center_crop(img, [18, 22]),
        "center_crop_45x30": F.center_crop(img, [45, 30]),
        "center_crop_40x60": F.center_crop(img, [40, 60]),
        "hflip": F.hflip(img),
        # finch `pad_crop {padding: 4}` must return some 37x53 window of this.
        "pad4": F.pad(img, [4], fill=0),
        "rotate90": F.rotate(img, 90.0, nearest),
        "rotate30": F.rotate(img, 30.0, nearest),
        "brightness_1.3": F.adjust_brightness(img, 1.3),
        "contrast_0.6": F.adjust_contrast(img, 0.6),
        "saturation_1.7": F.adjust_saturation(img, 1.7),
        "hue_0.12": F.adjust_hue(img, 0.12),
        "hue_-0.3": F.adjust_hue(img, -0.3),
        "normalize": F.normalize(F.convert_image_dtype(img, torch.float32), MEAN, STD),
    }
    # finch `resize {antialias: true}`: PIL's own resize, what torchvision does on PIL images.
    pil = Image.open(path).convert("RGB")
    for name, (w, h) in {"pil_down_17x23": (23, 17), "pil_up_50x80": (80, 50),
                         "pil_mixed_90x21": (21, 90)}.items():
        results[name] = torch.from_numpy(np.array(pil.resize((w, h), Image.BILINEAR))).permute(2, 0, 1)
    for name, t in results.items():
        if t.dtype == torch.uint8:
            array = t.permute(1, 2, 0).contiguous().numpy()  # HWC like cv::Mat
        else:
            array = t.contiguous().numpy().astype("<f4")
        array.tofile(os.path.join(out, name + ".bin"))
        print(name, "uint8" if t.dtype == torch.uint8 else "float32", *array.shape)


if __name__ == "__main__":
    main()
