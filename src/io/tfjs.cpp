#include "finch/io/tfjs.h"

#include <c10/util/Half.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "TF.js weights are little-endian");

namespace finch::io {

namespace {

using nlohmann::json;

constexpr size_t kMaxRank = 8;

struct Spec {
  std::string name;
  std::vector<int64_t> shape;
  std::string stored;  // float32 | int32 | uint8 | uint16 | float16
  double min = 0.0, scale = 1.0;
  int64_t elements = 1;
};

size_t stored_bytes(const std::string& type) {
  if (type == "float32" || type == "int32") return 4;
  if (type == "uint16" || type == "float16") return 2;
  if (type == "uint8") return 1;
  return 0;
}

Spec read_spec(const json& entry, const std::string& where) {
  if (!entry.is_object()) throw Error(where + ": a weight entry is not an object");
  Spec spec;
  auto name = entry.find("name");
  if (name == entry.end() || !name->is_string() || name->get_ref<const std::string&>().empty())
    throw Error(where + ": a weight has no name");
  spec.name = name->get<std::string>();
  const std::string at = where + ", weight '" + spec.name + "'";
  auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array() || shape->size() > kMaxRank)
    throw Error(at + ": 'shape' must be an array of at most 8 sizes");
  for (const auto& d : *shape) {
    if (!d.is_number_integer() || d.get<int64_t>() < 0)
      throw Error(at + ": 'shape' holds " + d.dump() + ", not a size");
    const int64_t size = d.get<int64_t>();
    if (size > 0 && spec.elements > std::numeric_limits<int32_t>::max() / size)
      throw Error(at + ": the shape is too large");
    spec.elements *= size;
    spec.shape.push_back(size);
  }
  auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string()) throw Error(at + ": no 'dtype'");
  const std::string type = dtype->get<std::string>();
  if (type != "float32" && type != "int32")
    throw Error(at + ": dtype '" + type + "' is not supported (float32 and int32 are)");
  spec.stored = type;
  auto quant = entry.find("quantization");
  if (quant != entry.end() && !quant->is_null()) {
    if (!quant->is_object() || !quant->contains("dtype") || !(*quant)["dtype"].is_string())
      throw Error(at + ": 'quantization' needs a dtype");
    spec.stored = (*quant)["dtype"].get<std::string>();
    if (spec.stored == "uint8" || spec.stored == "uint16") {
      auto number = [&](const char* key) {
        auto it = quant->find(key);
        if (it == quant->end() || !it->is_number() || !std::isfinite(it->get<double>()))
          throw Error(at + ": " + spec.stored + " quantization needs a finite '" + key + "'");
        return it->get<double>();
      };
      spec.min = number("min");
      spec.scale = number("scale");
    } else if (spec.stored != "float16") {
      throw Error(at + ": quantization dtype '" + spec.stored +
                  "' is not supported (uint8, uint16 and float16 are)");
    }
    if (type != "float32") throw Error(at + ": only float32 weights can be quantised");
  }
  return spec;
}

torch::Tensor decode(const Spec& spec, const char* data) {
  const int64_t n = spec.elements;
  if (n == 0)  // no memcpy from or to a null pointer (found by tfjs_fuzz)
    return torch::empty(spec.shape, spec.stored == "int32" ? torch::kInt32 : torch::kFloat32);
  if (spec.stored == "int32") {
    auto t = torch::empty({n}, torch::kInt32);
    std::memcpy(t.data_ptr<int32_t>(), data, n * 4);
    return t.view(spec.shape);
  }
  auto t = torch::empty({n}, torch::kFloat32);
  float* out = t.data_ptr<float>();
  if (spec.stored == "float32") {
    std::memcpy(out, data, n * 4);
  } else if (spec.stored == "float16") {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t bits;
      std::memcpy(&bits, data + 2 * i, 2);
      out[i] = static_cast<float>(c10::Half(bits, c10::Half::from_bits()));
    }
  } else if (spec.stored == "uint16") {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t q;
      std::memcpy(&q, data + 2 * i, 2);
      out[i] = static_cast<float>(spec.min + spec.scale * q);
    }
  } else {  // uint8
    const auto* q = reinterpret_cast<const uint8_t*>(data);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(spec.min + spec.scale * q[i]);
  }
  return t.view(spec.shape);
}

