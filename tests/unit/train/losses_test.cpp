// Metric losses on hand-computed cases, their gradients in float64 against finite differences,
// and training with every method through the trainer (objective state in checkpoints).
#include "finch/train/losses.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/core/config.h"
#include "finch/io/safetensors.h"
#include "finch/train/trainer.h"
#include "test_support.h"

namespace ft = finch::train;
namespace fs = std::filesystem;

namespace {

torch::Tensor numeric_grad(const std::function<double(const torch::Tensor&)>& f, torch::Tensor x) {
  torch::Tensor grad = torch::zeros_like(x);
  auto flat = x.view(-1);
  auto g = grad.view(-1);
  const double h = 1e-6;
  for (int64_t k = 0; k < flat.numel(); ++k) {
    const double v = flat[k].item<double>();
    flat[k] = v + h;
    const double plus = f(x);
    flat[k] = v - h;
    const double minus = f(x);
    flat[k] = v;
    g[k] = (plus - minus) / (2 * h);
  }
  return grad;
}

}  // namespace

// Points on a line: class 0 at 0 and 1, class 1 at 3 and 5; margin 3.
// Anchor 0: hardest positive 1, hardest negative 3 -> 1 - 3 + 3 = 1; anchor 1: 1 - 2 + 3 = 2;
// anchor 3: 2 - 2 + 3 = 3; anchor 5: 2 - 4 + 3 = 1. Mean 1.75.
TEST(TripletLoss, HandComputedBatchHard) {
  torch::Tensor f = torch::tensor({0.0, 1.0, 3.0, 5.0}, torch::kDouble).unsqueeze(1);
  torch::Tensor y = torch::tensor({0, 0, 1, 1}, torch::kLong);
  EXPECT_NEAR(ft::batch_hard_triplet_loss(f, y, 3.0).item<double>(), 1.75, 1e-9);
  // Margin 0.3: every anchor's hardest negative is farther than its positive + 0.3 except 3
  // (2 - 2 + 0.3): mean (0 + 0 + 0.3 + 0) / 4.
  EXPECT_NEAR(ft::batch_hard_triplet_loss(f, y, 0.3).item<double>(), 0.075, 1e-9);
  // A class with one sample has no positive: it is not an anchor.
  torch::Tensor y3 = torch::tensor({0, 0, 1, 2}, torch::kLong);
  // anchors 0 and 1 only: (1 - 3 + 3) and (1 - 2 + 3) -> 1.5
  EXPECT_NEAR(ft::batch_hard_triplet_loss(f, y3, 3.0).item<double>(), 1.5, 1e-9);
  EXPECT_EQ(ft::batch_hard_triplet_loss(f, torch::tensor({0, 1, 2, 3}), 1.0).item<double>(), 0.0);
}

TEST(TripletLoss, GradientMatchesFiniteDifferences) {
  torch::manual_seed(0);
  torch::Tensor f = torch::randn({8, 5}, torch::kDouble).requires_grad_(true);
  torch::Tensor y = torch::tensor({0, 0, 1, 1, 2, 2, 3, 3});
  ft::batch_hard_triplet_loss(f, y, 1.0).backward();
  torch::NoGradGuard no_grad;
  torch::Tensor x = f.detach().clone();
  auto numeric = numeric_grad(
      [&](const torch::Tensor& v) { return ft::batch_hard_triplet_loss(v, y, 1.0).item<double>(); },
      x);
  EXPECT_TRUE(torch::allclose(f.grad(), numeric, 1e-5, 1e-7)) << f.grad() << numeric;
}

// f = [1, 0] (class 0) and [1, 3] (class 1), centres [0, 0] and [1, 1]:
// (||[1, 0]||^2 + ||[0, 2]||^2) / 2 = 2.5; beta 0.5 moves the centres half-way.
TEST(CentreLoss, HandComputedValueUpdateAndGradient) {
  torch::Tensor f = torch::tensor({{1.0, 0.0}, {1.0, 3.0}}, torch::kDouble).requires_grad_(true);
  torch::Tensor y = torch::tensor({0, 1});
  torch::Tensor centres = torch::tensor({{0.0, 0.0}, {1.0, 1.0}, {7.0, 7.0}}, torch::kDouble);
  torch::Tensor loss = ft::centre_loss(f, y, centres);
  EXPECT_NEAR(loss.item<double>(), 2.5, 1e-12);
  loss.backward();
  // d/df_i = 2 (f_i - c_i) / B
  EXPECT_TRUE(f.grad().allclose(torch::tensor({{1.0, 0.0}, {0.0, 2.0}}, torch::kDouble)));
  ft::update_centres(centres, f, y, 0.5);
  EXPECT_TRUE(centres.allclose(
      torch::tensor({{0.5, 0.0}, {1.0, 2.0}, {7.0, 7.0}}, torch::kDouble)));  // class 2 absent
  // Two samples of a class move its centre towards their mean.
  ft::update_centres(centres, torch::tensor({{1.5, 1.0}, {2.5, 3.0}}, torch::kDouble),
                     torch::tensor({0, 0}), 1.0);
  EXPECT_TRUE(centres[0].allclose(torch::tensor({2.0, 2.0}, torch::kDouble)));
}

