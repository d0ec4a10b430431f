// The batching decisions with made-up times (no sleeps, no timing assertions), the batcher
// thread's answers under concurrent submits, base64 and the pixel limit read from headers.
#include "finch/serve/batcher.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "finch/core/error.h"
#include "finch/io/image.h"
#include "finch/serve/http_util.h"
#include "test_support.h"

namespace fs = finch::serve;
using std::chrono::milliseconds;

namespace {

const auto kForward = std::make_shared<const fs::ForwardFn>([](const torch::Tensor& x) {
  // logits: each image's mean, embedding: its first pixel; row order is checkable.
  return std::make_pair(x.mean({1, 2, 3}).unsqueeze(1), x.flatten(1).narrow(1, 0, 1));
});

fs::TaskPtr task(int64_t rows, fs::Clock::time_point at, int64_t side = 2,
                 std::shared_ptr<const fs::ForwardFn> forward = kForward) {
  auto t = std::make_shared<fs::Task>();
  t->images = torch::rand({rows, 3, side, side});
  t->arrived = at;
  t->forward = std::move(forward);
  return t;
}

fs::BatchOptions options(int64_t max_batch, int64_t delay_ms, int64_t queue = 100) {
  fs::BatchOptions o;
  o.max_batch = max_batch;
  o.max_delay = milliseconds(delay_ms);
  o.max_queued_images = queue;
  return o;
}

}  // namespace

TEST(BatchQueue, WaitsForAFullBatchOrTheOldestRequestsDeadline) {
  const fs::Clock::time_point t0{};
  fs::BatchQueue q(options(4, 5));
  EXPECT_FALSE(q.ready(t0));
  EXPECT_FALSE(q.deadline().has_value());
  ASSERT_TRUE(q.push(task(1, t0)));
  ASSERT_TRUE(q.push(task(2, t0 + milliseconds(3))));
  EXPECT_FALSE(q.ready(t0 + milliseconds(4)));  // 3 rows < 4, oldest waited 4 ms < 5
  EXPECT_EQ(*q.deadline(), t0 + milliseconds(5));
  EXPECT_TRUE(q.ready(t0 + milliseconds(5)));  // the oldest request's delay ran out
  ASSERT_TRUE(q.push(task(1, t0 + milliseconds(4))));
  EXPECT_TRUE(q.ready(t0 + milliseconds(4)));  // 4 rows: full
  auto plan = q.take();
  EXPECT_EQ(plan.rows(), 4);
  EXPECT_EQ(plan.slices.size(), 3u);
  EXPECT_TRUE(q.empty());
}

TEST(BatchQueue, SplitsALargeRequestAcrossBatchesNeverRefusingIt) {
  const fs::Clock::time_point t0{};
  fs::BatchQueue q(options(4, 5, /*queue=*/6));
  auto big = task(10, t0);  // more than max_batch and than the queue: taken when alone
  ASSERT_TRUE(q.push(big));
  EXPECT_FALSE(q.push(task(1, t0)));  // now the queue is over its limit: 503
  auto a = q.take(), b = q.take(), c = q.take();
  EXPECT_EQ(a.rows(), 4);
  EXPECT_EQ(b.rows(), 4);
  EXPECT_EQ(c.rows(), 2);
  EXPECT_EQ(b.slices[0].begin, 4);
  EXPECT_EQ(c.slices[0].begin, 8);
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.queued_rows(), 0);
}

TEST(BatchQueue, NeverMixesModelsOrImageSizes) {
  const fs::Clock::time_point t0{};
  fs::BatchQueue q(options(8, 5));
  auto other_model = std::make_shared<const fs::ForwardFn>(*kForward);
  ASSERT_TRUE(q.push(task(2, t0)));
  ASSERT_TRUE(q.push(task(2, t0, 2, other_model)));  // reloaded model
  ASSERT_TRUE(q.push(task(2, t0, 3)));               // another size
  EXPECT_EQ(q.take().rows(), 2);
  auto second = q.take();
  EXPECT_EQ(second.rows(), 2);
  EXPECT_EQ(second.slices[0].task->forward, other_model);
  EXPECT_EQ(q.take().rows(), 2);
}