// A shard path from a stranger's manifest stays inside the model's folder.
void check_shard_path(const std::string& path, const std::string& where) {
  const std::filesystem::path p(path);
  if (path.empty() || p.is_absolute() || path.find('\0') != std::string::npos)
    throw Error(where + ": shard path '" + path + "' must be relative to the model's folder");
  for (const auto& part : p)
    if (part == "..") throw Error(where + ": shard path '" + path + "' leaves the model's folder");
}

}  // namespace

bool is_tfjs_model(const std::filesystem::path& path) {
  if (path.extension() != ".json") return false;
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  try {
    return read_file(path).find("\"weightsManifest\"") != std::string::npos;
  } catch (const Error&) {
    return false;
  }
}

TfjsModel parse_tfjs(const std::string& model_json,
                     const std::function<std::string(const std::string&)>& read_shard,
                     const std::string& source) {
  json root;
  try {
    root = json::parse(model_json);
  } catch (const json::exception& e) {
    throw Error(source + ": not a TF.js model.json (" + e.what() + ")");
  }
  if (!root.is_object()) throw Error(source + ": not a TF.js model.json (not a JSON object)");
  TfjsModel model;
  if (auto f = root.find("format"); f != root.end() && f->is_string()) model.format = *f;
  if (model.format == "graph-model")
    throw Error(source +
                ": a TF.js graph model (converted from a SavedModel or frozen graph) has no "
                "Keras layers to map; finch reads TF.js layers models (converted from Keras)");
  auto topology = root.find("modelTopology");
  if (topology == root.end() || !topology->is_object())
    throw Error(source + ": no 'modelTopology' object (is this a TF.js layers model?)");
  model.topology = *topology;
  auto manifest = root.find("weightsManifest");
  if (manifest == root.end() || !manifest->is_array())
    throw Error(source +
                ": no 'weightsManifest' array (weights saved inside the file are not "
                "supported; convert with tensorflowjs_converter)");

  std::set<std::string> seen;
  for (size_t g = 0; g < manifest->size(); ++g) {
    const json& group = (*manifest)[g];
    const std::string where = fmt::format("{}: weightsManifest[{}]", source, g);
    if (!group.is_object() || !group.contains("paths") || !group["paths"].is_array() ||
        !group.contains("weights") || !group["weights"].is_array())
      throw Error(where + ": needs 'paths' and 'weights' arrays");
    std::string bytes;
    for (const auto& path : group["paths"]) {
      if (!path.is_string()) throw Error(where + ": a shard path is not a string");
      check_shard_path(path.get<std::string>(), where);
      bytes += read_shard(path.get<std::string>());
    }
    size_t offset = 0;
    for (const auto& entry : group["weights"]) {
      Spec spec = read_spec(entry, where);
      const size_t size = static_cast<size_t>(spec.elements) * stored_bytes(spec.stored);
      if (size > bytes.size() - offset)
        throw Error(fmt::format(
            "{}: weight '{}' ({} x {}) runs past the end of its shards ({} bytes from offset {}, "
            "{} in all): a shard is missing or truncated",
            where, spec.name, fmt::join(spec.shape, "x"), spec.stored, size, offset, bytes.size()));
      if (!seen.insert(spec.name).second)
        throw Error(where + ": weight '" + spec.name + "' appears twice");
      model.weights.emplace_back(spec.name, decode(spec, bytes.data() + offset));
      model.stored_types.push_back(spec.stored);
      offset += size;
    }
    if (offset != bytes.size())
      throw Error(fmt::format("{}: the shards hold {} bytes but the manifest describes {}", where,
                              bytes.size(), offset));
  }
  return model;
}

TfjsModel read_tfjs(const std::filesystem::path& model_json) {
  const std::filesystem::path folder = model_json.parent_path();
  return parse_tfjs(
      read_file(model_json),
      [&](const std::string& shard) {
        const auto path = folder / shard;
        if (!std::filesystem::exists(path))
          throw Error(model_json.string() + ": weight shard " + path.string() +
                      " is missing (model.json and its shards must stay in one folder)");
        return read_file(path);
      },
      model_json.string());
}

}  // namespace finch::io
