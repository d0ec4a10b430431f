#pragma once
// Reduced precision as a product feature: bf16 inference is used only where the CPU runs it
// natively (AMX-BF16 or AVX512_BF16) and where this model's bf16 copy was checked against fp32
// on real images once (the trainer does it on its validation images; `finch bench agree
// --record` on any split), the result stored in the model file (ModelInfo::dtype_checks).
// `--dtype auto` (predict, eval, serve) decides from both.
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "finch/models/inference.h"
#include "finch/models/model_file.h"

namespace finch::eval {

/// Top-1 agreement a bf16 copy needs with fp32 before `--dtype auto` uses it.
constexpr double kBf16MinAgreement = 0.995;

/// The CPU's native bf16 instruction set ("AMX-BF16", "AVX512_BF16"), or "" when it has none
/// (bf16 then runs emulated, slower than fp32). From /proc/cpuinfo's flags.
std::string cpu_bf16_isa();
/// The CPU's model name from /proc/cpuinfo ("" when unknown), for benchmark records.
std::string cpu_model_name();

/// One batch of preprocessed images with their labels (-1: unknown); nullopt at the end.
using BatchSource = std::function<std::optional<std::pair<torch::Tensor, torch::Tensor>>()>;

struct DtypeComparison {
  int64_t images = 0, same_top1 = 0, correct_fp32 = 0, correct_other = 0;
  double max_abs_prob_diff = 0, seconds_fp32 = 0, seconds_other = 0;
  double agreement() const { return images ? static_cast<double>(same_top1) / images : 0.0; }
};

/// Runs `loaded` as an fp32 and as a `dtype` inference copy over the batches of `next` (at
/// most `limit` images; 0: all) and compares their outputs. Throws finch::Error when no image
/// arrives.
DtypeComparison compare_dtypes(const models::LoadedModel& loaded, torch::Dtype dtype,
                               const BatchSource& next, int64_t limit = 0);
/// The same against an inference copy made with `other` (int8: its calibration ranges).
DtypeComparison compare_dtypes(const models::LoadedModel& loaded,
                               const models::InferenceOptions& other, const BatchSource& next,
                               int64_t limit = 0);

/// INT8 calibration (models/int8.h): `loaded`'s folded fp32 copy runs over the batches of
/// `next` (at most `limit` images) and records the range of every activation the int8 path
/// quantizes. Returns {"images": N, "ranges": [[min, max], ...]} (the ranges are
/// InferenceOptions::int8_ranges). Throws finch::Error when the
/// backbone has no int8 path or no image arrives.
nlohmann::json calibrate_int8(const models::LoadedModel& loaded, const BatchSource& next,
                              int64_t limit);

/// Top-1 agreement an int8 copy needs with fp32 before it is recorded as usable.
constexpr double kInt8MinAgreement = 0.99;

/// The record stored in ModelInfo::dtype_checks["bf16"] / ["int8"] (int8 adds its calibration).
nlohmann::json dtype_check_record(const DtypeComparison& comparison, const std::string& split);

/// The int8 calibration ranges recorded in `info` (dtype_checks["int8"]["calibration"]); throws
/// finch::Error saying how to record them when there are none.
nlohmann::json recorded_int8_ranges(const models::ModelInfo& info);

struct DtypeDecision {
  torch::Dtype dtype = torch::kFloat;
  std::string reason;           // why
  std::string summary() const;  // "bf16 (reason)" / "fp32 (reason)"
};

/// `--dtype auto`: bf16 when the CPU has native bf16 (`cpu_isa`, as cpu_bf16_isa() returns)
/// and info.dtype_checks["bf16"] shows an agreement >= kBf16MinAgreement, else fp32; the
/// reason says which condition decided.
DtypeDecision decide_inference_dtype(const models::ModelInfo& info,
                                     const std::string& cpu_isa = cpu_bf16_isa());

}  // namespace finch::eval
