#pragma once
// INT8 inference with LibTorch's quantized CPU kernels (oneDNN engine on x86): post-training
// static quantization as PyTorch's FX `prepare_fx` / `convert_fx` do it with the onednn qconfig.
// Convolutions (BatchNorm already folded) get per-output-channel symmetric qint8 weights and
// quint8 activations whose scale comes from the ranges seen on calibration images; ReLUs are
// fused into the convolution before them, residual adds into `quantized::add_relu`. Heads stay
// fp32 and read dequantized stage maps. Backbones opt in (ResNet family).
#include <ATen/core/ivalue.h>
#include <torch/nn/modules/conv.h>
#include <torch/types.h>

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace finch::models::int8 {

/// Smallest and largest value an activation took on the calibration images.
struct Range {
  float min = 0, max = 0;
  bool seen = false;
  void observe(const torch::Tensor& x);
};

/// quint8 affine parameters covering a range that includes 0 (as torch's MinMaxObserver).
struct QParams {
  double scale = 1.0;
  int64_t zero_point = 0;
  static QParams cover(const Range& range);
};

/// Activation ranges in the order a backbone visits its quantization points during
/// calibration; quantize_int8 consumes them in the same order.
class Calibration {
 public:
  /// Records `x` at the next point (the first batch appends, later batches widen).
  torch::Tensor observe(const torch::Tensor& x);
  /// Call before each calibration batch.
  void rewind() { cursor_ = 0; }
  /// The next point's QParams when quantizing; throws finch::Error past the end.
  QParams next();
  /// Throws finch::Error when not every recorded point was consumed (another architecture).
  void expect_consumed() const;

  size_t size() const { return ranges_.size(); }
  nlohmann::json to_json() const;  // [[min, max], ...]
  static Calibration from_json(const nlohmann::json& ranges);

 private:
  std::vector<Range> ranges_;
  size_t cursor_ = 0;
};

/// Selects the oneDNN quantized engine (the x86 one that needs no reduced activation range);
/// throws finch::Error saying what this LibTorch offers when it has none.
void select_engine();

/// A folded convolution (weight and bias) run on quint8 input, quint8 output with `out`
/// parameters, optionally with the ReLU after it fused in.
class Conv {
 public:
  Conv() = default;
  Conv(const torch::nn::Conv2d& conv, QParams out, bool relu);
  torch::Tensor operator()(const torch::Tensor& qx) const;
  bool defined() const { return packed_.isObject(); }

 private:
  c10::IValue packed_;
  QParams out_;
  bool relu_ = false;
};

/// relu(a + b) on quint8 tensors, requantized to `out`.
torch::Tensor add_relu(const torch::Tensor& qa, const torch::Tensor& qb, QParams out);

/// An fp32 image batch as quint8 with `params`.
torch::Tensor quantize(const torch::Tensor& x, QParams params);

}  // namespace finch::models::int8
