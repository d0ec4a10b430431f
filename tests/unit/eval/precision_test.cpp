// `--dtype auto` (eval/precision.h): the decision from the CPU's bf16 ISA and the model file's
// recorded check, the comparison of a bf16 copy with fp32, the record surviving a save and
// load, and a session that resolves auto from its model.
#include "finch/eval/precision.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/eval/session.h"
#include "finch/models/model_file.h"
#include "test_support.h"

namespace fe = finch::eval;
namespace fm = finch::models;

namespace {

fm::LoadedModel small_model() {
  torch::manual_seed(5);
  fm::LoadedModel m;
  m.info.arch = {{"backbone", "resnet20"},
                 {"head", "linear"},
                 {"num_classes", 3},
                 {"width", 16},
                 {"input_size", 16}};
  m.model = fm::build_classifier(m.info.arch);
  m.model->eval();
  m.info.classes = {"a", "b", "c"};
  m.info.preprocess.eval_transforms =
      nlohmann::json::array({{{"type", "resize"}, {"size", nlohmann::json::array({16, 16})}}});
  m.info.preprocess.input_size = 16;
  return m;
}

fm::ModelInfo with_check(double agreement) {
  fm::ModelInfo info;
  info.dtype_checks = {{"bf16", {{"agreement", agreement}, {"images", 500}, {"split", "val"}}}};
  return info;
}

}  // namespace

TEST(Precision, AutoNeedsNativeBf16AndARecordedCheckAboveTheBar) {
  auto d = fe::decide_inference_dtype(with_check(0.999), "");
  EXPECT_EQ(d.dtype, torch::kFloat);
  EXPECT_CONTAINS(d.reason, "no native bf16");

  d = fe::decide_inference_dtype(fm::ModelInfo{}, "AVX512_BF16");
  EXPECT_EQ(d.dtype, torch::kFloat);
  EXPECT_CONTAINS(d.reason, "`finch bench agree --record` adds one");

  d = fe::decide_inference_dtype(with_check(0.99), "AMX-BF16");
  EXPECT_EQ(d.dtype, torch::kFloat);
  EXPECT_CONTAINS(d.reason, "only 99.00% of 500 val images (needs 99.5%)");

  d = fe::decide_inference_dtype(with_check(0.995), "AVX512_BF16");
  EXPECT_EQ(d.dtype, torch::kBFloat16);
  EXPECT_EQ(d.summary(),
            "bf16 (--dtype auto: AVX512_BF16, top-1 agreement with fp32 99.50% on 500 val images)");
}

TEST(Precision, ComparisonCountsAgreementAndTheRecordSurvivesTheModelFile) {
  fm::LoadedModel loaded = small_model();
  torch::manual_seed(1);
  std::vector<std::pair<torch::Tensor, torch::Tensor>> batches;
  for (int i = 0; i < 3; ++i)
    batches.emplace_back(torch::randn({8, 3, 16, 16}), torch::randint(0, 3, {8}));
  size_t next = 0;
  auto source = [&]() -> std::optional<std::pair<torch::Tensor, torch::Tensor>> {
    if (next == batches.size()) return std::nullopt;
    return batches[next++];
  };
  // fp32 against itself: identical, and the limit cuts the last batch.
  const fe::DtypeComparison same = fe::compare_dtypes(loaded, torch::kFloat, source, 20);
  EXPECT_EQ(same.images, 20);
  EXPECT_EQ(same.same_top1, 20);
  EXPECT_DOUBLE_EQ(same.agreement(), 1.0);
  EXPECT_LT(same.max_abs_prob_diff, 1e-6);
  EXPECT_EQ(same.correct_fp32, same.correct_other);

  next = 0;
  const fe::DtypeComparison bf16 = fe::compare_dtypes(loaded, torch::kBFloat16, source);
  EXPECT_EQ(bf16.images, 24);
  EXPECT_GT(bf16.max_abs_prob_diff, 0.0);  // bf16 rounds
  EXPECT_LT(bf16.max_abs_prob_diff, 0.2);

  next = batches.size();
  EXPECT_CONTAINS(finch::test::error_of([&] { fe::compare_dtypes(loaded, torch::kFloat, source); }),
                  "no readable images");

  loaded.info.dtype_checks = {{"bf16", fe::dtype_check_record(bf16, "val")}};
  finch::test::TempDir dir;
  fm::save_model_file(dir / "m.safetensors", loaded.model, loaded.info);
  const fm::LoadedModel back = fm::load_model_file(dir / "m.safetensors");
  EXPECT_EQ(back.info.dtype_checks["bf16"]["images"], 24);
  EXPECT_DOUBLE_EQ(back.info.dtype_checks["bf16"]["agreement"].get<double>(), bf16.agreement());
  EXPECT_EQ(back.info.dtype_checks["bf16"]["split"], "val");

  // A session with --dtype auto decides from the file and says why.
  fe::InferenceSession session(dir / "m.safetensors", fe::session_options_for_dtype("auto"));
  const auto expected = fe::decide_inference_dtype(back.info);
  EXPECT_EQ(session.dtype_name(), expected.dtype == torch::kBFloat16 ? "bf16" : "fp32");
  EXPECT_EQ(session.dtype_decision(), expected.summary());
  fe::InferenceSession forced(dir / "m.safetensors", fe::session_options_for_dtype("fp32"));
  EXPECT_EQ(forced.dtype_name(), "fp32");
  EXPECT_CONTAINS(finch::test::error_of([] { fe::session_options_for_dtype("fp16"); }), "fp16");
}

