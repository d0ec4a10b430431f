"""A minimal GGUF (v2 / v3) writer and reader for finch's tests (python3-torch only).

Written from the format specification (github.com/ggerganov/ggml, docs/gguf.md), independently
of finch's C++ reader: header ("GGUF", u32 version, u64 tensor count, u64 metadata count), typed
metadata key/values, tensor infos (name, u32 n_dims, u64 dims in ggml order = torch's reversed,
u32 ggml type, u64 offset into the data section), zero padding to `general.alignment` (default
32), then the data section, each tensor at an aligned offset. Little-endian only.

  gguf_writer.py fixtures DIR   # unit-test fixtures (write_fixtures below)
  gguf_writer.py dump FILE      # FILE's metadata and tensor table as JSON
"""
import json
import struct
import sys

import torch

# Metadata value types.
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
           FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

# ggml tensor types this module writes and reads.
F32, F16, Q8_0, BF16 = 0, 1, 8, 30
TYPE_NAMES = {"F32": F32, "F16": F16, "Q8_0": Q8_0, "BF16": BF16}
Q8_BLOCK = 32


class Value:
    """A metadata value with its GGUF type; arrays: Value(ARRAY, [Value, ...], element_type)."""

    def __init__(self, type_, value, element_type=None):
        self.type, self.value, self.element_type = type_, value, element_type


def _string(s):
    raw = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("<Q", len(raw)) + raw


def _value_bytes(v):
    if v.type == STRING:
        return _string(v.value)
    if v.type == ARRAY:
        out = struct.pack("<IQ", v.element_type, len(v.value))
        for item in v.value:
            assert item.type == v.element_type
            out += _value_bytes(item)
        return out
    return struct.pack(_SCALAR[v.type], v.value)


def tensor_bytes(t, ggml_type):
    """Raw bytes of torch tensor `t` stored as `ggml_type`."""
    t = t.detach().contiguous().reshape(-1)
    if ggml_type == F32:
        return t.to(torch.float32).numpy().tobytes()
    if ggml_type == F16:
        return t.to(torch.float16).numpy().tobytes()
    if ggml_type == BF16:
        return t.to(torch.bfloat16).view(torch.int16).numpy().tobytes()
    if ggml_type == Q8_0:
        assert t.numel() % Q8_BLOCK == 0, "Q8_0 needs a multiple of 32 elements"
        blocks = t.to(torch.float32).reshape(-1, Q8_BLOCK)
        scale = (blocks.abs().amax(1) / 127).to(torch.float16)
        inv = torch.where(scale.float() > 0, 1 / scale.float(), torch.zeros_like(scale.float()))
        q = torch.round(blocks * inv[:, None]).clamp(-127, 127).to(torch.int8)
        out = b""
        for s, row in zip(scale, q):
            out += s.reshape(1).numpy().tobytes() + row.numpy().tobytes()
        return out
    raise ValueError(f"unsupported ggml type {ggml_type}")


def serialize(tensors, metadata, version=3, alignment=32, write_alignment=None):
    """tensors: [(name, torch tensor, ggml type)]; metadata: [(key, Value)]. Returns bytes.

    `write_alignment` (an int) stores general.alignment in the metadata."""
    meta = list(metadata)
    if write_alignment is not None:
        meta.append(("general.alignment", Value(UINT32, write_alignment)))
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(meta))
    for key, value in meta:
        out += _string(key) + struct.pack("<I", value.type) + _value_bytes(value)
    data, infos = b"", b""
    for name, t, ggml_type in tensors:
        data += b"\0" * (-len(data) % alignment)
        dims = list(reversed(t.shape))
        infos += _string(name) + struct.pack("<I", len(dims))
        infos += b"".join(struct.pack("<Q", d) for d in dims)
        infos += struct.pack("<IQ", ggml_type, len(data))
        data += tensor_bytes(t, ggml_type)
    out += infos
    out += b"\0" * (-len(out) % alignment)
    return out + data


def write(path, tensors, metadata, **kwargs):
    with open(path, "wb") as f:
        f.write(serialize(tensors, metadata, **kwargs))


class _Reader:
    def __init__(self, raw):
        self.raw, self.pos = raw, 0

    def take(self, fmt):
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.raw):
            raise ValueError("truncated")
        value = struct.unpack_from(fmt, self.raw, self.pos)[0]
        self.pos += size
        return value

    def string(self):
        n = self.take("<Q")
        if self.pos + n > len(self.raw):
            raise ValueError("truncated string")
        s = self.raw[self.pos:self.pos + n].decode("utf-8")
        self.pos += n
        return s

    def value(self, type_):
        if type_ == STRING:
            return self.string()
        if type_ == ARRAY:
            element_type, n = self.take("<I"), self.take("<Q")
            return [self.value(element_type) for _ in range(n)]
        return self.take(_SCALAR[type_])


