#!/usr/bin/python3
"""Converts a PyTorch weights file (.pth / .pt / .bin) to safetensors for finch.

usage: /usr/bin/python3 scripts/pth_to_safetensors.py IN.pth OUT.safetensors

LibTorch (what finch links) reads only plain dicts of tensors from .pth files; the state
dicts torchvision and most repositories publish are OrderedDicts (what
`torch.save(model.state_dict())` writes), which need Python. This reads the file with
`torch.load(weights_only=True)` (no code from the file is executed), unwraps training
checkpoints ({"state_dict": ...} or {"model": ...}) and writes every tensor, names unchanged.
Needs python3-torch only (Debian 12 has no python3-safetensors).
"""
import json
import struct
import sys

import torch

_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.float16: "F16",
           torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
           torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def save_safetensors(tensors, path, metadata=None):
    """Writes {name: tensor} as safetensors: 8-byte header length, JSON header, raw bytes."""
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous().cpu()
        raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t  # numpy has no bf16
        data = raw.numpy().tobytes()
        header[name] = {"dtype": _DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for c in chunks:
            f.write(c)


def state_dict_of(obj):
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            return state_dict_of(obj[key])
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    source, target = sys.argv[1], sys.argv[2]
    obj = torch.load(source, map_location="cpu", weights_only=True)
    tensors = state_dict_of(obj)
    if not tensors:
        sys.exit(f"{source}: no tensors found")
    save_safetensors(tensors, target, {"converted_from": source})
    print(f"{target}: {len(tensors)} tensors")


if __name__ == "__main__":
    main()