// `--dtype int8` runs only with a calibration recorded in the model file (activation ranges
// from calibration images, agreement measured on others), and says how to record one.
TEST(Precision, Int8SessionsNeedARecordedCalibration) {
  fm::LoadedModel loaded = small_model();
  finch::test::TempDir dir;
  fm::save_model_file(dir / "m.safetensors", loaded.model, loaded.info);
  EXPECT_CONTAINS(finch::test::error_of([&] {
                    fe::InferenceSession(dir / "m.safetensors",
                                         fe::session_options_for_dtype("int8"));
                  }),
                  "finch bench agree --model MODEL --dataset FORMAT --root ROOT --split val "
                  "--dtype int8 --record");

  torch::manual_seed(7);
  const torch::Tensor calibration_images = torch::randn({16, 3, 16, 16});
  const torch::Tensor eval_images = torch::randn({32, 3, 16, 16});
  auto once = [](torch::Tensor x) {
    return [x, done = false]() mutable -> std::optional<std::pair<torch::Tensor, torch::Tensor>> {
      if (std::exchange(done, true)) return std::nullopt;
      return std::make_pair(x, torch::full({x.size(0)}, -1, torch::kLong));
    };
  };
  nlohmann::json calibration = fe::calibrate_int8(loaded, once(calibration_images), 12);
  EXPECT_EQ(calibration["images"], 12);  // the limit cuts the batch
  fm::InferenceOptions int8;
  int8.dtype = torch::kQUInt8;
  int8.int8_ranges = calibration["ranges"];
  const fe::DtypeComparison c = fe::compare_dtypes(loaded, int8, once(eval_images));
  EXPECT_EQ(c.images, 32);
  EXPECT_GT(c.max_abs_prob_diff, 0.0);
  EXPECT_LT(c.max_abs_prob_diff, 0.2);
  EXPECT_GE(c.agreement(), 0.8);

  nlohmann::json record = fe::dtype_check_record(c, "val");
  calibration["split"] = "train";
  record["calibration"] = calibration;
  loaded.info.dtype_checks = {{"int8", record}};
  fm::save_model_file(dir / "m.safetensors", loaded.model, loaded.info);
  fe::InferenceSession session(dir / "m.safetensors", fe::session_options_for_dtype("int8"));
  EXPECT_EQ(session.dtype_name(), "int8");
  EXPECT_CONTAINS(session.dtype_decision(), "calibrated on 12 train images");
  const fe::InferenceOutput out = session.forward(eval_images);
  fe::InferenceSession fp32(dir / "m.safetensors", fe::session_options_for_dtype("fp32"));
  const fe::InferenceOutput reference = fp32.forward(eval_images);
  EXPECT_EQ(out.probabilities.sizes(), reference.probabilities.sizes());
  EXPECT_LT((out.probabilities - reference.probabilities).abs().max().item<double>(), 0.2);
  // `--dtype auto` never picks int8: it is asked for.
  fe::InferenceSession automatic(dir / "m.safetensors", fe::session_options_for_dtype("auto"));
  EXPECT_NE(automatic.dtype_name(), "int8");
}
