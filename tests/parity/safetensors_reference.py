"""Reference safetensors reader/writer for finch's parity test (python3-torch only).

The `safetensors` package is not a Debian dependency, so this is a small independent
implementation of the format that applies the Python library's validation rules
(offsets contiguous from 0 and covering the whole buffer, header padded so the buffer
starts 8-byte aligned). The expected tensors are built here from the same formulas as
in tests/unit/io/safetensors_test.cpp, so each side checks the other's bytes.

  safetensors_reference.py check FILE   # FILE (written by finch) holds expected()
  safetensors_reference.py write FILE   # write expected() for finch to read
"""
import json
import struct
import sys

import torch

DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
    "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
NAMES = {v: k for k, v in DTYPES.items()}


def expected():
    """Name -> tensor, in the (unsorted) order the writer lays them out, and metadata."""
    tensors = {
        "layer.f64": torch.arange(6, dtype=torch.float64).reshape(2, 3) * 0.5 - 1,
        "a.f32": torch.arange(12, dtype=torch.float32).reshape(3, 4) / 3,
        "f16": (torch.arange(-4, 4, dtype=torch.float32) / 8).to(torch.float16),
        "bf16": (torch.arange(8, dtype=torch.float32) / 4 - 1).to(torch.bfloat16).reshape(2, 2, 2),
        "i64": torch.tensor([-(2 ** 40), 0, 2 ** 40 + 3], dtype=torch.int64),
        "i32": torch.tensor([[-2 ** 31, 7], [2 ** 31 - 1, -1]], dtype=torch.int32),
        "i16": torch.tensor([-32768, 1, 32767], dtype=torch.int16),
        "i8": torch.tensor([-128, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 127, 255], dtype=torch.uint8),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25, dtype=torch.float32),
        "empty": torch.zeros(0, 3, dtype=torch.float32),
    }
    return tensors, {"format": "pt", "note": "gr\u00fc\u00dfe"}


def to_bytes(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()


def write(path):
    tensors, metadata = expected()
    header, data = {"__metadata__": metadata}, b""
    for name, t in tensors.items():
        raw = to_bytes(t)
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + data)


def read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    assert (8 + n) % 8 == 0, f"header length {n} leaves the buffer unaligned"
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    buffer = raw[8 + n:]
    metadata = header.pop("__metadata__", {})
    tensors, start = {}, 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"]):
        begin, end = info["data_offsets"]
        assert begin == start and end >= begin, f"{name}: offsets {begin},{end} not contiguous"
        start = end
        dtype, shape = DTYPES[info["dtype"]], info["shape"]
        if end == begin:
            t = torch.empty(shape, dtype=dtype)
        else:
            t = torch.frombuffer(bytearray(buffer[begin:end]), dtype=dtype).reshape(shape)
        tensors[name] = t
    assert start == len(buffer), f"offsets cover {start} of {len(buffer)} data bytes"
    return tensors, metadata


def check(path):
    tensors, metadata = read(path)
    want, want_metadata = expected()
    assert metadata == want_metadata, f"metadata {metadata} != {want_metadata}"
    assert sorted(tensors) == sorted(want), f"names {sorted(tensors)} != {sorted(want)}"
    for name, t in want.items():
        got = tensors[name]
        assert got.dtype == t.dtype, f"{name}: dtype {got.dtype} != {t.dtype}"
        assert got.shape == t.shape, f"{name}: shape {tuple(got.shape)} != {tuple(t.shape)}"
        assert torch.equal(got, t), f"{name}: values {got} != {t}"
    print(f"ok: {len(tensors)} tensors match")


if __name__ == "__main__":
    mode, path = sys.argv[1], sys.argv[2]
    {"check": check, "write": write}[mode](path)
