#include "finch/io/gguf.h"

#include <c10/util/Half.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <limits>
#include <set>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"

// Numbers and tensor bytes are copied as-is; GGUF files are little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "GGUF I/O assumes a little-endian host");

namespace finch::io {

namespace {

using nlohmann::json;

// ggml itself stops at 4 dimensions; a file with more is corrupt, and a huge count would make
// torch allocate size/stride arrays for nothing.
constexpr uint32_t kMaxRank = 8;
// Arrays may nest, and the reader recurses; real files nest 1 level (token lists).
constexpr int kMaxArrayDepth = 16;
constexpr uint64_t kDefaultAlignment = 32;
constexpr uint64_t kMaxAlignment = uint64_t{1} << 30;
constexpr int64_t kQ8Block = 32;  // Q8_0: 32 int8 weights share one fp16 scale
constexpr uint64_t kQ8BlockBytes = 34;

enum ValueType : uint32_t {
  kU8 = 0,
  kI8 = 1,
  kU16 = 2,
  kI16 = 3,
  kU32 = 4,
  kI32 = 5,
  kF32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kU64 = 10,
  kI64 = 11,
  kF64 = 12,
  kValueTypeCount = 13,
};

// Fewest bytes one value of `type` takes in the file: bounds an array's length by what is left.
uint64_t min_value_bytes(uint32_t type) {
  switch (type) {
    case kU8:
    case kI8:
    case kBool:
      return 1;
    case kU16:
    case kI16:
      return 2;
    case kU32:
    case kI32:
    case kF32:
      return 4;
    case kU64:
    case kI64:
    case kF64:
    case kString:  // its u64 length
      return 8;
    case kArray:  // element type + length
      return 12;
  }
  return 1;
}

const char* value_type_name(uint32_t type) {
  static const char* names[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                "int32",  "float32", "bool",   "string", "array",
                                "uint64", "int64",   "float64"};
  return type < kValueTypeCount ? names[type] : "unknown";
}

// ggml.h's tensor types by number ("" where a number is no longer used); finch converts F32,
// F16, BF16 and Q8_0, and names the others in its error.
const char* ggml_type_short_name(uint32_t type) {
  // clang-format off
  static const char* names[] = {
      "F32", "F16", "Q4_0", "Q4_1", "", "", "Q5_0", "Q5_1", "Q8_0", "Q8_1", "Q2_K", "Q3_K",
      "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ4_NL", "IQ3_S",
      "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64", "IQ1_M", "BF16", "Q4_0_4_4",
      "Q4_0_4_8", "Q4_0_8_8", "TQ1_0", "TQ2_0", "IQ4_NL_4_4", "IQ4_NL_4_8", "IQ4_NL_8_8", "MXFP4"};
  // clang-format on
  return type < sizeof(names) / sizeof(names[0]) ? names[type] : "";
}

std::string ggml_type_name(uint32_t type) {
  const std::string name = ggml_type_short_name(type);
  return name.empty() ? fmt::format("{} (unknown)", type) : fmt::format("{} ({})", name, type);
}

enum TensorType : uint32_t { kTensorF32 = 0, kTensorF16 = 1, kTensorQ8_0 = 8, kTensorBF16 = 30 };

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    int extra;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      extra = 1, cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2, cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3, cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i <= static_cast<size_t>(extra)) return false;
    for (int k = 1; k <= extra; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static const uint32_t min_cp[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += extra + 1;
  }
  return true;
}

// Sequential reads that check, before every read, that the bytes are there.
class Cursor {
 public:
  Cursor(const std::string& bytes, const std::string& source) : bytes_(bytes), source_(source) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }

  [[noreturn]] void fail(const std::string& what) const { throw Error(source_ + ": " + what); }

  void need(uint64_t n, const std::string& what) const {
    if (n > remaining())
      fail(fmt::format(
          "the file ends inside {}: {} bytes needed at offset {}, {} left; file truncated?", what,
          n, pos_, remaining()));
  }

  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  std::string string(const std::string& what) {
    const auto length = read<uint64_t>(what + " (its length)");
    need(length, what);
    std::string s = bytes_.substr(pos_, length);
    pos_ += length;
    if (!valid_utf8(s)) fail(what + " is not valid UTF-8");
    return s;
  }

