#include "finch/train/optim.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <sstream>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/models/model.h"
#include "test_support.h"

using finch::Config;

namespace {

// Same problem and settings as tests/parity/optimizer_reference.py.
std::vector<double> run_steps(const std::string& name) {
  std::string yaml = "optim: {name: " + name + ", lr: " + (name == "rmsprop" ? "0.01" : "0.1") +
                     ", weight_decay: 0.01, momentum: 0.9, nesterov: true, betas: [0.9, 0.999], "
                     "eps: 1.0e-8, alpha: 0.99}";
  Config config = Config::from_yaml(yaml, "test");
  auto opts = torch::TensorOptions().dtype(torch::kFloat64).requires_grad(true);
  torch::Tensor w = torch::tensor({1.0, -2.0, 3.0}, opts);
  torch::Tensor b = torch::tensor({0.5}, opts);
  auto bundle = finch::train::make_optimizer(config, {{{w}, 1.0, true}, {{b}, 1.0, false}});
  torch::Tensor target = torch::tensor({0.3, 0.2, 0.1}, torch::kFloat64);
  for (int i = 0; i < 5; ++i) {
    bundle.optimizer->zero_grad();
    torch::Tensor loss = (w - target).pow(2).sum() + b.pow(2).sum() * 3;
    loss.backward();
    bundle.optimizer->step();
  }
  std::vector<double> out;
  for (const auto& t : {w, b}) {
    auto d = t.detach();
    for (int64_t i = 0; i < d.numel(); ++i) out.push_back(d[i].item<double>());
  }
  return out;
}

}  // namespace

class OptimizerParity : public ::testing::TestWithParam<std::string> {};

TEST_P(OptimizerParity, MatchesPyTorch) {
  std::istringstream ref(finch::test::run_python_reference("optimizer_reference.py", GetParam()));
  for (double got : run_steps(GetParam())) {
    double expected;
    ASSERT_TRUE(ref >> expected);
    EXPECT_NEAR(got, expected, 1e-12) << GetParam();
  }
}

INSTANTIATE_TEST_SUITE_P(All, OptimizerParity,
                         ::testing::Values("sgd", "adam", "adamw", "rmsprop"));

TEST(Optimizer, GroupsSeparateHeadAndNormsAndApplyMultipliers) {
  Config config =
      Config::from_yaml("optim: {lr: 0.1, head_lr_mult: 10, weight_decay: 0.001}", "test");
  auto model = finch::models::build_classifier(
      {{"backbone", "resnet20"}, {"head", "linear"}, {"num_classes", 3}, {"width", 4}});
  auto bundle = finch::train::build_optimizer(config, model);
  auto& groups = bundle.optimizer->param_groups();
  ASSERT_EQ(groups.size(), 4u);
  auto sgd = [&](size_t i) -> torch::optim::SGDOptions& {
    return static_cast<torch::optim::SGDOptions&>(groups[i].options());
  };
  EXPECT_DOUBLE_EQ(sgd(0).lr(), 0.1);
  EXPECT_DOUBLE_EQ(sgd(0).weight_decay(), 0.001);
  EXPECT_DOUBLE_EQ(sgd(1).weight_decay(), 0.0);  // norms and biases
  EXPECT_DOUBLE_EQ(sgd(2).lr(), 1.0);            // head x10
  EXPECT_EQ(groups[2].params().size(), 1u);      // head.fc.weight
  EXPECT_EQ(groups[3].params().size(), 1u);      // head.fc.bias
  finch::train::set_lr_factor(bundle, 0.5);
  EXPECT_DOUBLE_EQ(sgd(2).lr(), 0.5);
  EXPECT_DOUBLE_EQ(finch::train::current_lr(bundle), 0.05);
}

TEST(Optimizer, UnknownNameAndBadLr) {
  auto model = finch::models::build_classifier(
      {{"backbone", "resnet20"}, {"head", "linear"}, {"num_classes", 3}, {"width", 4}});
  EXPECT_THROW(finch::train::build_optimizer(Config::from_yaml("optim: {name: lamb}", "t"), model),
               finch::Error);
  EXPECT_THROW(finch::train::build_optimizer(Config::from_yaml("optim: {lr: 0}", "t"), model),
               finch::Error);
}
