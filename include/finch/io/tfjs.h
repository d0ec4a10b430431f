#pragma once
// TensorFlow.js layers models (what `tensorflowjs_converter` writes for a Keras model and what
// `tf.loadLayersModel` reads; github.com/tensorflow/tfjs, tfjs-core/src/io/types.ts):
// `model.json` = {"format": "layers-model", "modelTopology": the Keras model config,
// "weightsManifest": [{"paths": [shard files], "weights": [{"name", "shape", "dtype",
// "quantization"?}]}]}; each group's shards, concatenated, hold its weights back to back, in
// manifest order, little-endian. Quantised weights (weight quantisation of the converter) are
// uint8 / uint16 with per-tensor `min + scale * q`, or float16. Files come from strangers: every
// shape and byte count is checked against the shards' sizes before anything is allocated, shard
// paths may not leave the model's folder.
#include <torch/types.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace finch::io {

struct TfjsModel {
  std::string format;                                  // "layers-model" (absent in older files)
  nlohmann::json topology = nlohmann::json::object();  // modelTopology (Keras model config)
  /// Keras weight names ("conv2d_1/kernel", "bn/moving_mean") -> float32 tensors in Keras'
  /// layout (conv kernels HWIO), in manifest order. int32 weights stay int32.
  std::vector<std::pair<std::string, torch::Tensor>> weights;
  /// How each weight was stored: "float32", "int32", "uint8", "uint16" or "float16".
  std::vector<std::string> stored_types;
};

/// True when `path` is a .json file that mentions "weightsManifest" (model.json files are
/// small; it is read whole).
bool is_tfjs_model(const std::filesystem::path& path);

/// Parses model.json text; `read_shard` returns the bytes of a shard path from the manifest
/// (relative to the model's folder). `source` names the model in error messages. Any malformed
/// input throws finch::Error naming the problem (a graph model, a weight that runs past its
/// shards, an unknown dtype, ...).
TfjsModel parse_tfjs(const std::string& model_json,
                     const std::function<std::string(const std::string&)>& read_shard,
                     const std::string& source);

/// Reads model.json and the shards beside it.
TfjsModel read_tfjs(const std::filesystem::path& model_json);

}  // namespace finch::io
