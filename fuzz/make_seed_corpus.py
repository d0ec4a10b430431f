"""Writes a small seed corpus of safetensors files for safetensors_fuzz (plain python3).

  python3 fuzz/make_seed_corpus.py OUT_DIR
"""
import json
import os
import struct
import sys

SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
         "U8": 1, "BOOL": 1}


def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape)], laid out in order with bytes 0/1 (valid even for BOOL)."""
    header, data = {}, b""
    if metadata:
        header["__metadata__"] = metadata
    for name, dtype, shape in tensors:
        count = 1
        for d in shape:
            count *= d
        raw = bytes(i % 2 for i in range(count * SIZES[dtype]))
        offsets = [len(data), len(data) + len(raw)]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": offsets}
        data += raw
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def main(out):
    os.makedirs(out, exist_ok=True)
    seeds = {"empty": safetensors([]),
             "metadata": safetensors([("w", "F32", [2, 2])], {"format": "pt", "epoch": "3"}),
             "scalar_and_empty": safetensors([("s", "F64", []), ("e", "F32", [0, 3])]),
             "all_dtypes": safetensors([(d.lower(), d, [2, 3]) for d in SIZES])}
    for dtype in SIZES:
        seeds["one_" + dtype] = safetensors([("t", dtype, [3])])
    for name, data in seeds.items():
        with open(os.path.join(out, name + ".safetensors"), "wb") as f:
            f.write(data)
    print(f"wrote {len(seeds)} seeds to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
