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

  loaded.info.dtype_checks = {{"bf16", fe::bf16_check_record(bf16, "val")}};
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
