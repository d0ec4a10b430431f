#include "finch/io/safetensors.h"

#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"

// Tensor bytes are copied as-is, and the format is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "safetensors I/O assumes a little-endian host");

namespace finch::io {

namespace {

using nlohmann::json;

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // the Python library's own limit
// torch has no hard rank limit, but nothing real comes close and a header of millions of
// dimensions would make torch allocate huge size/stride arrays.
constexpr size_t kMaxRank = 64;
constexpr const char* kMetadataKey = "__metadata__";
// A real header nests 3 levels (root, entry, shape). nlohmann parses deep nesting iteratively
// but dumps (for error messages) and compares recursively, so a few hundred kilobytes of '['
// would overflow the stack; anything deeper than this is rejected while parsing.
constexpr int kMaxJsonDepth = 32;

struct DtypeName {
  const char* name;
  torch::ScalarType type;
};

constexpr DtypeName kDtypes[] = {{"F64", torch::kFloat64}, {"F32", torch::kFloat32},
                                 {"F16", torch::kFloat16}, {"BF16", torch::kBFloat16},
                                 {"I64", torch::kInt64},   {"I32", torch::kInt32},
                                 {"I16", torch::kInt16},   {"I8", torch::kInt8},
                                 {"U8", torch::kUInt8},    {"BOOL", torch::kBool}};

const char* dtype_name(torch::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.type == type) return d.name;
  return nullptr;
}

// One tensor as described by the header, validated but not yet copied.
struct Entry {
  std::string name;
  torch::ScalarType type;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

std::string describe(const json& value) {
  std::string text = value.dump();
  return text.size() > 60 ? text.substr(0, 60) + "..." : text;
}

// nlohmann keeps the last of duplicate keys silently; a file whose tensors depend on which
// duplicate wins is ambiguous, so the parser callback records the first duplicate at any depth.
json parse_header_json(std::string_view bytes, size_t length, const std::string& source) {
  std::vector<std::set<std::string>> keys_per_object;
  std::string duplicate;
  auto callback = [&](int depth, json::parse_event_t event, json& parsed) {
    bool opens =
        event == json::parse_event_t::object_start || event == json::parse_event_t::array_start;
    if (opens && depth >= kMaxJsonDepth)
      throw Error(source + ": safetensors header nests JSON deeper than " +
                  std::to_string(kMaxJsonDepth) + " levels");
    if (event == json::parse_event_t::object_start) {
      keys_per_object.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      keys_per_object.pop_back();
    } else if (event == json::parse_event_t::key && !keys_per_object.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!keys_per_object.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<ptrdiff_t>(length),
                         callback);
  } catch (const json::exception& e) {
    throw Error(source + ": safetensors header is not valid JSON: " + e.what());
  }
  if (!duplicate.empty())
    throw Error(source + ": safetensors header has the key '" + duplicate + "' more than once");
  if (!header.is_object())
    throw Error(source + ": safetensors header is not a JSON object but " + describe(header));
  return header;
}

Entry parse_entry(const std::string& name, const json& info, uint64_t data_size,
                  const std::string& source) {
  std::string where = source + ": tensor '" + name + "': ";
  if (!info.is_object()) throw Error(where + "entry is not a JSON object but " + describe(info));
  for (const char* key : {"dtype", "shape", "data_offsets"})
    if (!info.contains(key)) throw Error(where + "entry has no \"" + key + "\"");

  Entry entry{name, torch::kFloat32, {}, 0, 0};
  const json& dtype = info["dtype"];
  const DtypeName* found = nullptr;
  if (dtype.is_string())
    for (const auto& d : kDtypes)
      if (dtype.get_ref<const std::string&>() == d.name) found = &d;
  if (!found)
    throw Error(where + "unknown dtype " + describe(dtype) +
                " (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)");
  entry.type = found->type;

  const json& shape = info["shape"];
  if (!shape.is_array()) throw Error(where + "shape is not an array but " + describe(shape));
  if (shape.size() > kMaxRank)
    throw Error(where + "shape has " + std::to_string(shape.size()) + " dimensions (at most " +
                std::to_string(kMaxRank) + " are supported)");
  const uint64_t item_size = c10::elementSize(entry.type);
  // Bounding the product of max(dim, 1) also keeps torch's contiguous strides from overflowing
  // when a zero dimension makes the element count itself small.
  const uint64_t limit = static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / item_size;
  uint64_t numel = 1, stride_product = 1;
  for (const json& dim : shape) {
    if (!dim.is_number_unsigned())
      throw Error(where + "shape " + describe(shape) + " is not a list of non-negative integers");
    uint64_t d = dim.get<uint64_t>();
    uint64_t d1 = std::max<uint64_t>(d, 1);
    if (stride_product > limit / d1)
      throw Error(where + "shape " + describe(shape) + " is too large (element count overflows)");
    stride_product *= d1;
    numel *= d;
    entry.shape.push_back(static_cast<int64_t>(d));
  }

  const json& offsets = info["data_offsets"];
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned())
    throw Error(where + "data_offsets " + describe(offsets) +
                " is not a pair of non-negative integers");
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  if (entry.begin > entry.end)
    throw Error(where + "data_offsets " + describe(offsets) + " has begin after end");
  if (entry.end > data_size)
    throw Error(where + "data_offsets " + describe(offsets) + " end beyond the data buffer of " +
                std::to_string(data_size) + " bytes (file truncated?)");
  if (entry.end - entry.begin != numel * item_size)
    throw Error(where + "data_offsets " + describe(offsets) + " cover " +
                std::to_string(entry.end - entry.begin) + " bytes but shape " + describe(shape) +
                " of " + found->name + " needs " + std::to_string(numel * item_size));
  return entry;
}

}  // namespace

