// The fine-grained methods: attention blocks, self-attention, bilinear and WS-DAN heads.
// Gradients are checked in float64 against central finite differences; the self-attention and
// bilinear heads against a direct PyTorch computation of their formulas
// (tests/parity/heads_reference.py).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <functional>

#include "finch/core/error.h"
#include "finch/io/safetensors.h"
#include "finch/models/blocks.h"
#include "finch/models/model.h"
#include "finch/models/registry.h"
#include "test_support.h"

namespace fm = finch::models;

namespace {

// Compares autograd's gradient of the scalar f() with respect to each tensor in `inputs`
// (double, requires_grad) with central differences at up to 12 entries per tensor.
void expect_gradients_match(const std::function<torch::Tensor()>& f,
                            const std::vector<torch::Tensor>& inputs, const std::string& what) {
  for (auto& t : inputs) {
    if (t.grad().defined()) t.grad().zero_();
  }
  f().backward();
  const double h = 1e-6;
  for (size_t i = 0; i < inputs.size(); ++i) {
    torch::Tensor x = inputs[i];
    ASSERT_TRUE(x.grad().defined()) << what << ": no gradient for input " << i;
    torch::Tensor analytic = x.grad().clone().flatten();
    torch::Tensor flat = x.detach().view(-1);  // shares storage with x
    const int64_t n = flat.numel(), step = std::max<int64_t>(1, n / 12);
    for (int64_t k = 0; k < n; k += step) {
      const double original = flat[k].item<double>();
      double plus, minus;
      {
        torch::NoGradGuard no_grad;
        flat[k] = original + h;
        plus = f().item<double>();
        flat[k] = original - h;
        minus = f().item<double>();
        flat[k] = original;
      }
      const double numeric = (plus - minus) / (2 * h);
      const double a = analytic[k].item<double>();
      EXPECT_NEAR(a, numeric, 1e-6 + 1e-4 * std::abs(numeric))
          << what << ": input " << i << " entry " << k;
    }
  }
}

// A weighted sum of everything a head returns, so every output's gradient is checked.
torch::Tensor head_objective(const fm::ModelOutput& out, const torch::Tensor& wl,
                             const torch::Tensor& we) {
  torch::Tensor s = (out.logits * wl).sum() + (out.embedding * we).sum();
  if (out.attention.defined()) s = s + out.attention.pow(2).sum();
  return s;
}

fm::ModelSpec tiny_spec(const std::string& head) {
  return {{"backbone", "resnet20"},
          {"width", 4},
          {"head", head},
          {"num_classes", 3},
          {"input_size", 16}};
}

void check_head_gradients(fm::ModelSpec spec, const std::string& what) {
  torch::manual_seed(0);
  auto backbone = fm::build_backbone(spec);  // 16 channels in the last stage
  auto head = fm::build_head(spec, *backbone);
  head->to(torch::kDouble);
  head->eval();  // BatchNorm with running statistics: samples independent
  torch::Tensor map = torch::randn({2, 16, 4, 4}, torch::kDouble).requires_grad_(true);
  fm::Features features{{map}, {}};
  auto first = head->forward_head(features, *backbone);
  torch::Tensor wl = torch::randn_like(first.logits), we = torch::randn_like(first.embedding);
  std::vector<torch::Tensor> inputs{map};
  for (auto& p : head->parameters()) inputs.push_back(p);
  expect_gradients_match(
      [&] { return head_objective(head->forward_head(features, *backbone), wl, we); }, inputs,
      what);
}

}  // namespace

TEST(MethodGradients, SelfAttentionHead) {
  fm::ModelSpec spec = tiny_spec("self_attention");
  spec["self_attention"] = {{"dim", 8}, {"heads", 2}, {"layers", 2}};
  check_head_gradients(spec, "self_attention");
}

TEST(MethodGradients, BilinearHeads) {
  fm::ModelSpec spec = tiny_spec("bilinear");
  check_head_gradients(spec, "bilinear full");
  spec["bilinear"] = {{"reduce", 6}};
  check_head_gradients(spec, "bilinear reduced");
  spec["bilinear"] = {{"type", "compact"}, {"dim", 32}};
  check_head_gradients(spec, "bilinear compact");
}

TEST(MethodGradients, WsdanHead) {
  fm::ModelSpec spec = tiny_spec("wsdan");
  spec["wsdan"] = {{"parts", 4}};
  check_head_gradients(spec, "wsdan");
}

TEST(MethodGradients, AttentionBlocks) {
  for (const std::string type : {"se", "cbam"}) {
    torch::manual_seed(1);
    auto block = fm::make_stage_block(type, 8, 2);
    block->to(torch::kDouble);
    for (auto& p : block->named_parameters())
      if (p.key() == "gamma") torch::NoGradGuard(), p.value().detach().fill_(0.7);
    torch::Tensor x = torch::randn({2, 8, 5, 5}, torch::kDouble).requires_grad_(true);
    torch::Tensor w = torch::randn({2, 8, 5, 5}, torch::kDouble);
    std::vector<torch::Tensor> inputs{x};
    for (auto& p : block->parameters()) inputs.push_back(p);
    expect_gradients_match([&] { return (block->forward(x) * w).sum(); }, inputs, type);
  }
}

