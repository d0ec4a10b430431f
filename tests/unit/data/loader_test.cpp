#include "finch/data/loader.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <set>

#include "finch/core/error.h"

namespace fd = finch::data;

namespace {

// Synthetic images whose pixels encode their index; listed indices are "corrupt".
class SyntheticDataset : public fd::Dataset {
 public:
  SyntheticDataset(size_t n, std::set<size_t> corrupt = {}, int odd_size_index = -1)
      : n_(n), corrupt_(std::move(corrupt)), odd_(odd_size_index) {}
  size_t size() const override { return n_; }
  int64_t label(size_t i) const override { return static_cast<int64_t>(i % 3); }
  cv::Mat load_rgb(size_t i) const override {
    if (corrupt_.count(i)) throw finch::Error("image" + std::to_string(i) + ".jpg: cannot decode");
    const int side = static_cast<int>(i) == odd_ ? 10 : 8;
    return cv::Mat(side, side, CV_8UC3, cv::Scalar(static_cast<double>(i % 256), 7, 9));
  }
  std::string describe(size_t i) const override { return "image" + std::to_string(i) + ".jpg"; }
  const std::vector<std::string>& class_names() const override { return names_; }

 private:
  size_t n_;
  std::set<size_t> corrupt_;
  int odd_;
  std::vector<std::string> names_{"a", "b", "c"};
};

fd::Pipeline flip_pipeline() {
  return fd::build_pipeline(YAML::Load("[{type: hflip, p: 0.5}, {type: random_erasing, p: 0.5}]"),
                            {0, 0, 0}, {1, 1, 1});
}

std::vector<fd::Batch> one_epoch(fd::Loader& loader, int64_t epoch, int64_t first = 0) {
  std::vector<fd::Batch> out;
  loader.start_epoch(epoch, first);
  while (auto b = loader.next()) out.push_back(*b);
  return out;
}

fd::LoaderOptions options(int workers, bool shuffle, int64_t batch = 4) {
  fd::LoaderOptions o;
  o.batch_size = batch;
  o.workers = workers;
  o.shuffle = shuffle;
  o.seed = 11;
  return o;
}

}  // namespace

TEST(EpochOrder, PermutationDeterministicPerEpoch) {
  auto a = fd::epoch_order(100, true, 5, 0);
  auto b = fd::epoch_order(100, true, 5, 0);
  auto c = fd::epoch_order(100, true, 5, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::set<size_t> unique(a.begin(), a.end());
  EXPECT_EQ(unique.size(), 100u);
  EXPECT_EQ(*unique.rbegin(), 99u);
  auto plain = fd::epoch_order(5, false, 5, 3);
  EXPECT_EQ(plain, (std::vector<size_t>{0, 1, 2, 3, 4}));
}

TEST(Loader, UnshuffledOrderAndLastBatch) {
  auto data = std::make_shared<SyntheticDataset>(10);
  fd::Loader loader(data, flip_pipeline(), options(3, false));
  EXPECT_EQ(loader.num_batches(), 3);
  auto batches = one_epoch(loader, 0);
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[2].indices, (std::vector<size_t>{8, 9}));
  EXPECT_EQ(batches[0].images.sizes(), (std::vector<int64_t>{4, 3, 8, 8}));
  EXPECT_EQ(batches[1].labels[0].item<int64_t>(), 4 % 3);

  auto drop = options(2, false);
  drop.drop_last = true;
  fd::Loader dropping(data, flip_pipeline(), drop);
  EXPECT_EQ(one_epoch(dropping, 0).size(), 2u);
}

TEST(Loader, SameBatchesWhateverTheWorkerCount) {
  auto data = std::make_shared<SyntheticDataset>(37);
  fd::Loader one(data, flip_pipeline(), options(1, true));
  fd::Loader four(data, flip_pipeline(), options(4, true));
  for (int64_t epoch : {0, 1}) {
    auto a = one_epoch(one, epoch), b = one_epoch(four, epoch);
    ASSERT_EQ(a.size(), b.size());
    std::set<size_t> seen;
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_EQ(a[i].indices, b[i].indices);
      EXPECT_TRUE(a[i].images.equal(b[i].images)) << "epoch " << epoch << " batch " << i;
      seen.insert(a[i].indices.begin(), a[i].indices.end());
    }
    EXPECT_EQ(seen.size(), 37u);  // every sample exactly once per epoch
  }
  EXPECT_NE(one_epoch(one, 0)[0].indices, one_epoch(one, 1)[0].indices);  // reshuffled
}