TEST(Losses, ParsesTheListAndRejectsMistakes) {
  finch::Config c = finch::Config::defaults();
  EXPECT_EQ(ft::parse_losses(c).size(), 1u);  // [] = cross-entropy
  c.set("train.losses", "[{type: cross_entropy}, {type: triplet, margin: 0.5, weight: 0.2}]");
  auto terms = ft::parse_losses(c);
  ASSERT_EQ(terms.size(), 2u);
  EXPECT_EQ(terms[1].margin, 0.5);
  EXPECT_EQ(terms[1].weight, 0.2);
  c.set("train.losses", "[{type: arcface}]");
  EXPECT_CONTAINS(finch::test::error_of([&] { ft::parse_losses(c); }), "unknown loss 'arcface'");
  c.set("train.losses", "[{type: centre, margin: 1}]");
  EXPECT_CONTAINS(finch::test::error_of([&] { ft::parse_losses(c); }),
                  "unknown option 'margin' for centre");
}

// Every method trains end to end through the unchanged trainer; the centre loss's state is
// checkpointed and a resumed run finishes.
TEST(Methods, TrainThroughTheTrainer) {
  finch::test::TempDir dir;
  finch::test::make_pattern_imagefolder(dir / "data", 4, 8, 16);
  auto config = [&](const std::string& extra) {
    finch::Config c = finch::Config::from_yaml(R"(
seed: 2
threads: 1
data: {format: imagefolder, workers: 1, val_fraction: 0.25, mean: [0.5, 0.5, 0.5],
       std: [0.25, 0.25, 0.25], train_transforms: [], eval_transforms: []}
model: {backbone: resnet20, width: 4, input_size: 16}
train: {epochs: 1, batch_size: 8, eval_batch_size: 8, progress: none}
optim: {name: adam, lr: 0.001}
)" + extra,
                                               "methods");
    c.set("data.root", (dir / "data").string());
    return c;
  };
  const std::vector<std::pair<std::string, std::string>> recipes = {
      {"wsdan",
       "model: {head: wsdan, wsdan: {parts: 4}}\n"
       "train: {losses: [{type: cross_entropy}, {type: centre, weight: 1.0}]}\n"},
      {"self_attention", "model: {head: self_attention, self_attention: {dim: 8, heads: 2}}\n"},
      {"bilinear", "model: {head: bilinear, bilinear: {type: compact, dim: 64}}\n"},
      {"cbam_triplet",
       "model: {attention: {type: cbam, stages: [2, 3], reduction: 2}}\n"
       "data: {sampler: pk, samples_per_class: 2}\n"
       "train: {losses: [{type: cross_entropy}, {type: triplet, margin: 0.3}]}\n"}};
  for (const auto& [name, extra] : recipes) {
    SCOPED_TRACE(name);
    auto summary = ft::run_training(config(extra), dir / name, false);
    EXPECT_EQ(summary.epochs_completed, 1);
    EXPECT_TRUE(fs::exists(dir / name / "best.safetensors"));
  }
  EXPECT_TRUE(fs::exists(dir / "wsdan" / "checkpoint" / "objective.safetensors"));
  auto centres = finch::io::read_safetensors(dir / "wsdan" / "checkpoint" / "objective.safetensors")
                     .find("centres");
  ASSERT_TRUE(centres.defined());
  EXPECT_EQ(centres.size(0), 4);
  EXPECT_GT(centres.abs().sum().item<double>(), 0);  // moved during the epoch
  finch::Config more = config(recipes[0].second);
  more.set("train.epochs", "2");
  EXPECT_EQ(ft::run_training(more, dir / "wsdan", true).epochs_completed, 2);
}