 private:
  const std::string& bytes_;
  const std::string& source_;
  uint64_t pos_ = 0;
};

json read_value(Cursor& in, uint32_t type, const std::string& what, int depth) {
  switch (type) {
    case kU8:
      return in.read<uint8_t>(what);
    case kI8:
      return in.read<int8_t>(what);
    case kU16:
      return in.read<uint16_t>(what);
    case kI16:
      return in.read<int16_t>(what);
    case kU32:
      return in.read<uint32_t>(what);
    case kI32:
      return in.read<int32_t>(what);
    case kU64:
      return in.read<uint64_t>(what);
    case kI64:
      return in.read<int64_t>(what);
    case kF32:
      return static_cast<double>(in.read<float>(what));
    case kF64:
      return in.read<double>(what);
    case kBool: {
      const auto b = in.read<uint8_t>(what);
      if (b > 1)
        in.fail(fmt::format("{} is a bool stored as {} (only 0 and 1 are valid)", what, b));
      return b == 1;
    }
    case kString:
      return in.string(what);
    case kArray: {
      if (depth >= kMaxArrayDepth)
        in.fail(fmt::format("{} nests arrays deeper than {} levels", what, kMaxArrayDepth));
      const auto element_type = in.read<uint32_t>(what + " (its element type)");
      if (element_type >= kValueTypeCount)
        in.fail(fmt::format("{} has unknown element type {}", what, element_type));
      const auto length = in.read<uint64_t>(what + " (its length)");
      if (length > in.remaining() / min_value_bytes(element_type))
        in.fail(fmt::format(
            "{} announces {} {} elements, more than the {} bytes left in the file can hold; file "
            "truncated or corrupt?",
            what, length, value_type_name(element_type), in.remaining()));
      json array = json::array();
      array.get_ref<json::array_t&>().reserve(length);
      for (uint64_t i = 0; i < length; ++i)
        array.push_back(read_value(in, element_type, fmt::format("{}[{}]", what, i), depth + 1));
      return array;
    }
  }
  in.fail(fmt::format("{} has unknown value type {} (GGUF defines 0 to 12)", what, type));
}

// One tensor as described by its info, validated but not yet converted.
struct Info {
  std::string name;
  std::vector<int64_t> shape;  // torch order
  std::vector<uint64_t> dims;  // as stored (ggml order), for messages
  uint32_t type;
  uint64_t offset, size;
};

uint64_t alignment_of(const json& metadata, const std::string& source) {
  auto it = metadata.find("general.alignment");
  if (it == metadata.end()) return kDefaultAlignment;
  uint64_t a = 0;  // any integer type is accepted (the specification says uint32)
  if (it->is_number_unsigned())
    a = it->get<uint64_t>();
  else if (it->is_number_integer() && it->get<int64_t>() > 0)
    a = static_cast<uint64_t>(it->get<int64_t>());
  if (a == 0 || (a & (a - 1)) != 0 || a > kMaxAlignment)
    throw Error(
        fmt::format("{}: general.alignment is {}, not a power of two between 1 and 2^30 bytes",
                    source, it->dump()));
  return a;
}

Info read_info(Cursor& in, uint64_t index) {
  const std::string where = fmt::format("tensor info {}", index);
  Info info;
  info.name = in.string(where + " (name)");
  const std::string named = fmt::format("tensor '{}'", info.name);
  const auto rank = in.read<uint32_t>(named + " (dimension count)");
  if (rank > kMaxRank)
    in.fail(fmt::format("{} has {} dimensions (at most {} are supported)", named, rank, kMaxRank));
  info.dims.resize(rank);
  for (auto& d : info.dims) d = in.read<uint64_t>(named + " (dimensions)");
  info.type = in.read<uint32_t>(named + " (type)");
  info.offset = in.read<uint64_t>(named + " (offset)");
  // ggml lists the fastest-varying dimension first, torch last.
  for (auto it = info.dims.rbegin(); it != info.dims.rend(); ++it)
    info.shape.push_back(static_cast<int64_t>(*it));
  return info;
}