// Batch memory is recycled once the consumer drops a batch, never while it holds one, and a
// recycled batch holds exactly what a fresh one would.
TEST(Loader, BatchMemoryIsReusedOnlyAfterTheConsumerDropsIt) {
  auto data = std::make_shared<SyntheticDataset>(40);
  fd::Loader held(data, flip_pipeline(), options(2, true));
  auto kept = one_epoch(held, 0);  // all 10 batches alive at once
  std::set<const void*> distinct;
  for (const auto& b : kept) distinct.insert(b.images.data_ptr());
  EXPECT_EQ(distinct.size(), kept.size());

  fd::Loader streaming(data, flip_pipeline(), options(1, true));
  std::set<const void*> used;
  streaming.start_epoch(0);
  size_t i = 0;
  while (auto b = streaming.next()) {  // each batch dropped before the next is taken
    used.insert(b->images.data_ptr());
    EXPECT_TRUE(b->images.equal(kept[i].images)) << "batch " << i;
    ++i;
  }
  EXPECT_EQ(i, kept.size());
  EXPECT_LT(used.size(), kept.size());  // some buffer served more than one batch
}

TEST(Loader, MidEpochStartGivesTheRemainingBatches) {
  auto data = std::make_shared<SyntheticDataset>(20);
  fd::Loader loader(data, flip_pipeline(), options(2, true));
  auto full = one_epoch(loader, 3);
  auto tail = one_epoch(loader, 3, 2);
  ASSERT_EQ(tail.size(), full.size() - 2);
  for (size_t i = 0; i < tail.size(); ++i) EXPECT_TRUE(tail[i].images.equal(full[i + 2].images));
}

TEST(Loader, CorruptImagesAreSkippedAndReportedOrStrictlyFatal) {
  auto data = std::make_shared<SyntheticDataset>(12, std::set<size_t>{1, 2, 3, 7});
  fd::Loader loader(data, flip_pipeline(), options(2, false));
  auto batches = one_epoch(loader, 0);
  size_t rows = 0;
  for (const auto& b : batches) rows += b.indices.size();
  EXPECT_EQ(rows, 8u);
  auto skipped = loader.skipped();
  ASSERT_EQ(skipped.size(), 4u);
  EXPECT_EQ(skipped[0].index, 1u);
  EXPECT_NE(skipped[0].reason.find("image1.jpg"), std::string::npos);

  auto strict = options(2, false);
  strict.strict = true;
  fd::Loader strict_loader(data, flip_pipeline(), strict);
  strict_loader.start_epoch(0);
  EXPECT_THROW(
      {
        while (strict_loader.next()) {
        }
      },
      finch::Error);
}

TEST(Loader, MixedImageSizesAskForAResize) {
  auto data = std::make_shared<SyntheticDataset>(8, std::set<size_t>{}, 2);
  fd::Loader loader(data, flip_pipeline(), options(1, false));
  loader.start_epoch(0);
  try {
    while (loader.next()) {
    }
    FAIL() << "expected a size error";
  } catch (const finch::Error& e) {
    EXPECT_NE(std::string(e.what()).find("resize"), std::string::npos) << e.what();
  }
}

// Data-parallel ranks: shard k's batch b of every rank together are the one-process batch b
// (3 ranks x 2 = 6), with the same augmentation (it depends on the sample, not the rank).
TEST(Loader, ShardsTogetherGiveTheOneProcessBatches) {
  auto dataset = std::make_shared<SyntheticDataset>(21);
  const fd::Pipeline pipeline = flip_pipeline();
  fd::LoaderOptions one = options(2, true, 6);
  fd::Loader whole(dataset, pipeline, one);
  std::vector<std::unique_ptr<fd::Loader>> shards;
  for (int r = 0; r < 3; ++r) {
    fd::LoaderOptions o = one;
    o.batch_size = 2;
    o.shard_rank = r;
    o.shard_count = 3;
    shards.push_back(std::make_unique<fd::Loader>(dataset, pipeline, o));
    EXPECT_EQ(shards.back()->num_samples(), 7);  // 21 / 3
    EXPECT_EQ(shards.back()->num_batches(), whole.num_batches());
  }
  whole.start_epoch(2);
  for (auto& s : shards) s->start_epoch(2);
  while (auto batch = whole.next()) {
    std::multiset<size_t> expected(batch->indices.begin(), batch->indices.end()), got;
    std::vector<torch::Tensor> images;
    for (auto& s : shards) {
      auto part = s->next();
      ASSERT_TRUE(part);
      got.insert(part->indices.begin(), part->indices.end());
      for (size_t k = 0; k < part->indices.size(); ++k) {
        const auto at = std::find(batch->indices.begin(), batch->indices.end(), part->indices[k]);
        ASSERT_NE(at, batch->indices.end());
        EXPECT_TRUE(part->images[static_cast<int64_t>(k)].equal(
            batch->images[static_cast<int64_t>(at - batch->indices.begin())]));
      }
    }
    EXPECT_EQ(got, expected);
  }
  for (auto& s : shards) EXPECT_FALSE(s->next());
}
