// The inference session: its forward equals the model's eval forward, its preprocessing is
// the file's eval pipeline and safe to call from several threads, bf16 agrees with fp32.
#include "finch/eval/session.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>

#include "finch/core/error.h"
#include "finch/core/sha256.h"
#include "finch/models/model_file.h"
#include "test_support.h"

namespace fe = finch::eval;
namespace fm = finch::models;

namespace {

fm::LoadedModel tiny_model(int64_t classes = 4) {
  torch::manual_seed(3);
  fm::LoadedModel m;
  m.info.arch = {{"backbone", "resnet20"},
                 {"head", "linear"},
                 {"num_classes", classes},
                 {"width", 8},
                 {"input_size", 16}};
  m.model = fm::build_classifier(m.info.arch);
  // Non-trivial BatchNorm statistics, so that folding is exercised.
  torch::NoGradGuard no_grad;
  for (auto& module : m.model->modules())
    if (auto* bn = module->as<torch::nn::BatchNorm2dImpl>()) {
      bn->running_mean.uniform_(-0.3, 0.3);
      bn->running_var.uniform_(0.5, 1.5);
    }
  m.model->eval();
  for (int64_t c = 0; c < classes; ++c) m.info.classes.push_back("c" + std::to_string(c));
  m.info.preprocess.eval_transforms =
      nlohmann::json::array({{{"type", "resize"}, {"size", nlohmann::json::array({16, 16})}}});
  m.info.preprocess.input_size = 16;
  return m;
}

cv::Mat noise_image(int seed, int size = 24) {
  cv::Mat image(size, size + 4, CV_8UC3);
  cv::RNG rng(seed);
  rng.fill(image, cv::RNG::UNIFORM, 0, 256);
  return image;
}

}  // namespace

TEST(InferenceSession, ForwardEqualsTheModelsEvalForward) {
  fm::LoadedModel loaded = tiny_model();
  fm::Classifier reference = loaded.model;
  std::vector<cv::Mat> images{noise_image(1), noise_image(2), noise_image(3)};
  fe::InferenceSession session(fm::LoadedModel{loaded.model, loaded.info});
  torch::Tensor batch = session.preprocess(images);
  ASSERT_EQ(batch.sizes(), (std::vector<int64_t>{3, 3, 16, 16}));
  torch::NoGradGuard no_grad;
  auto expected = reference->forward(batch);
  auto out = session.forward(batch);
  // BatchNorm folding rounds differently: float32 tolerance relative to the logit scale.
  const double scale = expected.logits.abs().max().item<double>();
  EXPECT_LT((out.logits - expected.logits).abs().max().item<double>(), 1e-4 * scale + 1e-6);
  EXPECT_TRUE(torch::allclose(out.probabilities.sum(1), torch::ones({3}), 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(out.embedding, expected.embedding, 1e-4, 1e-5));
  // normalize_embedding: unit rows pointing the same way.
  auto unit = session.forward(batch, true).embedding;
  EXPECT_TRUE(torch::allclose(unit.norm(2, 1), torch::ones({3}), 1e-5, 1e-6));
  EXPECT_TRUE(
      torch::allclose(unit,
                      torch::nn::functional::normalize(
                          expected.embedding, torch::nn::functional::NormalizeFuncOptions().dim(1)),
                      1e-4, 1e-5));
  EXPECT_EQ(session.content_hash(), "");
  EXPECT_THROW(session.source_model(), finch::Error);
}

TEST(InferenceSession, PreprocessFromManyThreadsEqualsOneThread) {
  fe::InferenceSession session(tiny_model());
  std::vector<cv::Mat> images;
  for (int i = 0; i < 16; ++i) images.push_back(noise_image(10 + i, 20 + i));
  std::vector<torch::Tensor> serial, parallel(images.size());
  for (const auto& image : images) serial.push_back(session.preprocess(image));
  std::vector<std::thread> threads;
  for (size_t t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (size_t i = t; i < images.size(); i += 4) parallel[i] = session.preprocess(images[i]);
    });
  for (auto& thread : threads) thread.join();
  for (size_t i = 0; i < images.size(); ++i) EXPECT_TRUE(torch::equal(serial[i], parallel[i]));
}

TEST(InferenceSession, ReadsTheFileOnceAndRecordsItsSha256) {
  finch::test::TempDir dir;
  fm::LoadedModel loaded = tiny_model();
  fm::save_model_file(dir / "m.safetensors", loaded.model, loaded.info);
  fe::SessionOptions options;
  options.keep_source_model = true;
  fe::InferenceSession session(dir / "m.safetensors", options);
  EXPECT_EQ(session.content_hash(), finch::sha256_file(dir / "m.safetensors"));
  EXPECT_EQ(session.classes(), loaded.info.classes);
  EXPECT_TRUE(session.source_model().model);
  EXPECT_THROW(fe::InferenceSession(dir / "missing.safetensors"), finch::Error);
}

TEST(InferenceSession, Bf16AgreesWithFp32) {
  fm::LoadedModel loaded = tiny_model(6);
  fe::InferenceSession fp32(fm::LoadedModel{loaded.model, loaded.info});
  fe::SessionOptions bf16_options;
  bf16_options.dtype = torch::kBFloat16;
  fe::InferenceSession bf16(fm::LoadedModel{loaded.model, loaded.info}, bf16_options);
  std::vector<cv::Mat> images;
  for (int i = 0; i < 8; ++i) images.push_back(noise_image(40 + i));
  auto a = fp32.run(images), b = bf16.run(images);
  EXPECT_EQ(b.logits.scalar_type(), torch::kFloat);  // results always come back as float32
  // bf16 keeps 8 mantissa bits: probabilities within a few percent.
  EXPECT_LT((a.probabilities - b.probabilities).abs().max().item<double>(), 0.05);
}

TEST(TopK, OrdersClassesAndClampsK) {
  torch::Tensor p = torch::tensor({{0.1f, 0.6f, 0.3f}, {0.5f, 0.2f, 0.3f}});
  auto top = fe::top_k(p, {"a", "b", "c"}, 10);
  ASSERT_EQ(top.size(), 2u);
  ASSERT_EQ(top[0].size(), 3u);
  EXPECT_EQ(top[0][0].name, "b");
  EXPECT_EQ(top[0][1].name, "c");
  EXPECT_EQ(top[1][0].index, 0);
  EXPECT_NEAR(top[1][0].prob, 0.5, 1e-6);
  EXPECT_EQ(fe::top_k(p, {"a", "b", "c"}, 0)[0].size(), 1u);
}
