// Structure of the VGG and Inception-v3 backbones and of every registered backbone's stage
// description (what freezing and attention heads rely on). Numerics are checked against
// torchvision in torchvision_parity_test.cpp.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <set>

#include "finch/models/model.h"
#include "finch/models/registry.h"
#include "finch/models/weight_init.h"

namespace fm = finch::models;

namespace {

fm::Classifier make(const fm::ModelSpec& extra) {
  fm::ModelSpec spec = {{"head", "linear"}, {"num_classes", 5}};
  spec.update(extra);
  return fm::build_classifier(spec);
}

std::vector<int64_t> shape(const torch::Tensor& t) { return t.sizes().vec(); }

}  // namespace

TEST(Vgg, StagesAreTheMapsBeforeEachPool) {
  auto model = make({{"backbone", "vgg11_bn"}});
  model->eval();
  torch::NoGradGuard no_grad;
  auto features = model->backbone()->forward_features(torch::randn({1, 3, 64, 64}));
  ASSERT_EQ(features.stages.size(), 5u);
  EXPECT_EQ(shape(features.stages[0]), (std::vector<int64_t>{1, 64, 64, 64}));
  EXPECT_EQ(shape(features.stages[4]), (std::vector<int64_t>{1, 512, 4, 4}));
  EXPECT_EQ(shape(model->forward(torch::randn({1, 3, 64, 64})).embedding),
            (std::vector<int64_t>{1, 4096}));
}

TEST(Vgg, WithoutFcLayersEmbedsByAveragePooling) {
  auto with_fc = make({{"backbone", "vgg16"}});
  auto without = make({{"backbone", "vgg16"}, {"vgg_fc", false}});
  EXPECT_EQ(without->backbone()->embedding_dim(), 512);
  int64_t a = 0, b = 0;
  for (const auto& p : with_fc->parameters()) a += p.numel();
  for (const auto& p : without->parameters()) b += p.numel();
  // fc6 + fc7: 25088 x 4096 + 4096 + 4096 x 4096 + 4096, and a 4096- vs 512-wide classifier.
  EXPECT_EQ(a - b, 25088 * 4096 + 4096 + 4096 * 4096 + 4096 + (4096 - 512) * 5);
  auto names = fm::state_dict(*with_fc);
  EXPECT_EQ(names.front().first, "backbone.features.0.weight");
  EXPECT_EQ(shape(without->forward(torch::randn({2, 3, 32, 32})).logits),
            (std::vector<int64_t>{2, 5}));
}

TEST(Inception, AuxiliaryLogitsOnlyInTraining) {
  auto model = make({{"backbone", "inception_v3"}});
  const auto input = torch::randn({2, 3, 299, 299});
  model->train();
  auto out = model->forward(input);
  ASSERT_TRUE(out.aux_logits.defined());
  EXPECT_EQ(shape(out.aux_logits), (std::vector<int64_t>{2, 5}));
  EXPECT_EQ(shape(out.embedding), (std::vector<int64_t>{2, 2048}));
  model->eval();
  torch::NoGradGuard no_grad;
  EXPECT_FALSE(model->forward(input).aux_logits.defined());
  auto without = make({{"backbone", "inception_v3"}, {"aux_logits", false}});
  without->train();
  EXPECT_FALSE(without->forward(input).aux_logits.defined());
}

// Every backbone parameter belongs to a stage (so `train.freeze: N` is complete), except the
// layers after the last stage (VGG's fc6/fc7).
TEST(Backbones, StagePrefixesCoverTheParameters) {
  for (const std::string name : {"resnet18", "resnet20", "vgg11", "vgg13_bn", "inception_v3"}) {
    auto model = make({{"backbone", name}});
    auto stages = model->backbone()->stage_prefixes();
    EXPECT_GE(stages.size(), 3u) << name;
    for (const auto& item : model->backbone()->named_parameters()) {
      bool covered = item.key().rfind("classifier.", 0) == 0;
      for (const auto& stage : stages)
        for (const auto& prefix : stage)
          covered = covered || item.key().rfind(prefix + ".", 0) == 0;
      EXPECT_TRUE(covered) << name << ": " << item.key();
    }
  }
}

TEST(Backbones, AllTorchvisionFamiliesAreRegistered) {
  auto names = fm::backbone_names();
  std::set<std::string> known(names.begin(), names.end());
  for (const char* n : {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                        "resnext50_32x4d", "wide_resnet50_2", "vgg11", "vgg11_bn", "vgg13",
                        "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "inception_v3"})
    EXPECT_TRUE(known.count(n)) << n;
}

// A model built under SkipRandomInit (how model files are loaded) has exactly the parameters
// and buffers of one built normally, so loading the normal one's weights gives its outputs;
// grouped convolutions and attention heads included.
TEST(WeightInit, SkipRandomInitBuildsTheSameModelUndrawn) {
  const std::vector<fm::ModelSpec> specs = {
      {{"backbone", "resnet20"}},
      {{"backbone", "resnext50_32x4d"}},
      {{"backbone", "convnext_tiny"}},
      {{"backbone", "resnet18"},
       {"head", "self_attention"},
       {"input_size", 64},
       {"self_attention", {{"dim", 32}, {"heads", 4}, {"layers", 1}, {"mlp_ratio", 2.0}}}},
  };
  for (const auto& extra : specs) {
    const std::string name = extra.dump();
    torch::manual_seed(0);
    auto drawn = make(extra);
    fm::Classifier undrawn = [&] {
      fm::SkipRandomInit loaded_next;
      EXPECT_FALSE(fm::random_init_enabled());
      return make(extra);
    }();
    EXPECT_TRUE(fm::random_init_enabled()) << "the guard restores drawing";
    const auto a = fm::state_dict(*drawn), b = fm::state_dict(*undrawn);
    ASSERT_EQ(a.size(), b.size()) << name;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].first, b[i].first) << name;
      EXPECT_EQ(shape(a[i].second), shape(b[i].second)) << name << ": " << a[i].first;
      EXPECT_EQ(a[i].second.scalar_type(), b[i].second.scalar_type()) << name;
    }
    fm::load_state_dict(*undrawn, a, "drawn model");
    drawn->eval();
    undrawn->eval();
    torch::NoGradGuard no_grad;
    const auto input = torch::randn({2, 3, 64, 64});
    EXPECT_TRUE(torch::equal(drawn->forward(input).logits, undrawn->forward(input).logits)) << name;
  }
}

TEST(WeightInit, GuardsNest) {
  {
    fm::SkipRandomInit outer;
    {
      fm::SkipRandomInit inner;
      EXPECT_FALSE(fm::random_init_enabled());
    }
    EXPECT_FALSE(fm::random_init_enabled()) << "the inner guard restores the outer one's state";
  }
  EXPECT_TRUE(fm::random_init_enabled());
}
