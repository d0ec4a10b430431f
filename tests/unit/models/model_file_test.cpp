#include "finch/models/model_file.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/data/transforms.h"
#include "finch/io/safetensors.h"
#include "test_support.h"

namespace fm = finch::models;

namespace {

fm::ModelInfo tiny_info() {
  fm::ModelInfo info;
  info.arch = {{"backbone", "resnet20"}, {"head", "linear"}, {"num_classes", 3}, {"width", 4}};
  info.classes = {"cat", "dog", "finch"};
  info.preprocess.eval_transforms =
      nlohmann::json::parse(R"([{"type": "resize", "size": [16, 16]}])");
  info.preprocess.input_size = 16;
  return info;
}

}  // namespace

TEST(ModelFile, RoundTripKeepsWeightsAndInfo) {
  finch::test::TempDir dir;
  torch::manual_seed(1);
  auto info = tiny_info();
  auto model = fm::build_classifier(info.arch);
  model->eval();
  // Make BN buffers non-trivial so that buffers are proven to round-trip too.
  for (auto& [name, t] : fm::state_dict(*model)) {
    if (name.find("running_mean") != std::string::npos) t.uniform_(-1, 1);
  }
  fm::save_model_file(dir / "m.safetensors", model, info);
  auto loaded = fm::load_model_file(dir / "m.safetensors");
  EXPECT_EQ(loaded.info.classes, info.classes);
  EXPECT_EQ(loaded.info.arch, info.arch);
  EXPECT_EQ(loaded.info.preprocess.input_size, 16);
  EXPECT_FALSE(loaded.info.finch_version.empty());
  torch::Tensor x = torch::randn({2, 3, 16, 16});
  torch::NoGradGuard no_grad;
  EXPECT_TRUE(model->forward(x).logits.equal(loaded.model->forward(x).logits));
  // The recorded eval pipeline is rebuilt from the file.
  auto pipeline = fm::eval_pipeline(loaded.info.preprocess);
  finch::Rng rng(0);
  EXPECT_EQ(pipeline(cv::Mat(40, 30, CV_8UC3, cv::Scalar(1, 2, 3)), rng).sizes(),
            (std::vector<int64_t>{3, 16, 16}));
}

TEST(ModelFile, RejectsFilesThatAreNotFinchModels) {
  finch::test::TempDir dir;
  finch::io::write_safetensors(dir / "plain.safetensors", {{"w", torch::zeros({2})}}, {});
  EXPECT_THROW(fm::load_model_file(dir / "plain.safetensors"), finch::Error);

  finch::io::write_safetensors(dir / "badjson.safetensors", {{"w", torch::zeros({2})}},
                               {{"format", "finch-model"}, {"finch", "{not json"}});
  EXPECT_THROW(fm::load_model_file(dir / "badjson.safetensors"), finch::Error);

  auto info = tiny_info();
  auto model = fm::build_classifier(info.arch);
  info.classes.pop_back();  // 2 names for 3 outputs
  fm::save_model_file(dir / "classes.safetensors", model, info);
  try {
    fm::load_model_file(dir / "classes.safetensors");
    FAIL();
  } catch (const finch::Error& e) {
    EXPECT_NE(std::string(e.what()).find("class list"), std::string::npos) << e.what();
  }

  EXPECT_THROW(fm::load_model_file(dir / "missing.safetensors"), finch::Error);
}

TEST(ModelFile, RejectsTruncatedAndWrongWeights) {
  finch::test::TempDir dir;
  auto info = tiny_info();
  auto model = fm::build_classifier(info.arch);
  fm::save_model_file(dir / "m.safetensors", model, info);
  std::string bytes = finch::read_file(dir / "m.safetensors");
  finch::write_file_atomic(dir / "cut.safetensors", bytes.substr(0, bytes.size() - 100));
  EXPECT_THROW(fm::load_model_file(dir / "cut.safetensors"), finch::Error);

  // Same metadata, weights of a different width: a clear mismatch error, not a crash.
  auto other = tiny_info();
  other.arch["width"] = 8;
  auto wider = fm::build_classifier(other.arch);
  finch::io::write_safetensors(dir / "wrong.safetensors", fm::state_dict(*wider),
                               finch::io::read_safetensors(dir / "m.safetensors").metadata);
  EXPECT_THROW(fm::load_model_file(dir / "wrong.safetensors"), finch::Error);
}

// The documented few lines (docs/model-files.md) load finch model files into torchvision.
TEST(ModelFile, LoadsInPyTorch) {
  for (const auto& [arch, size] :
       std::vector<std::pair<std::string, int>>{{"resnet18", 32}, {"inception_v3", 80}}) {
    finch::test::TempDir dir;
    auto info = tiny_info();
    info.arch = {{"backbone", arch}, {"head", "linear"}, {"num_classes", 3}};
    torch::manual_seed(3);
    auto model = fm::build_classifier(info.arch);
    model->eval();
    fm::save_model_file(dir / "m.safetensors", model, info);
    torch::Tensor x = torch::randn({1, 3, size, size});
    torch::Tensor y;
    {
      torch::NoGradGuard no_grad;
      y = model->forward(x).logits;
    }
    finch::io::write_safetensors(dir / "io.safetensors", {{"input", x}, {"output", y}}, {});
    std::string out = finch::test::run_python_reference(
        "load_finch_model.py",
        (dir / "m.safetensors").string() + " " + (dir / "io.safetensors").string());
    EXPECT_NE(out.find("match"), std::string::npos) << arch << ": " << out;
  }
}
