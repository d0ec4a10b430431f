#pragma once
// ONNX export of a model file's inference graph, written with the ONNX protobuf library
// (libonnx, the one LibTorch links) and checked by its checker. BatchNorm is folded into the
// convolutions; the eval preprocessing (transforms, mean / std, input size, classes) is
// written next to the graph as JSON, since ONNX graphs take already-normalised tensors.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "finch/models/model_file.h"

namespace finch::exporting {

struct OnnxOptions {
  int64_t opset = 13;
  /// The batch dimension as a symbolic "batch" (any batch size); otherwise fixed at 1.
  bool dynamic_batch = false;
};

struct OnnxExport {
  std::filesystem::path model, preprocess;  // the .onnx file and its .preprocess.json
  int64_t nodes = 0, initializers = 0;
};

/// Writes `out` (and `out` + ".preprocess.json"): inputs "images" [B, 3, S, S] float32
/// (normalised, S = the model's input size), outputs "logits" [B, C] and "embedding" [B, D]
/// (the head's input feature, as InferenceSession returns it). Throws finch::Error naming
/// the part ONNX export does not cover (the wsdan head, compact bilinear pooling, backbones
/// without a writer) or an opset outside 11..17.
OnnxExport export_onnx(const models::LoadedModel& model, const std::filesystem::path& out,
                       const OnnxOptions& options = {});

}  // namespace finch::exporting
