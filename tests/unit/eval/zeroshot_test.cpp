// Zero-shot compatibility on synthetic data whose images are a linear image of their class's
// attributes (so unseen classes are recoverable), the attribute readers and their errors.
#include "finch/eval/zeroshot.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "test_support.h"

namespace fe = finch::eval;
using finch::test::error_of;
using finch::test::write_text;

namespace {

// 10 classes of 8 binary attributes; images x = normalize(P a_y + noise), P [16, 8].
struct Synthetic {
  torch::Tensor attributes, x;
  std::vector<int64_t> labels;
};

Synthetic make(int per_class, uint64_t seed) {
  torch::manual_seed(seed);
  Synthetic s;
  torch::manual_seed(7);  // the same classes and projection for every call
  s.attributes = (torch::rand({10, 8}) > 0.5).to(torch::kFloat);
  const torch::Tensor projection = torch::randn({16, 8});
  torch::manual_seed(seed);
  std::vector<torch::Tensor> rows;
  for (int64_t c = 0; c < 10; ++c)
    for (int i = 0; i < per_class; ++i) {
      rows.push_back(projection.mv(s.attributes[c]) + 0.3 * torch::randn({16}));
      s.labels.push_back(c);
    }
  s.x = torch::nn::functional::normalize(torch::stack(rows),
                                         torch::nn::functional::NormalizeFuncOptions().dim(1));
  return s;
}

}  // namespace

TEST(ZeroShot, BothMethodsRecogniseUnseenClassesFromTheirAttributes) {
  const Synthetic train = make(30, 1), test = make(20, 2);
  // Classes 0-6 seen, 7-9 unseen.
  std::vector<int64_t> seen_rows, seen_labels, test_seen, test_seen_labels, test_unseen,
      test_unseen_labels;
  for (size_t i = 0; i < train.labels.size(); ++i)
    if (train.labels[i] < 7) seen_rows.push_back(i), seen_labels.push_back(train.labels[i]);
  for (size_t i = 0; i < test.labels.size(); ++i)
    if (test.labels[i] < 7)
      test_seen.push_back(i), test_seen_labels.push_back(test.labels[i]);
    else
      test_unseen.push_back(i), test_unseen_labels.push_back(test.labels[i] - 7);
  const auto seen_attr = train.attributes.narrow(0, 0, 7);
  const auto unseen_attr = train.attributes.narrow(0, 7, 3);
  for (auto method : {fe::ZeroShotMethod::kEszsl, fe::ZeroShotMethod::kSoftmax}) {
    fe::ZeroShotOptions options;
    options.method = method;
    const auto model = fe::fit_compatibility(train.x.index_select(0, torch::tensor(seen_rows)),
                                             torch::tensor(seen_labels), seen_attr, options);
    EXPECT_FALSE(model.validation.empty());  // 7 seen classes: cross-validated
    const auto r = fe::zeroshot_evaluate(
        model, seen_attr, unseen_attr, test.x.index_select(0, torch::tensor(test_seen)),
        test_seen_labels, test.x.index_select(0, torch::tensor(test_unseen)), test_unseen_labels);
    EXPECT_GT(r.zsl, 0.6) << fe::to_string(method);        // chance 1/3
    EXPECT_GT(r.gzsl_seen, 0.4) << fe::to_string(method);  // among 10 classes: chance 0.1
    EXPECT_EQ(r.unseen_images, 60);
    EXPECT_NEAR(r.h, 2 * r.gzsl_seen * r.gzsl_unseen / (r.gzsl_seen + r.gzsl_unseen + 1e-300),
                1e-12);
    // Calibrated stacking: chosen on the seen classes' folds, it only ever lowers seen scores,
    // so unseen classes win at least as often.
    EXPECT_GE(model.stacking, 0.0);
    EXPECT_TRUE(model.hyperparameters.contains("stacking"));
    EXPECT_GE(r.calibrated_unseen, r.gzsl_unseen) << fe::to_string(method);
    EXPECT_GT(r.calibrated_h, 0.3) << fe::to_string(method);

    // The two ends of the constant: 0 is plain GZSL, a huge one predicts only unseen classes
    // (GZSL unseen accuracy becomes ZSL accuracy, seen accuracy 0).
    auto forced = model;
    const auto test_seen_x = test.x.index_select(0, torch::tensor(test_seen));
    const auto test_unseen_x = test.x.index_select(0, torch::tensor(test_unseen));
    forced.stacking = 0;
    auto plain = fe::zeroshot_evaluate(forced, seen_attr, unseen_attr, test_seen_x,
                                       test_seen_labels, test_unseen_x, test_unseen_labels);
    EXPECT_DOUBLE_EQ(plain.calibrated_h, plain.h);
    EXPECT_DOUBLE_EQ(plain.calibrated_seen, plain.gzsl_seen);
    forced.stacking = 1e9;
    auto only_unseen = fe::zeroshot_evaluate(forced, seen_attr, unseen_attr, test_seen_x,
                                             test_seen_labels, test_unseen_x, test_unseen_labels);
    EXPECT_DOUBLE_EQ(only_unseen.calibrated_unseen, only_unseen.zsl);
    EXPECT_DOUBLE_EQ(only_unseen.calibrated_seen, 0.0);
  }
}

TEST(ZeroShot, PerClassAccuracyAveragesClasses) {
  // Class 0: 3 of 4 right, class 1: 0 of 1 -> (0.75 + 0) / 2.
  EXPECT_DOUBLE_EQ(fe::per_class_accuracy({0, 0, 0, 1, 0}, {0, 0, 0, 0, 1}), 0.375);
}

TEST(ZeroShot, AttributeCsvAndItsErrors) {
  finch::test::TempDir dir("finch-attributes");
  const auto file = dir.path() / "a.csv";
  write_text(file, "class,striped,winged\ncat,1,0\n\"bird, small\",0.5,1\n");
  const auto table = fe::read_attribute_csv(file);
  EXPECT_EQ(table.classes, (std::vector<std::string>{"cat", "bird, small"}));
  EXPECT_EQ(table.attributes, (std::vector<std::string>{"striped", "winged"}));
  EXPECT_FLOAT_EQ(fe::attribute_rows(table, {"bird, small"})[0][0].item<float>(), 0.5f);
  EXPECT_CONTAINS(error_of([&] { fe::attribute_rows(table, {"dog"}); }),
                  "no row for the dataset's class 'dog'");
  write_text(file, "class,striped\ncat,nan\n");
  EXPECT_CONTAINS(error_of([&] { fe::read_attribute_csv(file); }), "a.csv:2");
  EXPECT_CONTAINS(error_of([&] { fe::read_attribute_csv(file); }), "must be finite");
  write_text(file, "class,striped\ncat,1,2\n");
  EXPECT_CONTAINS(error_of([&] { fe::read_attribute_csv(file); }), "expected a class and 1 values");
  write_text(file, "name,striped\n");
  EXPECT_CONTAINS(error_of([&] { fe::read_attribute_csv(file); }), "expected the header");
  write_text(file, "class,striped\ncat,1\ncat,0\n");
  EXPECT_CONTAINS(error_of([&] { fe::read_attribute_csv(file); }), "listed twice");
}