// Checks `info` against the data section and fills in its byte size.
void validate(Info& info, uint64_t alignment, uint64_t data_size, const std::string& source) {
  const std::string where = fmt::format("{}: tensor '{}'", source, info.name);
  const std::string shape = fmt::format("[{}]", fmt::join(info.shape, ", "));
  if (info.type != kTensorF32 && info.type != kTensorF16 && info.type != kTensorBF16 &&
      info.type != kTensorQ8_0)
    throw Error(fmt::format(
        "{} is stored as ggml type {}, which finch cannot convert (it reads F32, F16, BF16 and "
        "Q8_0); convert the model to F16 or F32 with ggml's tools",
        where, ggml_type_name(info.type)));
  // Bounding the product of max(dim, 1) by what a float32 copy can address also keeps torch's
  // strides from overflowing when a zero dimension makes the element count small.
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / 4;
  uint64_t numel = 1, stride_product = 1;
  for (uint64_t u : info.dims) {
    const uint64_t d1 = std::max<uint64_t>(u, 1);
    if (u > limit || stride_product > limit / d1)
      throw Error(
          fmt::format("{}: dimensions [{}] (ggml order) are absurd (the element count "
                      "overflows)",
                      where, fmt::join(info.dims, ", ")));
    stride_product *= d1;
    numel *= u;
  }
  switch (info.type) {
    case kTensorF32:
      info.size = numel * 4;
      break;
    case kTensorF16:
    case kTensorBF16:
      info.size = numel * 2;
      break;
    case kTensorQ8_0:
      if (info.shape.empty() || info.shape.back() % kQ8Block != 0)
        throw Error(
            fmt::format("{}: Q8_0 needs the first ggml dimension to be a multiple of {}, "
                        "but the shape is {}",
                        where, kQ8Block, shape));
      info.size = numel / kQ8Block * kQ8BlockBytes;
      break;
  }
  if (info.offset % alignment != 0)
    throw Error(fmt::format("{}: data offset {} is not a multiple of the alignment {}", where,
                            info.offset, alignment));
  if (info.offset > data_size || info.size > data_size - info.offset)
    throw Error(fmt::format(
        "{}: its data ({} bytes for shape {} at offset {}) runs past the end of the {}-byte data "
        "section; file truncated?",
        where, info.size, shape, info.offset, data_size));
}

torch::Tensor convert(const Info& info, const char* data) {
  const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
  switch (info.type) {
    case kTensorF32: {
      torch::Tensor out = torch::empty(info.shape, f32);
      if (info.size > 0) std::memcpy(out.data_ptr(), data, info.size);
      return out;
    }
    case kTensorF16:
    case kTensorBF16: {
      // Copied first: the data need not be 2-byte aligned in memory.
      torch::Tensor raw = torch::empty(
          info.shape, torch::TensorOptions().dtype(info.type == kTensorF16 ? torch::kFloat16
                                                                           : torch::kBFloat16));
      if (info.size > 0) std::memcpy(raw.data_ptr(), data, info.size);
      return raw.to(torch::kFloat32);
    }
    default: {  // Q8_0
      torch::Tensor out = torch::empty(info.shape, f32);
      float* dst = out.data_ptr<float>();
      const int64_t blocks = out.numel() / kQ8Block;
      for (int64_t b = 0; b < blocks; ++b) {
        const char* block = data + b * kQ8BlockBytes;
        uint16_t bits;
        std::memcpy(&bits, block, 2);
        const float scale = static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
        for (int64_t i = 0; i < kQ8Block; ++i)
          dst[b * kQ8Block + i] = scale * static_cast<float>(static_cast<int8_t>(block[2 + i]));
      }
      return out;
    }
  }
}

std::string printable_prefix(const std::string& bytes) {
  std::string out;
  for (size_t i = 0; i < bytes.size() && i < 4; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    out += (c >= 0x20 && c < 0x7f) ? std::string(1, static_cast<char>(c))
                                   : fmt::format("\\x{:02x}", c);
  }
  return out;
}

}  // namespace

