// Metric losses on hand-computed cases, their gradients in float64 against finite differences,
// and training with every method through the trainer (objective state in checkpoints).
#include "finch/train/losses.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

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

// Multi-similarity loss computed another way: loops over anchors and pairs in double.
double multi_similarity_by_loops(const torch::Tensor& f, const torch::Tensor& y, double alpha,
                                 double beta, double base, double epsilon) {
  torch::Tensor x = torch::nn::functional::normalize(
      f.to(torch::kDouble), torch::nn::functional::NormalizeFuncOptions().dim(1));
  torch::Tensor s = torch::matmul(x, x.t());
  const int64_t n = f.size(0);
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    double max_neg = -1e9, min_pos = 1e9;
    bool has_pos = false, has_neg = false;
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const double v = s[i][j].item<double>();
      if (y[j].item<int64_t>() == y[i].item<int64_t>())
        has_pos = true, min_pos = std::min(min_pos, v);
      else
        has_neg = true, max_neg = std::max(max_neg, v);
    }
    double pos_sum = 0, neg_sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const double v = s[i][j].item<double>();
      const bool same = y[j].item<int64_t>() == y[i].item<int64_t>();
      const bool mined = epsilon <= 0 || (has_pos && has_neg &&
                                          (same ? v - epsilon < max_neg : v + epsilon > min_pos));
      if (!mined) continue;
      if (same)
        pos_sum += std::exp(-alpha * (v - base));
      else
        neg_sum += std::exp(beta * (v - base));
    }
    total += std::log1p(pos_sum) / alpha + std::log1p(neg_sum) / beta;
  }
  return total / n;
}

TEST(MultiSimilarityLoss, EqualsLoopsAndGradientMatchesFiniteDifferences) {
  torch::manual_seed(4);
  torch::Tensor f = torch::randn({8, 4}, torch::kDouble);
  torch::Tensor y = torch::tensor({0, 0, 1, 1, 2, 2, 0, 1});
  for (double epsilon : {0.0, 0.1, 0.5}) {
    SCOPED_TRACE(epsilon);
    EXPECT_NEAR(ft::multi_similarity_loss(f, y, 2, 50, 0.5, epsilon).item<double>(),
                multi_similarity_by_loops(f, y, 2, 50, 0.5, epsilon), 1e-9);
  }
  // Smaller beta keeps exp() moderate for the finite differences.
  torch::Tensor g = f.clone().requires_grad_(true);
  ft::multi_similarity_loss(g, y, 2, 10, 0.5, 0.1).backward();
  torch::NoGradGuard no_grad;
  torch::Tensor x = f.clone();
  auto numeric = numeric_grad(
      [&](const torch::Tensor& t) {
        return ft::multi_similarity_loss(t, y, 2, 10, 0.5, 0.1).item<double>();
      },
      x);
  EXPECT_TRUE(torch::allclose(g.grad(), numeric, 1e-5, 1e-6)) << g.grad() << numeric;
}

TEST(MarginSoftmaxLoss, CosFaceArcFaceValuesAndGradients) {
  torch::manual_seed(6);
  const double s = 8;
  torch::Tensor cosine = torch::rand({5, 4}, torch::kDouble) * 1.6 - 0.8;
  torch::Tensor y = torch::tensor({0, 3, 1, 1, 2});
  // Margin 0: plain cross-entropy of the scaled cosines.
  const double ce = torch::nn::functional::cross_entropy(s * cosine, y).item<double>();
  EXPECT_NEAR(ft::margin_softmax_loss(s * cosine, y, s, 0, ft::MarginKind::kCosFace).item<double>(),
              ce, 1e-12);
  EXPECT_NEAR(ft::margin_softmax_loss(s * cosine, y, s, 0, ft::MarginKind::kArcFace).item<double>(),
              ce, 1e-6);
  // By hand for row 0 (class 0): CosFace lowers the target cosine by m; ArcFace uses
  // cos(theta + m).
  torch::Tensor cos_face = cosine.clone(), arc_face = cosine.clone();
  for (int64_t i = 0; i < 5; ++i) {
    const int64_t c = y[i].item<int64_t>();
    const double v = cosine[i][c].item<double>();
    cos_face[i][c] = v - 0.3;
    arc_face[i][c] = std::cos(std::acos(v) + 0.3);
  }
  EXPECT_NEAR(
      ft::margin_softmax_loss(s * cosine, y, s, 0.3, ft::MarginKind::kCosFace).item<double>(),
      torch::nn::functional::cross_entropy(s * cos_face, y).item<double>(), 1e-12);
  EXPECT_NEAR(
      ft::margin_softmax_loss(s * cosine, y, s, 0.3, ft::MarginKind::kArcFace).item<double>(),
      torch::nn::functional::cross_entropy(s * arc_face, y).item<double>(), 1e-9);
  for (auto kind : {ft::MarginKind::kCosFace, ft::MarginKind::kArcFace}) {
    torch::Tensor g = (s * cosine).clone().requires_grad_(true);
    ft::margin_softmax_loss(g, y, s, 0.3, kind).backward();
    torch::NoGradGuard no_grad;
    torch::Tensor x = (s * cosine).clone();
    auto numeric = numeric_grad(
        [&](const torch::Tensor& t) {
          return ft::margin_softmax_loss(t, y, s, 0.3, kind).item<double>();
        },
        x);
    EXPECT_TRUE(torch::allclose(g.grad(), numeric, 1e-5, 1e-7));
  }
}