// gamma = 0 at initialisation: inserting blocks leaves a (pretrained) backbone's output as is.
TEST(AttentionBlocks, IdentityAtInitialisation) {
  fm::ModelSpec plain = {{"backbone", "resnet18"}, {"head", "linear"}, {"num_classes", 4}};
  fm::ModelSpec with = plain;
  with["attention"] = {{"type", "cbam"}, {"stages", {3, 4}}};
  auto a = fm::build_classifier(plain);
  auto b = fm::build_classifier(with);
  auto weights = fm::state_dict(*a);
  std::map<std::string, torch::Tensor> mine;
  for (auto& [name, t] : fm::state_dict(*b)) mine.emplace(name, t);
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : weights) mine.at(name).copy_(t);
  }
  EXPECT_TRUE(mine.count("backbone.attention.3.mlp.fc1.weight"));
  EXPECT_TRUE(mine.count("backbone.attention.4.spatial.weight"));
  a->eval();
  b->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor x = torch::randn({2, 3, 64, 64});
  EXPECT_TRUE(a->forward(x).logits.equal(b->forward(x).logits));
  with["attention"]["stages"] = {5};
  EXPECT_CONTAINS(finch::test::error_of([&] { fm::build_classifier(with); }), "stages 1-4");
  with["attention"] = {{"type", "eca"}, {"stages", {1}}};
  EXPECT_CONTAINS(finch::test::error_of([&] { fm::build_classifier(with); }), "known: cbam, se");
}

// The heads' formulas recomputed with plain PyTorch operations from the same weights.
TEST(MethodParity, SelfAttentionAndBilinearMatchPyTorch) {
  finch::test::TempDir dir;
  torch::manual_seed(2);
  torch::Tensor map = torch::randn({2, 16, 3, 5});
  std::vector<std::pair<std::string, torch::Tensor>> tensors{{"input", map}};
  struct Case {
    std::string name;
    fm::ModelSpec spec;
  };
  fm::ModelSpec attention = tiny_spec("self_attention");
  attention["self_attention"] = {{"dim", 8}, {"heads", 2}, {"layers", 1}};
  fm::ModelSpec full = tiny_spec("bilinear");
  fm::ModelSpec compact = tiny_spec("bilinear");
  compact["bilinear"] = {{"type", "compact"}, {"dim", 64}};
  for (const Case& c :
       {Case{"attention", attention}, Case{"full", full}, Case{"compact", compact}}) {
    auto backbone = fm::build_backbone(c.spec);
    auto head = fm::build_head(c.spec, *backbone);
    head->eval();
    torch::NoGradGuard no_grad;
    auto out = head->forward_head(fm::Features{{map}, {}}, *backbone);
    for (auto& [name, t] : fm::state_dict(*head)) tensors.emplace_back(c.name + "." + name, t);
    tensors.emplace_back(c.name + ".out.logits", out.logits);
    tensors.emplace_back(c.name + ".out.embedding", out.embedding);
    if (out.attention.defined()) tensors.emplace_back(c.name + ".out.attention", out.attention);
  }
  finch::io::write_safetensors(dir / "heads.safetensors", tensors, {});
  std::string result =
      finch::test::run_python_reference("heads_reference.py", (dir / "heads.safetensors").string());
  EXPECT_CONTAINS(result, "attention ok");
  EXPECT_CONTAINS(result, "full ok");
  EXPECT_CONTAINS(result, "compact ok");
}

TEST(Wsdan, TrainingViewsAndRefinedEvaluation) {
  torch::manual_seed(3);
  fm::ModelSpec spec = tiny_spec("wsdan");
  spec["wsdan"] = {{"parts", 4}};
  auto model = fm::build_classifier(spec);
  torch::Tensor images = torch::randn({3, 3, 16, 16});
  model->train();
  auto out = model->forward(images);
  ASSERT_EQ(out.attention.sizes(), (std::vector<int64_t>{3, 4, 4, 4}));
  EXPECT_EQ(out.embedding.size(1), 4 * 16);
  EXPECT_NEAR(out.embedding.norm(2, 1).mean().item<double>(), 1.0, 1e-5);  // L2-normalised
  finch::Rng rng(7);
  auto views = model->head()->training_views(images, out, rng);
  ASSERT_EQ(views.size(), 2u);  // crop, drop
  for (const auto& v : views) EXPECT_EQ(v.sizes(), images.sizes());
  EXPECT_FALSE(views[0].equal(images));
  // Drop zeroes the most attended region; nothing else changes.
  torch::Tensor changed = views[1].ne(images).any(1);
  EXPECT_GT(changed.sum().item<int64_t>(), 0);
  EXPECT_TRUE(
      views[1].masked_select(changed.unsqueeze(1).expand_as(images)).eq(0).all().item<bool>());

  model->eval();
  torch::NoGradGuard no_grad;
  auto refined = model->forward(images);
  auto coarse =
      model->head()->forward_head(model->backbone()->forward_features(images), *model->backbone());
  EXPECT_FALSE(refined.logits.equal(coarse.logits));  // averaged with the attention crop's
  spec["wsdan"]["refine"] = false;
  auto plain = fm::build_classifier(spec);
  plain->eval();
  EXPECT_TRUE(plain->head()->refinement_view(images, plain->forward(images)).numel() == 0);
}

TEST(StageNumbers, CountFromTheEndWhenNegative) {
  EXPECT_EQ(fm::resolve_stage_number(-1, 3, "k"), 3u);
  EXPECT_EQ(fm::resolve_stage_number(-3, 3, "k"), 1u);
  EXPECT_EQ(fm::resolve_stage_number(2, 4, "k"), 2u);
  for (int64_t bad : {0, 4, -4}) {
    const std::string message =
        finch::test::error_of([&] { fm::resolve_stage_number(bad, 3, "model.pim.stages"); });
    EXPECT_NE(message.find("model.pim.stages: stage " + std::to_string(bad) + " does not exist"),
              std::string::npos)
        << message;
  }
}