torch::Tensor TensorFile::find(const std::string& name) const {
  for (const auto& [tensor_name, tensor] : tensors)
    if (tensor_name == name) return tensor;
  return {};
}

namespace {

// `mapping`, when given, owns the memory `bytes` lies in: tensors then view it instead of being
// copied, as long as their data is aligned for their element type.
TensorFile parse(std::string_view bytes, const std::string& source,
                 const std::shared_ptr<void>& mapping) {
  if (bytes.size() < 8)
    throw Error(source + ": file is " + std::to_string(bytes.size()) +
                " bytes, shorter than the 8-byte safetensors header length");
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | static_cast<uint8_t>(bytes[i]);
  if (header_size > kMaxHeaderBytes)
    throw Error(source + ": safetensors header length " + std::to_string(header_size) +
                " is absurd (more than 100 MB); not a safetensors file?");
  if (header_size > bytes.size() - 8)
    throw Error(source + ": safetensors header length " + std::to_string(header_size) +
                " is larger than the rest of the file (" + std::to_string(bytes.size() - 8) +
                " bytes); file truncated?");
  json header = parse_header_json(bytes, header_size, source);
  const uint64_t data_size = bytes.size() - 8 - header_size;
  const char* data = bytes.data() + 8 + header_size;

  TensorFile file;
  std::vector<Entry> entries;
  for (const auto& [name, info] : header.items()) {
    if (name != kMetadataKey) {
      entries.push_back(parse_entry(name, info, data_size, source));
      continue;
    }
    if (!info.is_object())
      throw Error(source + ": __metadata__ is not a JSON object but " + describe(info));
    for (const auto& [key, value] : info.items()) {
      if (!value.is_string())
        throw Error(source + ": __metadata__ value of '" + key + "' is not a string but " +
                    describe(value));
      file.metadata[key] = value.get<std::string>();
    }
  }

  // Overlapping tensors would alias each other in the Python library's zero-copy loader; they
  // are never written by a well-behaved writer, so treat them as corruption.
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < entries.size(); ++i)
    if (entries[i].begin < entries[i - 1].end)
      throw Error(source + ": tensors '" + entries[i - 1].name + "' and '" + entries[i].name +
                  "' have overlapping data_offsets");

  for (const Entry& entry : entries) {
    const size_t size = entry.end - entry.begin;
    // Any byte but 0/1 in a bool tensor is undefined behaviour for torch's kernels.
    if (entry.type == torch::kBool) {
      const auto* raw = reinterpret_cast<const uint8_t*>(data + entry.begin);
      if (std::any_of(raw, raw + size, [](uint8_t b) { return b > 1; }))
        throw Error(source + ": tensor '" + entry.name +
                    "': BOOL data holds bytes other than 0 and 1");
    }
    const auto options = torch::TensorOptions().dtype(entry.type);
    char* at = const_cast<char*>(data + entry.begin);  // the mapping is private and writable
    torch::Tensor tensor;
    if (mapping && size > 0 &&
        reinterpret_cast<uintptr_t>(at) % c10::elementSize(entry.type) == 0) {
      tensor = torch::from_blob(at, entry.shape, [mapping](void*) {}, options);
    } else {
      tensor = torch::empty(entry.shape, options);
      if (size > 0) std::memcpy(tensor.data_ptr(), at, size);
    }
    file.tensors.emplace_back(entry.name, std::move(tensor));
  }
  return file;
}

}  // namespace