TEST(CosineHead, LogitsAreScaledCosines) {
  torch::manual_seed(8);
  auto model = finch::models::build_classifier({{"backbone", "resnet20"},
                                                {"head", "cosine"},
                                                {"num_classes", 3},
                                                {"width", 4},
                                                {"cosine_scale", 10.0}});
  model->eval();
  torch::NoGradGuard no_grad;
  auto out = model->forward(torch::randn({2, 3, 16, 16}));
  torch::Tensor w = model->head()->named_parameters()["fc.weight"];
  ASSERT_EQ(w.sizes(), (std::vector<int64_t>{3, out.embedding.size(1)}));
  namespace F = torch::nn::functional;
  torch::Tensor expected =
      10.0 * torch::matmul(F::normalize(out.embedding, F::NormalizeFuncOptions().dim(1)),
                           F::normalize(w, F::NormalizeFuncOptions().dim(1)).t());
  EXPECT_TRUE(torch::allclose(out.logits, expected, 1e-5, 1e-6));
  EXPECT_LE(out.logits.abs().max().item<double>(), 10.0 + 1e-5);
}

TEST(Losses, ParsesTheListAndRejectsMistakes) {
  finch::Config c = finch::Config::defaults();
  EXPECT_EQ(ft::parse_losses(c).size(), 1u);  // [] = cross-entropy
  c.set("train.losses", "[{type: cross_entropy}, {type: triplet, margin: 0.5, weight: 0.2}]");
  auto terms = ft::parse_losses(c);
  ASSERT_EQ(terms.size(), 2u);
  EXPECT_EQ(terms[1].margin, 0.5);
  EXPECT_EQ(terms[1].weight, 0.2);
  c.set("train.losses", "[{type: arcface_v2}]");
  EXPECT_CONTAINS(finch::test::error_of([&] { ft::parse_losses(c); }), "unknown loss 'arcface_v2'");
  c.set("train.losses",
        "[{type: multi_similarity}, {type: cosface}, {type: arcface, margin: 0.2}]");
  terms = ft::parse_losses(c);
  EXPECT_EQ(terms[0].beta, 50);  // each loss's published defaults
  EXPECT_EQ(terms[0].alpha, 2);
  EXPECT_EQ(terms[1].margin, 0.35);
  EXPECT_EQ(terms[2].margin, 0.2);
  // Margin losses need logits that are scaled cosines.
  c.set("train.losses", "[{type: cosface}]");
  EXPECT_CONTAINS(finch::test::error_of([&] { ft::Objective(c, 3, 8); }), "needs the cosine head");
  c.set("train.losses", "[{type: centre, margin: 1}]");
  EXPECT_CONTAINS(finch::test::error_of([&] { ft::parse_losses(c); }),
                  "unknown option 'margin' for centre");
}

// Long-tailed data: Cui et al.'s class-balanced weights, written out by hand, and Menon et
// al.'s logit-adjusted loss, which only shapes training.
TEST(Losses, EffectiveNumberWeightsAndLogitAdjustment) {
  const std::vector<int64_t> counts{100, 10, 1, 0};
  const auto w = ft::effective_number_weights(counts, 0.99);
  std::vector<double> raw;
  for (int64_t n : {100, 10, 1}) raw.push_back((1 - 0.99) / (1 - std::pow(0.99, n)));
  const double scale = 3 / (raw[0] + raw[1] + raw[2]);
  for (int c = 0; c < 3; ++c) EXPECT_NEAR(w[c].item<double>(), raw[c] * scale, 1e-6);
  EXPECT_EQ(w[3].item<double>(), 0.0);  // a class without images
  EXPECT_GT(w[2].item<double>(), w[0].item<double>());

  torch::manual_seed(0);
  finch::models::ModelOutput out;
  out.logits = torch::randn({6, 4});
  const torch::Tensor labels = torch::tensor({0, 1, 2, 3, 0, 1});
  namespace F = torch::nn::functional;
  finch::Config c = finch::Config::defaults();
  c.set("train.class_weights", "effective_number");
  c.set("train.class_weight_beta", "0.99");
  ft::Objective weighted(c, 4, 8, counts);
  EXPECT_NEAR(
      weighted->forward(out, labels, {}).item<double>(),
      F::cross_entropy(out.logits, labels, F::CrossEntropyFuncOptions().weight(w)).item<double>(),
      1e-6);
  c = finch::Config::defaults();
  c.set("train.logit_adjustment", "1.0");
  ft::Objective adjusted(c, 4, 8, counts);
  // Priors with the empty class counted as one image: 100, 10, 1, 1 of 112.
  const torch::Tensor shift = torch::log(torch::tensor({100.0f, 10.0f, 1.0f, 1.0f}) / 112.0f);
  adjusted->train();
  EXPECT_NEAR(adjusted->forward(out, labels, {}).item<double>(),
              F::cross_entropy(out.logits + shift, labels).item<double>(), 1e-5);
  adjusted->eval();
  EXPECT_NEAR(adjusted->forward(out, labels, {}).item<double>(),
              F::cross_entropy(out.logits, labels).item<double>(), 1e-6);
  c.set("train.class_weights", "inverse");
  EXPECT_CONTAINS(finch::test::error_of([&] { ft::Objective(c, 4, 8, counts); }),
                  "must be none or effective_number");
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
      {"cosine_arcface",
       "model: {head: cosine, cosine_scale: 16}\n"
       "train: {losses: [{type: arcface, margin: 0.3}]}\n"},
      {"multi_similarity",
       "data: {sampler: pk, samples_per_class: 2}\n"
       "train: {losses: [{type: cross_entropy}, {type: multi_similarity}]}\n"},
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