bool is_gguf(const std::string& bytes) {
  return bytes.size() >= 4 && bytes.compare(0, 4, "GGUF") == 0;
}

bool has_gguf_magic(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::string magic(4, '\0');
  return in.read(magic.data(), 4) && is_gguf(magic);
}

GgufFile parse_gguf(const std::string& bytes, const std::string& source) {
  if (!is_gguf(bytes))
    throw Error(fmt::format("{}: not a GGUF file (it starts with \"{}\", not \"GGUF\")", source,
                            printable_prefix(bytes)));
  Cursor in(bytes, source);
  in.read<uint32_t>("the magic");
  GgufFile file;
  file.version = in.read<uint32_t>("the header (version)");
  if (file.version == 1)
    in.fail(
        "GGUF version 1 (the 2023 draft with 32-bit counts) is not supported; convert the "
        "model again with a current ggml / llama.cpp gguf tool");
  if (file.version != 2 && file.version != 3) {
    if ((file.version & 0xffff) == 0 && (file.version >> 16) != 0)
      in.fail(
          fmt::format("GGUF version field reads {:#x}: a big-endian file, which finch does "
                      "not read",
                      file.version));
    in.fail(fmt::format("unknown GGUF version {} (finch reads versions 2 and 3)", file.version));
  }
  const auto tensor_count = in.read<uint64_t>("the header (tensor count)");
  const auto kv_count = in.read<uint64_t>("the header (metadata count)");
  // Counts are checked against what the rest of the file can hold before anything is reserved:
  // a key/value takes at least 13 bytes (key length, type, a 1-byte value), a tensor info 24.
  auto check_count = [&](uint64_t count, const char* things, uint64_t min_bytes) {
    if (count > in.remaining() / min_bytes)
      in.fail(
          fmt::format("the header announces {} {}, more than the {} bytes left at offset {} "
                      "can hold; file truncated or corrupt?",
                      count, things, in.remaining(), in.pos()));
  };
  check_count(kv_count, "metadata entries", 13);
  check_count(tensor_count, "tensors", 24);

  for (uint64_t i = 0; i < kv_count; ++i) {
    const std::string key = in.string(fmt::format("metadata key {}", i));
    const std::string what = fmt::format("metadata '{}'", key);
    if (file.metadata.contains(key)) in.fail(what + " appears more than once");
    const auto type = in.read<uint32_t>(what + " (its type)");
    file.metadata[key] = read_value(in, type, what, 0);
  }
  const uint64_t alignment = alignment_of(file.metadata, source);

  check_count(tensor_count, "tensors", 24);
  std::vector<Info> infos;
  infos.reserve(tensor_count);
  std::set<std::string> names;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    infos.push_back(read_info(in, i));
    if (!names.insert(infos.back().name).second)
      in.fail(fmt::format("tensor '{}' appears more than once", infos.back().name));
  }
  const uint64_t data_start = (in.pos() + alignment - 1) / alignment * alignment;
  const uint64_t data_size = bytes.size() > data_start ? bytes.size() - data_start : 0;
  for (Info& info : infos) validate(info, alignment, data_size, source);

  // Tensors sharing bytes are never written by a well-behaved writer: treat them as corruption.
  std::vector<const Info*> by_offset;
  for (const Info& info : infos)
    if (info.size > 0) by_offset.push_back(&info);
  std::stable_sort(by_offset.begin(), by_offset.end(),
                   [](const Info* a, const Info* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->size)
      in.fail(fmt::format("tensors '{}' and '{}' overlap in the data section",
                          by_offset[i - 1]->name, by_offset[i]->name));

  file.tensors.reserve(infos.size());
  for (const Info& info : infos) {
    file.tensors.emplace_back(info.name, convert(info, bytes.data() + data_start + info.offset));
    file.stored_types.push_back(ggml_type_short_name(info.type));
  }
  return file;
}

GgufFile read_gguf(const std::filesystem::path& path) {
  return parse_gguf(read_file(path), path.string());
}

}  // namespace finch::io