TensorFile parse_safetensors(std::string_view bytes, const std::string& source) {
  return parse(bytes, source, nullptr);
}

TensorFile read_safetensors(const std::filesystem::path& path) {
  // Model files are the largest thing finch reads at start-up (98 MB for a ResNet-50): they
  // are read straight into an uninitialised buffer, where read_file's string would first be
  // zeroed. Anything but a regular file goes through read_file (and its error messages).
  std::error_code ec;
  const auto size = std::filesystem::is_regular_file(path, ec)
                        ? std::filesystem::file_size(path, ec)
                        : static_cast<std::uintmax_t>(0);
  if (ec || size == 0) return parse_safetensors(read_file(path), path.string());
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
  std::unique_ptr<char[]> buffer(new char[size]);
  in.read(buffer.get(), static_cast<std::streamsize>(size));
  if (in.bad()) throw Error("cannot read " + path.string() + ": " + std::strerror(errno));
  // A file that shrank meanwhile parses as truncated.
  return parse_safetensors(std::string_view(buffer.get(), static_cast<size_t>(in.gcount())),
                           path.string());
}

TensorFile map_safetensors(const std::filesystem::path& path) {
  std::error_code ec;
  const auto size = std::filesystem::is_regular_file(path, ec)
                        ? std::filesystem::file_size(path, ec)
                        : static_cast<std::uintmax_t>(0);
  if (ec || size == 0) return read_safetensors(path);  // its error messages, or a pipe's bytes
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
  // Private and writable: a caller that writes into a tensor gets its own copy of the page,
  // never a change to the file.
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  const int map_errno = errno;
  ::close(fd);
  if (address == MAP_FAILED) {
    if (map_errno == ENODEV) return read_safetensors(path);  // a file system without mmap
    throw Error("cannot map " + path.string() + ": " + std::strerror(map_errno));
  }
  std::shared_ptr<void> mapping(address, [size](void* a) { ::munmap(a, size); });
  return parse(std::string_view(static_cast<const char*>(address), size), path.string(), mapping);
}

std::string serialize_safetensors(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                                  const std::map<std::string, std::string>& metadata) {
  std::vector<std::pair<std::string, torch::Tensor>> sorted;
  for (const auto& [name, tensor] : tensors) {
    if (!tensor.defined()) throw Error("safetensors: tensor '" + name + "' is undefined");
    if (!dtype_name(tensor.scalar_type()))
      throw Error("safetensors: tensor '" + name + "' has unsupported dtype " +
                  std::string(c10::toString(tensor.scalar_type())));
    if (name == kMetadataKey) throw Error("safetensors: a tensor cannot be named __metadata__");
    sorted.emplace_back(name, tensor.detach().to(torch::kCPU).contiguous());
  }
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i].first == sorted[i - 1].first)
      throw Error("safetensors: tensor name '" + sorted[i].first + "' is used twice");

  json header = json::object();
  if (!metadata.empty()) header[kMetadataKey] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, tensor] : sorted) {
    const uint64_t size = tensor.numel() * tensor.element_size();
    header[name] = {{"dtype", dtype_name(tensor.scalar_type())},
                    {"shape", tensor.sizes().vec()},
                    {"data_offsets", {offset, offset + size}}};
    offset += size;
  }
  std::string header_text;
  try {
    header_text = header.dump();
  } catch (const json::exception& e) {  // a name or metadata string that is not UTF-8
    throw Error(std::string("safetensors: cannot encode header: ") + e.what());
  }
  // Padding keeps the data buffer 8-byte aligned when the file is memory-mapped.
  header_text.append((8 - header_text.size() % 8) % 8, ' ');

  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((header_text.size() >> (8 * i)) & 0xff);
  bytes.reserve(8 + header_text.size() + offset);
  bytes += header_text;
  for (const auto& [name, tensor] : sorted)
    if (tensor.numel() > 0)
      bytes.append(static_cast<const char*>(tensor.data_ptr()),
                   tensor.numel() * tensor.element_size());
  return bytes;
}

void write_safetensors(const std::filesystem::path& path,
                       const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  write_file_atomic(path, serialize_safetensors(tensors, metadata));
}

}  // namespace finch::io
