// The loader's memory must not grow with the data set size or with the batches served: it
// holds the epoch's order vector and the batches in flight, never per-sample state. A
// generated 1,000,000-sample data set synthesises small images on demand; a loader that
// cached decoded images or tensors would grow by tens of MB over the batches below.
#include <gtest/gtest.h>
#include <malloc.h>
#include <torch/torch.h>
#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

#include "finch/data/loader.h"

namespace fd = finch::data;

namespace {

class SyntheticDataset : public fd::Dataset {
 public:
  explicit SyntheticDataset(size_t size) : size_(size), classes_{"a", "b"} {}
  size_t size() const override { return size_; }
  int64_t label(size_t i) const override { return static_cast<int64_t>(i % 2); }
  cv::Mat load_rgb(size_t i) const override {
    return cv::Mat(64, 64, CV_8UC3, cv::Scalar(i % 251, (i / 251) % 251, 7));
  }
  std::string describe(size_t i) const override { return "synthetic#" + std::to_string(i); }
  const std::vector<std::string>& class_names() const override { return classes_; }

 private:
  size_t size_;
  std::vector<std::string> classes_;
};

// Bytes the program holds from malloc right now (small blocks + mmap'ed large ones): what a
// leak grows. Unlike RSS it does not depend on how much freed memory the allocator keeps
// mapped (finch's own mallopt settings keep a lot; tests run with glibc's defaults).
double live_heap_mib() {
  const struct mallinfo2 info = mallinfo2();
  return static_cast<double>(info.uordblks + info.hblkhd) / (1 << 20);
}

}  // namespace

TEST(LoaderMemory, DoesNotGrowWithBatchesOnAMillionSamples) {
  auto dataset = std::make_shared<SyntheticDataset>(1'000'000);
  fd::Pipeline pipeline = fd::build_pipeline(YAML::Load("[{type: hflip, p: 0.5}]"),
                                             {0.5f, 0.5f, 0.5f}, {0.25f, 0.25f, 0.25f});
  fd::LoaderOptions options;
  options.batch_size = 16;
  options.shuffle = true;
  options.workers = 2;
  const double before = live_heap_mib();
  fd::Loader loader(dataset, pipeline, options);
  EXPECT_EQ(loader.num_batches(), 62500);
  loader.start_epoch(0);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(loader.next());
  const double warm = live_heap_mib();
  // The order vector is 8 MB (1e6 x size_t); batches in flight ~1 MB each.
  EXPECT_LT(warm - before, 48.0) << "loader start-up for 1e6 samples";
  // 400 more batches = 6,400 samples (~300 MB as float tensors, ~80 MB as RGB images):
  // none of that may stay behind.
  for (int i = 0; i < 400; ++i) ASSERT_TRUE(loader.next());
  EXPECT_LT(live_heap_mib() - warm, 16.0) << "memory grew with the batches served";
}