TEST(Batcher, ConcurrentRequestsGetTheirOwnRows) {
  fs::Batcher batcher(options(8, 2, 1000));
  std::vector<int64_t> batch_sizes;
  std::mutex m;
  batcher.set_observer([&](int64_t rows, double) {
    std::lock_guard<std::mutex> lock(m);
    batch_sizes.push_back(rows);
  });
  std::vector<std::thread> clients;
  std::atomic<int> wrong{0};
  for (int c = 0; c < 8; ++c)
    clients.emplace_back([&, c] {
      for (int r = 0; r < 5; ++r) {
        torch::Tensor images = torch::rand({1 + (c + r) % 11, 3, 2, 2});
        auto t = batcher.submit(images, kForward);
        ASSERT_TRUE(t);
        t->finished.get_future().wait();
        ASSERT_FALSE(t->error);
        for (int64_t i = 0; i < images.size(0); ++i)
          if (std::abs(t->logits[i].item<float>() - images[i].mean().item<float>()) > 1e-6) ++wrong;
      }
    });
  for (auto& c : clients) c.join();
  EXPECT_EQ(wrong, 0);
  int64_t total = 0;
  for (int64_t n : batch_sizes) {
    EXPECT_LE(n, 8);
    total += n;
  }
  int64_t expected = 0;
  for (int c = 0; c < 8; ++c)
    for (int r = 0; r < 5; ++r) expected += 1 + (c + r) % 11;
  EXPECT_EQ(total, expected);
}

TEST(Batcher, AForwardErrorReachesEveryRequestOfTheBatch) {
  fs::Batcher batcher(options(4, 0));
  auto failing = std::make_shared<const fs::ForwardFn>(
      [](const torch::Tensor&) -> std::pair<torch::Tensor, torch::Tensor> {
        throw finch::Error("model exploded");
      });
  auto t = batcher.submit(torch::rand({3, 3, 2, 2}), failing);
  ASSERT_TRUE(t);
  t->finished.get_future().wait();
  ASSERT_TRUE(t->error);
  EXPECT_THROW(std::rethrow_exception(t->error), finch::Error);
  batcher.stop();
  EXPECT_FALSE(batcher.submit(torch::rand({1, 3, 2, 2}), kForward));  // stopped: refused
}

TEST(Base64, DecodesStandardTextAndRefusesGarbage) {
  EXPECT_EQ(*fs::base64_decode("aGVsbG8="), "hello");
  EXPECT_EQ(*fs::base64_decode("aGVsbG8"), "hello");  // padding optional
  EXPECT_EQ(*fs::base64_decode("data:image/png;base64,aGk="), "hi");
  EXPECT_EQ(*fs::base64_decode("aG\nVs bG8="), "hello");
  EXPECT_EQ(*fs::base64_decode(""), "");
  EXPECT_FALSE(fs::base64_decode("aGVs*G8="));
  EXPECT_FALSE(fs::base64_decode("aGVsbG8=x"));
  EXPECT_FALSE(fs::base64_decode("a"));
}

TEST(PixelLimit, ReadsTheDeclaredSizeOfEachFormatBeforeDecoding) {
  cv::Mat image(7, 13, CV_8UC3, cv::Scalar(10, 20, 30));
  for (const char* ext : {".png", ".jpg", ".bmp", ".webp"}) {
    SCOPED_TRACE(ext);
    std::vector<uchar> bytes;
    ASSERT_TRUE(cv::imencode(ext, image, bytes));
    auto size = finch::io::declared_image_size(std::string(bytes.begin(), bytes.end()));
    ASSERT_TRUE(size.has_value());
    EXPECT_EQ(size->width, 13);
    EXPECT_EQ(size->height, 7);
  }
  // A PNG header declaring 30000 x 30000 (a decompression bomb): refused from its 24 bytes.
  std::string bomb("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x75\x30\0\0\x75\x30", 24);
  EXPECT_EQ(finch::io::declared_image_size(bomb)->width, 30000);
  EXPECT_CONTAINS(
      finch::test::error_of([&] { finch::io::check_pixel_limit(bomb, "bomb.png", 40000000); }),
      "900000000 pixels, more than the limit of 40000000");
  finch::io::check_pixel_limit(bomb, "bomb.png", 0);  // 0: no limit
  EXPECT_FALSE(finch::io::declared_image_size("not an image").has_value());
  EXPECT_FALSE(finch::io::declared_image_size(std::string("\xFF\xD8\xFF", 3)).has_value());
}
