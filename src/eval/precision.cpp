#include "finch/eval/precision.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "finch/core/error.h"
#include "finch/models/inference.h"
#include "finch/models/int8.h"

namespace finch::eval {

namespace {

// The "flags" line of the first processor in /proc/cpuinfo, and its model name.
std::pair<std::string, std::string> cpu_flags_and_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line, flags, model;
  while (std::getline(in, line) && (flags.empty() || model.empty())) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, line.find_last_not_of(" \t", colon - 1) + 1);
    if (key == "flags" && flags.empty()) flags = " " + line.substr(colon + 1) + " ";
    if (key == "model name" && model.empty() && colon + 2 <= line.size())
      model = line.substr(colon + 2);
  }
  return {flags, model};
}

}  // namespace

std::string cpu_model_name() { return cpu_flags_and_model().second; }

std::string cpu_bf16_isa() {
  const std::string flags = cpu_flags_and_model().first;
  if (flags.find(" amx_bf16 ") != std::string::npos) return "AMX-BF16";
  if (flags.find(" avx512_bf16 ") != std::string::npos) return "AVX512_BF16";
  return "";
}

DtypeComparison compare_dtypes(const models::LoadedModel& loaded, torch::Dtype dtype,
                               const BatchSource& next, int64_t limit) {
  models::InferenceOptions other;
  other.dtype = dtype;
  return compare_dtypes(loaded, other, next, limit);
}

DtypeComparison compare_dtypes(const models::LoadedModel& loaded,
                               const models::InferenceOptions& other_options,
                               const BatchSource& next, int64_t limit) {
  models::InferenceOptions fp32, other = other_options;
  models::Classifier model = loaded.model;  // a handle: channels_last_is_safe() takes it mutable
  if (!models::channels_last_is_safe(*model)) fp32.channels_last = other.channels_last = false;
  models::Classifier reference =
      models::optimize_for_inference(loaded.info.arch, loaded.model, fp32);
  models::Classifier candidate =
      models::optimize_for_inference(loaded.info.arch, loaded.model, other);
  DtypeComparison out;
  auto timed = [](models::Classifier& m, const torch::Tensor& x, double& seconds) {
    const auto start = std::chrono::steady_clock::now();
    torch::Tensor logits = m->forward(x).logits.to(torch::kFloat);
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return logits;
  };
  c10::InferenceMode guard;
  while (limit == 0 || out.images < limit) {
    auto batch = next();
    if (!batch) break;
    auto [x, labels] = *batch;
    if (limit > 0 && out.images + x.size(0) > limit) {
      x = x.slice(0, 0, limit - out.images);
      labels = labels.slice(0, 0, limit - out.images);
    }
    if (x.size(0) == 0) break;
    torch::Tensor a = timed(reference, models::prepare_inference_input(x, fp32), out.seconds_fp32);
    torch::Tensor b =
        timed(candidate, models::prepare_inference_input(x, other), out.seconds_other);
    const torch::Tensor top_a = a.argmax(1), top_b = b.argmax(1);
    out.same_top1 += top_a.eq(top_b).sum().item<int64_t>();
    out.correct_fp32 += top_a.eq(labels).sum().item<int64_t>();
    out.correct_other += top_b.eq(labels).sum().item<int64_t>();
    out.max_abs_prob_diff =
        std::max(out.max_abs_prob_diff, (a.softmax(1) - b.softmax(1)).abs().max().item<double>());
    out.images += x.size(0);
  }
  if (out.images == 0) throw Error("dtype check: no readable images to compare on");
  return out;
}

nlohmann::json calibrate_int8(const models::LoadedModel& loaded, const BatchSource& next,
                              int64_t limit) {
  models::InferenceOptions plain;  // folded fp32 in NCHW: the tensors the int8 path replaces
  plain.channels_last = false;
  plain.onednn_layout = false;
  models::Classifier folded = models::optimize_for_inference(loaded.info.arch, loaded.model, plain);
  models::int8::Calibration calibration;
  int64_t images = 0;
  c10::InferenceMode guard;
  while (limit == 0 || images < limit) {
    auto batch = next();
    if (!batch) break;
    torch::Tensor x = batch->first;
    if (limit > 0 && images + x.size(0) > limit) x = x.slice(0, 0, limit - images);
    if (x.size(0) == 0) break;
    calibration.rewind();
    if (!folded->backbone()->observe_int8(x.to(torch::kFloat), calibration)) {
      throw Error(
          "int8 inference supports the ResNet family (BatchNorm folded, no inserted "
          "attention blocks); backbone '" +
          loaded.info.arch.value("backbone", std::string("?")) + "' has no int8 path");
    }
    images += x.size(0);
  }
  if (images == 0) throw Error("int8 calibration: no readable images");
  return {{"images", images}, {"ranges", calibration.to_json()}};
}

nlohmann::json recorded_int8_ranges(const models::ModelInfo& info) {
  const nlohmann::json& checks = info.dtype_checks;
  if (checks.is_object() && checks.contains("int8") && checks["int8"].is_object() &&
      checks["int8"].contains("calibration") && checks["int8"]["calibration"].is_object() &&
      checks["int8"]["calibration"].contains("ranges")) {
    return checks["int8"]["calibration"]["ranges"];
  }
  throw Error(
      "--dtype int8: the model file has no int8 calibration. Record one (activation ranges on "
      "training images, agreement with fp32 on a validation split) with `finch bench agree "
      "--model MODEL --dataset FORMAT --root ROOT --split val --dtype int8 --record`");
}

nlohmann::json dtype_check_record(const DtypeComparison& comparison, const std::string& split) {
  const auto [flags, model] = cpu_flags_and_model();
  return {
      {"agreement", comparison.agreement()},
      {"max_abs_prob_diff", comparison.max_abs_prob_diff},
      {"images", comparison.images},
      {"split", split},
      {"cpu", model},
      {"speedup",
       comparison.seconds_other > 0 ? comparison.seconds_fp32 / comparison.seconds_other : 0.0}};
}

std::string DtypeDecision::summary() const {
  return fmt::format("{} ({})", dtype == torch::kBFloat16 ? "bf16" : "fp32", reason);
}

DtypeDecision decide_inference_dtype(const models::ModelInfo& info, const std::string& isa) {
  DtypeDecision d;
  if (isa.empty()) {
    d.reason = "--dtype auto: this CPU has no native bf16 (AMX-BF16 or AVX512_BF16)";
    return d;
  }
  const nlohmann::json& checks = info.dtype_checks;
  if (!checks.is_object() || !checks.contains("bf16") || !checks["bf16"].is_object()) {
    d.reason =
        "--dtype auto: the model file has no bf16 check; `finch bench agree --record` adds one";
    return d;
  }
  const nlohmann::json& check = checks["bf16"];
  const double agreement = check.value("agreement", 0.0);
  const auto images = check.value("images", int64_t{0});
  const std::string split = check.value("split", std::string("?"));
  if (agreement < kBf16MinAgreement) {
    d.reason = fmt::format(
        "--dtype auto: bf16 agreed with fp32 on only {:.2f}% of {} {} images (needs {:.1f}%)",
        100 * agreement, images, split, 100 * kBf16MinAgreement);
    return d;
  }
  d.dtype = torch::kBFloat16;
  d.reason = fmt::format("--dtype auto: {}, top-1 agreement with fp32 {:.2f}% on {} {} images", isa,
                         100 * agreement, images, split);
  return d;
}

}  // namespace finch::eval
