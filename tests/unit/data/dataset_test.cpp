#include "finch/data/dataset.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>

#include "finch/core/error.h"
#include "finch/data/formats.h"

using namespace finch::data;

namespace {

// In-memory dataset: sample i has label labels[i] and a 2x2 image of value i.
class FakeDataset final : public Dataset {
 public:
  explicit FakeDataset(std::vector<int64_t> labels) : labels_(std::move(labels)) {}
  size_t size() const override { return labels_.size(); }
  int64_t label(size_t i) const override { return labels_.at(i); }
  cv::Mat load_rgb(size_t i) const override {
    return cv::Mat(2, 2, CV_8UC3, cv::Scalar::all(static_cast<double>(i)));
  }
  std::string describe(size_t i) const override { return "fake#" + std::to_string(i); }
  std::optional<Box> box(size_t i) const override { return Box{float(i), 0, 1, 1}; }
  const std::vector<std::string>& class_names() const override { return names_; }

 private:
  std::vector<int64_t> labels_;
  std::vector<std::string> names_ = {"a", "b", "c", "d"};
};

// Class sizes 100, 10, 2, 1 interleaved.
std::vector<int64_t> uneven_labels() {
  std::vector<int64_t> labels;
  for (int i = 0; i < 100; ++i) {
    labels.push_back(0);
    if (i < 10) labels.push_back(1);
    if (i < 2) labels.push_back(2);
    if (i < 1) labels.push_back(3);
  }
  return labels;
}

}  // namespace

TEST(Dataset, LabelsAndSubset) {
  auto base = std::make_shared<FakeDataset>(std::vector<int64_t>{2, 0, 1, 3, 1});
  EXPECT_EQ(base->labels(), (std::vector<int64_t>{2, 0, 1, 3, 1}));
  EXPECT_EQ(base->num_classes(), 4u);

  SubsetDataset subset(base, {4, 0});
  EXPECT_EQ(subset.size(), 2u);
  EXPECT_EQ(subset.labels(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(subset.describe(0), "fake#4");
  EXPECT_EQ(subset.box(0)->x, 4.f);
  EXPECT_EQ(subset.load_rgb(1).at<cv::Vec3b>(0, 0), cv::Vec3b(0, 0, 0));
  EXPECT_EQ(&subset.class_names(), &base->class_names());

  try {
    SubsetDataset bad(base, {1, 5});
    FAIL() << "expected an error";
  } catch (const finch::Error& e) {
    EXPECT_NE(std::string(e.what()).find("index 5"), std::string::npos) << e.what();
  }
  EXPECT_THROW(SubsetDataset(nullptr, {}), finch::Error);
}

TEST(Dataset, StratifiedSplitProportionsPerClass) {
  std::vector<int64_t> labels = uneven_labels();
  auto [train, val] = stratified_split(labels, 0.1, 7);
  std::map<int64_t, int> val_per_class, train_per_class;
  for (size_t i : val) ++val_per_class[labels[i]];
  for (size_t i : train) ++train_per_class[labels[i]];
  EXPECT_EQ(val_per_class[0], 10);  // round(0.1 * 100)
  EXPECT_EQ(val_per_class[1], 1);   // round(0.1 * 10)
  EXPECT_EQ(val_per_class[2], 1);   // round(0.2) = 0, raised to 1 for a class of 2
  EXPECT_EQ(val_per_class[3], 0);   // a single sample stays in training
  EXPECT_EQ(train_per_class[2], 1);
  EXPECT_EQ(train_per_class[3], 1);

  // Sorted, disjoint, and together every index once.
  EXPECT_TRUE(std::is_sorted(train.begin(), train.end()));
  EXPECT_TRUE(std::is_sorted(val.begin(), val.end()));
  std::vector<size_t> all = train;
  all.insert(all.end(), val.begin(), val.end());
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i < all.size(); ++i) ASSERT_EQ(all[i], i);
  EXPECT_EQ(all.size(), labels.size());
}

TEST(Dataset, StratifiedSplitIsDeterministic) {
  std::vector<int64_t> labels = uneven_labels();
  EXPECT_EQ(stratified_split(labels, 0.25, 3), stratified_split(labels, 0.25, 3));
  EXPECT_NE(stratified_split(labels, 0.25, 3).second, stratified_split(labels, 0.25, 4).second);

  // A class's split depends only on its own members: adding a class elsewhere keeps it.
  std::vector<int64_t> more = labels;
  more.insert(more.end(), 20, 9);
  auto [a_train, a_val] = stratified_split(labels, 0.25, 3);
  auto [b_train, b_val] = stratified_split(more, 0.25, 3);
  b_val.resize(a_val.size());
  EXPECT_EQ(a_val, b_val);

  EXPECT_TRUE(stratified_split(labels, 0.0, 1).second.empty());
  EXPECT_EQ(stratified_split(labels, 1.0, 1).second.size(), labels.size());
  EXPECT_THROW(stratified_split(labels, 1.5, 1), finch::Error);
  EXPECT_THROW(stratified_split(labels, -0.1, 1), finch::Error);
}

TEST(Formats, RegistryListsAndRejects) {
  std::vector<std::string> names = dataset_format_names();
  for (const char* name : {"csv", "idx", "imagefolder"})
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  try {
    dataset_format("cub-200");
    FAIL() << "expected an error";
  } catch (const finch::Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("cub-200"), std::string::npos) << message;
    EXPECT_NE(message.find("csv, "), std::string::npos) << message;
    EXPECT_NE(message.find("imagefolder"), std::string::npos) << message;
  }

  // A fresh name per run, so --gtest_repeat works with the process-wide registry.
  static int runs = 0;
  const std::string name = "unit-test-fake-" + std::to_string(runs++);
  DatasetFormat fake{
      name, "three samples",
      [](const std::filesystem::path&, const YAML::Node&) {
        return std::vector<std::string>{"train"};
      },
      [](const std::filesystem::path&, const std::string& split, const YAML::Node&) -> DatasetPtr {
        return std::make_shared<FakeDataset>(std::vector<int64_t>{0, 1, 0});
      }};
  EXPECT_TRUE(register_dataset_format(fake));
  EXPECT_EQ(open_dataset(name, "/nowhere", "train")->size(), 3u);
  EXPECT_EQ(dataset_format(name).description, "three samples");
}

// A taken name is a programming error: the registry stops the program, naming it. ("threadsafe":
// the process already runs loader and OpenMP threads, which a plain fork() could deadlock on.)
TEST(FormatsDeathTest, ATakenNameStopsTheProgram) {
  ::testing::GTEST_FLAG(death_test_style) = "threadsafe";
  EXPECT_DEATH(register_dataset_format(dataset_format("csv")),
               "two dataset formats are registered under the name 'csv'");
}
