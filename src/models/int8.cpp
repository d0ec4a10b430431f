#include "finch/models/int8.h"

#include <ATen/Context.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>

#include "finch/core/error.h"

namespace finch::models::int8 {

namespace {

// The quantized kernels are registered with the dispatcher (no C++ function declarations
// ship with LibTorch): call them by schema, boxed.
c10::IValue call(const char* name, const char* overload, std::vector<c10::IValue> stack) {
  static std::mutex mutex;  // the handle cache is shared by every session's threads
  static std::map<std::string, c10::OperatorHandle> handles;
  std::unique_lock<std::mutex> lock(mutex);
  const std::string key = std::string(name) + "." + overload;
  auto it = handles.find(key);
  if (it == handles.end()) {
    it = handles.emplace(key, c10::Dispatcher::singleton().findSchemaOrThrow(name, overload)).first;
  }
  const c10::OperatorHandle op = it->second;
  lock.unlock();
  op.callBoxed(&stack);
  return std::move(stack.at(0));
}

c10::List<int64_t> int_list(at::IntArrayRef values) { return c10::List<int64_t>(values.vec()); }

}  // namespace

void Range::observe(const torch::Tensor& x) {
  const auto [lo, hi] = torch::aminmax(x.detach().to(torch::kFloat));
  const float a = lo.item<float>(), b = hi.item<float>();
  if (!std::isfinite(a) || !std::isfinite(b))
    throw Error("int8 calibration: an activation is not finite (NaN or Inf)");
  min = seen ? std::min(min, a) : a;
  max = seen ? std::max(max, b) : b;
  seen = true;
}

QParams QParams::cover(const Range& range) {
  // torch.ao.quantization.MinMaxObserver, quint8 per-tensor affine, computed in float32 as
  // torch does: the range is widened to include 0 so that zero (padding, ReLU) is exact.
  const float lo = std::min(0.0f, range.min);
  const float hi = std::max(0.0f, range.max);
  const float scale = std::max((hi - lo) / 255.0f, std::numeric_limits<float>::epsilon());
  QParams q;
  q.scale = scale;
  q.zero_point = std::clamp<int64_t>(-static_cast<int64_t>(std::nearbyint(lo / scale)), 0, 255);
  return q;
}

torch::Tensor Calibration::observe(const torch::Tensor& x) {
  if (cursor_ == ranges_.size()) ranges_.emplace_back();
  ranges_[cursor_++].observe(x);
  return x;
}

QParams Calibration::next() {
  if (cursor_ >= ranges_.size()) {
    throw Error(fmt::format(
        "int8 calibration has {} activation ranges but this model needs more: it was recorded "
        "for another architecture; record it again with `finch bench agree --dtype int8 --record`",
        ranges_.size()));
  }
  return QParams::cover(ranges_[cursor_++]);
}

void Calibration::expect_consumed() const {
  if (cursor_ != ranges_.size()) {
    throw Error(fmt::format(
        "int8 calibration has {} activation ranges but this model uses {}: it was recorded for "
        "another architecture; record it again with `finch bench agree --dtype int8 --record`",
        ranges_.size(), cursor_));
  }
}

nlohmann::json Calibration::to_json() const {
  nlohmann::json out = nlohmann::json::array();
  for (const Range& r : ranges_) out.push_back({r.min, r.max});
  return out;
}

Calibration Calibration::from_json(const nlohmann::json& ranges) {
  if (!ranges.is_array()) throw Error("int8 calibration: 'ranges' must be a list of [min, max]");
  Calibration c;
  for (const auto& r : ranges) {
    if (!r.is_array() || r.size() != 2 || !r[0].is_number() || !r[1].is_number() ||
        r[0].get<double>() > r[1].get<double>()) {
      throw Error("int8 calibration: every range must be [min, max] with min <= max, not " +
                  r.dump());
    }
    c.ranges_.push_back({r[0].get<float>(), r[1].get<float>(), true});
  }
  return c;
}

void select_engine() {
  const auto& engines = at::globalContext().supportedQEngines();
  for (const auto engine : {at::QEngine::ONEDNN, at::QEngine::FBGEMM}) {
    if (std::find(engines.begin(), engines.end(), engine) == engines.end()) continue;
    // FBGEMM's kernels can overflow with a full 8-bit activation range on CPUs without VNNI;
    // oneDNN's cannot, so it comes first.
    at::globalContext().setQEngine(engine);
    return;
  }
  std::string names;
  for (const auto engine : engines)
    names += std::string(names.empty() ? "" : ", ") + toString(engine);
  throw Error(
      "int8 inference needs LibTorch's oneDNN or FBGEMM quantized engine; this LibTorch "
      "has: " +
      (names.empty() ? std::string("none") : names) + ". Use --dtype fp32 or bf16");
}

Conv::Conv(const torch::nn::Conv2d& conv, QParams out, bool relu) : out_(out), relu_(relu) {
  torch::NoGradGuard no_grad;
  // Per-output-channel symmetric qint8 weights (torch's per_channel_symmetric observer).
  const torch::Tensor w = conv->weight.detach().to(torch::kFloat).contiguous();
  const torch::Tensor scales = (w.abs().amax({1, 2, 3}) / 127.5f)
                                   .clamp_min(std::numeric_limits<float>::epsilon())
                                   .to(torch::kDouble);
  const torch::Tensor qw = torch::quantize_per_channel(
      w, scales, torch::zeros({w.size(0)}, torch::kLong), 0, torch::kQInt8);
  const auto& o = conv->options;
  c10::optional<torch::Tensor> bias;
  if (conv->bias.defined() && conv->bias.numel() > 0) bias = conv->bias.detach().to(torch::kFloat);
  packed_ = call(
      "quantized::conv2d_prepack", "",
      {qw, bias, int_list(*o.stride()), int_list(*c10::get<torch::ExpandingArray<2>>(o.padding())),
       int_list(*o.dilation()), o.groups()});
}

torch::Tensor Conv::operator()(const torch::Tensor& qx) const {
  return call(relu_ ? "quantized::conv2d_relu" : "quantized::conv2d", "new",
              {qx, packed_, out_.scale, out_.zero_point})
      .toTensor();
}

torch::Tensor add_relu(const torch::Tensor& qa, const torch::Tensor& qb, QParams out) {
  return call("quantized::add_relu", "", {qa, qb, out.scale, out.zero_point}).toTensor();
}

torch::Tensor quantize(const torch::Tensor& x, QParams params) {
  // NHWC: oneDNN's int8 convolutions keep what they are given, and in NCHW every one of them
  // reorders its input and output (ResNet-50 at batch 1: 67 -> 90 img/s in PyTorch's FX).
  return torch::quantize_per_tensor(x.to(torch::kFloat)
                                        .contiguous(x.dim() == 4 ? torch::MemoryFormat::ChannelsLast
                                                                 : torch::MemoryFormat::Contiguous),
                                    params.scale, params.zero_point, torch::kQUInt8);
}

}  // namespace finch::models::int8