def _decode(raw, ggml_type, shape):
    n = 1
    for d in shape:
        n *= d
    if ggml_type == F32:
        return torch.frombuffer(bytearray(raw[:4 * n]), dtype=torch.float32).reshape(shape).clone()
    if ggml_type == F16:
        return torch.frombuffer(bytearray(raw[:2 * n]), dtype=torch.float16).float().reshape(shape)
    if ggml_type == BF16:
        return torch.frombuffer(bytearray(raw[:2 * n]), dtype=torch.bfloat16).float().reshape(shape)
    if ggml_type == Q8_0:
        blocks = torch.frombuffer(bytearray(raw[:34 * (n // Q8_BLOCK)]), dtype=torch.uint8).reshape(-1, 34)
        scale = blocks[:, :2].contiguous().view(torch.float16).float()
        q = blocks[:, 2:].contiguous().view(torch.int8).float()
        return (q * scale).reshape(shape)
    raise ValueError(f"unsupported ggml type {ggml_type}")


def read(path):
    """(metadata {key: python value}, tensors {name: float32 torch tensor in torch's shape},
    types {name: ggml type})."""
    with open(path, "rb") as f:
        r = _Reader(f.read())
    if r.raw[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    r.pos = 4
    version = r.take("<I")
    if version not in (2, 3):
        raise ValueError(f"{path}: GGUF version {version}")
    n_tensors, n_kv = r.take("<Q"), r.take("<Q")
    metadata = {}
    for _ in range(n_kv):
        key = r.string()
        metadata[key] = r.value(r.take("<I"))
    alignment = metadata.get("general.alignment", 32)
    infos = []
    for _ in range(n_tensors):
        name = r.string()
        dims = [r.take("<Q") for _ in range(r.take("<I"))]
        infos.append((name, list(reversed(dims)), r.take("<I"), r.take("<Q")))
    start = r.pos + (-r.pos % alignment)
    tensors, types = {}, {}
    for name, shape, ggml_type, offset in infos:
        tensors[name] = _decode(r.raw[start + offset:], ggml_type, shape)
        types[name] = ggml_type
    return metadata, tensors, types


def mobilenet_state_dict():
    """torchvision's mobilenet_v3_small, seeded, BatchNorm statistics perturbed."""
    import torchvision

    from finch_ref import perturb_batchnorm

    torch.manual_seed(3)
    model = torchvision.models.mobilenet_v3_small(weights=None)
    perturb_batchnorm(model)
    return model.state_dict()


def every_type_metadata():
    """One metadata value of every GGUF type, arrays nested; the C++ test checks each."""
    return [
        ("test.u8", Value(UINT8, 250)), ("test.i8", Value(INT8, -120)),
        ("test.u16", Value(UINT16, 65000)), ("test.i16", Value(INT16, -32000)),
        ("test.u32", Value(UINT32, 4000000000)), ("test.i32", Value(INT32, -2000000000)),
        ("test.f32", Value(FLOAT32, 0.375)), ("test.bool", Value(BOOL, True)),
        ("test.string", Value(STRING, "gr\u00fc\u00dfe, finch")),
        ("test.u64", Value(UINT64, 2 ** 63 + 5)), ("test.i64", Value(INT64, -(2 ** 62))),
        ("test.f64", Value(FLOAT64, -1.25e100)),
        ("test.strings", Value(ARRAY, [Value(STRING, s) for s in ["a", "", "bc"]], STRING)),
        ("test.nested", Value(ARRAY, [Value(ARRAY, [Value(INT32, 1), Value(INT32, -2)], INT32),
                                      Value(ARRAY, [], INT32)], ARRAY)),
        ("test.empty", Value(ARRAY, [], FLOAT32)),
        ("general.architecture", Value(STRING, "mobilenet_v3_small")),
    ]


def write_fixtures(out_dir):
    """mobilenet_v3_small as f32 (v3), f16 (v2, alignment 64), bf16 (v3), plus a Q8_0 tensor;
    expected.safetensors holds what each should read as (float32, torch's shapes)."""
    from finch_ref import save_safetensors

    sd = mobilenet_state_dict()
    meta = every_type_metadata()
    # num_batches_tracked is an int64 buffer; the real package file stores it as an F32 scalar.
    floats = [(k, v.float()) for k, v in sd.items()]
    write(f"{out_dir}/f32.gguf", [(k, v, F32) for k, v in floats], meta)
    write(f"{out_dir}/f16.gguf", [(k, v, F16) for k, v in floats], meta, version=2, alignment=64,
          write_alignment=64)
    write(f"{out_dir}/bf16.gguf", [(k, v, BF16) for k, v in floats], meta)
    q8_source = torch.linspace(-3, 5, 96).reshape(3, 32)
    write(f"{out_dir}/q8_0.gguf", [("q", q8_source, Q8_0), ("zeros", torch.zeros(32), Q8_0)],
          [("general.architecture", Value(STRING, "test"))])
    expected = {}
    for k, v in floats:
        expected["f32." + k] = v
        expected["f16." + k] = v.to(torch.float16).float()
        expected["bf16." + k] = v.to(torch.bfloat16).float()
    _, q8_read, _ = read(f"{out_dir}/q8_0.gguf")
    expected["q8_0.q"] = q8_read["q"]
    expected["q8_0.source"] = q8_source
    save_safetensors({k: v.contiguous() for k, v in expected.items()}, f"{out_dir}/expected.safetensors")


def main(argv):
    if len(argv) == 3 and argv[1] == "fixtures":
        write_fixtures(argv[2])
    elif len(argv) == 3 and argv[1] == "dump":
        metadata, tensors, types = read(argv[2])
        names = {v: k for k, v in TYPE_NAMES.items()}
        table = {k: {"shape": list(t.shape), "type": names.get(types[k], types[k])}
                 for k, t in tensors.items()}
        print(json.dumps({"metadata": metadata, "tensors": table}, indent=1))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
