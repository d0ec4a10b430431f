"""Shared helpers for the parity reference scripts (run with Debian's /usr/bin/python3).

The `safetensors` Python package is not in Debian 12: the writer is scripts/pth_to_safetensors.py's,
the reader below parses the format directly.
"""
import json
import os
import struct
import sys

import torch

# One safetensors writer for the repository: the one users run to convert .pth files.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from pth_to_safetensors import save_safetensors  # noqa: E402,F401

_DTYPES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64", torch.uint8: "U8"}


def load_safetensors(path):
    inverse = {v: k for k, v in _DTYPES.items()}
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        out[name] = torch.frombuffer(bytearray(data[begin:end]), dtype=inverse[info["dtype"]]).reshape(info["shape"])
    return out, meta


def perturb_batchnorm(model):
    """Random BatchNorm statistics and affine parameters (from torch's current seed), so that
    eval-mode BN is not the identity and a wrong BN computation shows in the outputs."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
