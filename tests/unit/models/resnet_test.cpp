#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/models/model.h"
#include "finch/models/registry.h"
#include "test_support.h"

namespace fm = finch::models;

namespace {

fm::Classifier make(const std::string& backbone, int64_t classes) {
  return fm::build_classifier(
      {{"backbone", backbone}, {"head", "linear"}, {"num_classes", classes}});
}

}  // namespace

TEST(ResNet, ParameterNamesAreTorchvisions) {
  auto model = make("resnet50", 10);
  std::set<std::string> names;
  for (const auto& [name, t] : fm::state_dict(*model)) names.insert(name);
  for (const char* expected :
       {"backbone.conv1.weight", "backbone.bn1.running_var", "backbone.bn1.num_batches_tracked",
        "backbone.layer1.0.conv3.weight", "backbone.layer1.0.downsample.0.weight",
        "backbone.layer1.0.downsample.1.bias", "backbone.layer4.2.bn3.weight", "head.fc.weight",
        "head.fc.bias"}) {
    EXPECT_TRUE(names.count(expected)) << expected;
  }
  // torchvision's resnet50 has 320 state-dict entries (161 params + 159 buffers).
  EXPECT_EQ(names.size(), 320u);
}

TEST(ResNet, StageShapes) {
  auto model = make("resnet18", 7);
  model->eval();
  auto stages = model->backbone()->forward_features(torch::randn({2, 3, 64, 64})).stages;
  ASSERT_EQ(stages.size(), 4u);
  EXPECT_EQ(stages[0].sizes(), (std::vector<int64_t>{2, 64, 16, 16}));
  EXPECT_EQ(stages[3].sizes(), (std::vector<int64_t>{2, 512, 2, 2}));
  auto out = model->forward(torch::randn({2, 3, 64, 64}));
  EXPECT_EQ(out.logits.sizes(), (std::vector<int64_t>{2, 7}));
  EXPECT_EQ(out.embedding.sizes(), (std::vector<int64_t>{2, 512}));
}

TEST(ResNet, SmallInputVariants) {
  for (auto [name, blocks] :
       std::vector<std::pair<std::string, int>>{{"resnet20", 3}, {"resnet32", 5}}) {
    auto model = make(name, 10);
    auto stages = model->backbone()->forward_features(torch::randn({2, 3, 28, 28})).stages;
    ASSERT_EQ(stages.size(), 3u);
    EXPECT_EQ(stages[2].sizes(), (std::vector<int64_t>{2, 64, 7, 7})) << name;
    int64_t params = 0;
    for (const auto& p : model->parameters()) params += p.numel();
    if (name == "resnet20") {
      // He et al. report 0.27M parameters for ResNet-20 (option A shortcuts); the
      // projection shortcuts used here add 2 x (1x1 conv + BN).
      EXPECT_NEAR(params / 1e6, 0.27, 0.01);
    }
  }
}

TEST(ResNet, UnknownNamesListTheKnownOnes) {
  try {
    make("resnet51", 10);
    FAIL();
  } catch (const finch::Error& e) {
    EXPECT_NE(std::string(e.what()).find("resnet50"), std::string::npos) << e.what();
  }
  EXPECT_THROW(
      fm::build_classifier({{"backbone", "resnet18"}, {"head", "nope"}, {"num_classes", 3}}),
      finch::Error);
  EXPECT_THROW(make("resnet18", 0), finch::Error);
}

TEST(ResNet, LoadStateDictReportsMismatches) {
  auto model = make("resnet18", 10);
  auto sd = fm::state_dict(*model);
  sd.pop_back();                                                // missing
  sd.emplace_back("backbone.extra.weight", torch::zeros({1}));  // unexpected
  sd[0].second = torch::zeros({1, 2, 3});                       // mismatched
  try {
    fm::load_state_dict(*model, sd, "w.safetensors");
    FAIL();
  } catch (const finch::Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("missing"), std::string::npos) << msg;
    EXPECT_NE(msg.find("backbone.extra.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("shape mismatch"), std::string::npos) << msg;
  }
}
