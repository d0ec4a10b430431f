// Data parallelism on c10d, with real ranks on loopback: here as threads of one process (each
// with its own TCPStore client and ProcessGroupGloo), in the CLI tests as processes.
#include "finch/train/distributed.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <future>
#include <optional>
#include <set>
#include <thread>

#include "finch/core/error.h"
#include "finch/data/loader.h"
#include "finch/eval/metrics.h"
#include "finch/models/batchnorm.h"
#include "finch/models/inference.h"
#include "test_support.h"

using finch::train::DistEnv;
using finch::train::GradientReducer;
using finch::train::ProcessGroup;

namespace {

// Runs `body(group)` on `world` ranks (threads) of one job; rethrows the first failure.
void run_ranks(int world, const std::function<void(ProcessGroup&)>& body,
               std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  const int port = finch::train::free_loopback_port();
  std::vector<std::future<void>> ranks;
  for (int r = 0; r < world; ++r) {
    ranks.push_back(std::async(std::launch::async, [=] {
      DistEnv env;
      env.rank = r;
      env.world_size = world;
      env.master_port = port;
      auto group = ProcessGroup::connect(env, timeout);
      body(*group);
    }));
  }
  for (auto& r : ranks) r.get();
}

// Sets environment variables for a scope and restores the previous values.
class ScopedEnv {
 public:
  explicit ScopedEnv(std::initializer_list<std::pair<const char*, const char*>> values) {
    for (const auto& [k, v] : values) {
      const char* old = std::getenv(k);
      saved_.emplace_back(k, old ? std::optional<std::string>(old) : std::nullopt);
      ::setenv(k, v, 1);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ~ScopedEnv() {
    for (auto it = saved_.rbegin(); it != saved_.rend(); ++it) {
      if (it->second)
        ::setenv(it->first.c_str(), it->second->c_str(), 1);
      else
        ::unsetenv(it->first.c_str());
    }
  }

 private:
  std::vector<std::pair<std::string, std::optional<std::string>>> saved_;
};

// A model without BatchNorm (whose batch statistics would differ per shard), in float64 so the
// comparison can be tight.
torch::nn::Sequential tiny_net() {
  torch::manual_seed(7);
  torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)),
                            torch::nn::ReLU(), torch::nn::Flatten(),
                            torch::nn::Linear(4 * 6 * 6, 5));
  net->to(torch::kDouble);
  return net;
}

}  // namespace

TEST(ShardOrder, ShardsAreStridedPaddedAndCoverTheEpoch) {
  const std::vector<size_t> order{9, 3, 7, 1, 0, 5, 8, 2, 6, 4};  // 10 samples
  // 4 ranks: padded to 12 with the order's own beginning (9, 3), positions r, r+4, r+8.
  std::multiset<size_t> all;
  for (int r = 0; r < 4; ++r) {
    auto shard = finch::data::shard_order(order, r, 4, true);
    ASSERT_EQ(shard.size(), 3u);
    for (size_t k = 0; k < shard.size(); ++k) EXPECT_EQ(shard[k], order[(r + 4 * k) % 10]);
    all.insert(shard.begin(), shard.end());
  }
  EXPECT_EQ(all.size(), 12u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(all.count(i), (i == 9 || i == 3) ? 2u : 1u) << i;
  // Without padding (evaluation) every sample exactly once.
  std::multiset<size_t> once;
  for (int r = 0; r < 4; ++r) {
    auto shard = finch::data::shard_order(order, r, 4, false);
    once.insert(shard.begin(), shard.end());
  }
  EXPECT_EQ(once, std::multiset<size_t>(order.begin(), order.end()));
  EXPECT_THROW(finch::data::shard_order(order, 4, 4, true), finch::Error);
}

TEST(DistEnv, ReadsTorchrunVariablesAndRefusesBadOnes) {
  ScopedEnv env({{"RANK", "1"},
                 {"WORLD_SIZE", "2"},
                 {"LOCAL_RANK", "1"},
                 {"LOCAL_WORLD_SIZE", "2"},
                 {"MASTER_ADDR", "127.0.0.1"},
                 {"MASTER_PORT", "29511"},
                 {"TORCHELASTIC_RESTART_COUNT", "3"}});
  DistEnv d = DistEnv::from_environment();
  EXPECT_EQ(d.rank, 1);
  EXPECT_EQ(d.world_size, 2);
  EXPECT_EQ(d.master_port, 29511);
  EXPECT_EQ(d.restart_count, 3);
  EXPECT_EQ(d.describe(), "rank 1 of 2");
  {
    ScopedEnv bad({{"RANK", "2"}});
    EXPECT_NE(finch::test::error_of([] { DistEnv::from_environment(); }).find("RANK=2"),
              std::string::npos);
  }
  {
    ScopedEnv bad({{"MASTER_PORT", "http"}});
    EXPECT_NE(finch::test::error_of([] { DistEnv::from_environment(); }).find("MASTER_PORT"),
              std::string::npos);
  }
}

TEST(ProcessGroup, CollectivesOnTwoRanks) {
  run_ranks(2, [](ProcessGroup& g) {
    std::vector<torch::Tensor> t{torch::full({3}, double(g.rank() + 1), torch::kDouble)};
    g.all_reduce_sum(t);
    EXPECT_TRUE(t[0].equal(torch::full({3}, 3.0, torch::kDouble)));
    std::vector<torch::Tensor> b{torch::full({2}, g.rank() == 0 ? 5.0 : -1.0)};
    g.broadcast(b);
    EXPECT_TRUE(b[0].equal(torch::full({2}, 5.0)));
    // Channels-last weights (not row-major contiguous) arrive in place too.
    auto weight = (torch::arange(2 * 3 * 2 * 2, torch::kFloat).reshape({2, 3, 2, 2}) *
                   (g.rank() == 0 ? 1 : -1))
                      .contiguous(torch::MemoryFormat::ChannelsLast);
    ASSERT_FALSE(weight.is_contiguous());
    std::vector<torch::Tensor> w{weight};
    g.broadcast(w);
    EXPECT_TRUE(weight.equal(torch::arange(2 * 3 * 2 * 2, torch::kFloat).reshape({2, 3, 2, 2})));
    EXPECT_TRUE(weight.is_contiguous(torch::MemoryFormat::ChannelsLast));
    auto gathered = g.all_gather_varying(torch::arange(g.rank() + 2, torch::kDouble));
    ASSERT_EQ(gathered.size(), 2u);
    EXPECT_TRUE(gathered[0].equal(torch::arange(2, torch::kDouble)));
    EXPECT_TRUE(gathered[1].equal(torch::arange(3, torch::kDouble)));
    g.require_same("recipe", "same");
    const std::string error =
        finch::test::error_of([&] { g.require_same("recipe", g.rank() == 0 ? "a" : "b"); });
    EXPECT_NE(error.find("rank 1 has a different recipe"), std::string::npos) << error;
  });
}

// As PyTorch's _test_DDP_niter: 2 ranks x local batch B/2 and 1 process x batch B take the same
// SGD-with-momentum steps on reshuffled inputs, including an uneven last batch; buckets
// reduced after backward and overlapped with it.
class GradientReducerTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Overlap, GradientReducerTest, ::testing::Values(false, true),
                         [](const auto& info) {
                           return info.param ? "Overlapped" : "AfterBackward";
                         });

TEST_P(GradientReducerTest, TwoRanksEqualOneProcessOnTheGlobalBatch) {
  torch::manual_seed(3);
  const torch::Tensor x = torch::randn({10, 3, 6, 6}, torch::kDouble);
  const torch::Tensor y = torch::randint(0, 5, {10}, torch::kInt64);
  const int64_t global_batch = 4;  // steps of 4, 4, 2 samples per epoch; 2 epochs
  auto train = [&](torch::nn::Sequential& net, int64_t batch, GradientReducer* reducer, int rank,
                   int world) {
    torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      auto order = finch::data::epoch_order(10, true, 5, epoch);
      auto mine = finch::data::shard_order(order, rank, world, true);
      for (size_t begin = 0; begin < mine.size(); begin += batch) {
        std::vector<int64_t> rows(mine.begin() + begin,
                                  mine.begin() + std::min(mine.size(), begin + batch));
        auto index = torch::tensor(rows, torch::kInt64);
        sgd.zero_grad();
        torch::nn::functional::cross_entropy(net->forward(x.index_select(0, index)),
                                             y.index_select(0, index))
            .backward();
        if (reducer) reducer->average();
        sgd.step();
      }
    }
  };
  auto reference = tiny_net();
  train(reference, global_batch, nullptr, 0, 1);

  std::vector<std::vector<torch::Tensor>> results(2);
  // Built here: torch's default generator is shared by the rank threads.
  std::vector<torch::nn::Sequential> nets{tiny_net(), tiny_net()};
  run_ranks(2, [&](ProcessGroup& g) {
    auto net = nets[g.rank()];
    // A different start on rank 1: the reducer's users broadcast rank 0's weights first.
    if (g.rank() == 1) {
      torch::NoGradGuard no_grad;
      for (auto& p : net->parameters()) p.add_(1.0);
    }
    std::vector<torch::Tensor> params;
    for (auto& p : net->parameters()) params.push_back(p.data());
    g.broadcast(params);
    auto shared = std::shared_ptr<ProcessGroup>(&g, [](ProcessGroup*) {});
    GradientReducer reducer(shared, net->parameters(), /*bucket_bytes=*/200,  // several buckets
                            /*overlap=*/GetParam());
    EXPECT_GT(reducer.bucket_count(), 1);
    train(net, global_batch / 2, &reducer, g.rank(), 2);
    for (auto& p : net->parameters()) results[g.rank()].push_back(p.detach().clone());
  });
  auto expected = reference->parameters();
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(results[r].size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
      // float64: the only difference is the order of additions (mean of means).
      EXPECT_TRUE(torch::allclose(results[r][i], expected[i], 0, 1e-12))
          << "rank " << r << " parameter " << i << " differs by "
          << (results[r][i] - expected[i]).abs().max().item<double>();
    }
  }
}

TEST_P(GradientReducerTest, FlagsAreSummedAndUnusedParametersStayWithoutGradient) {
  const bool overlap = GetParam();
  run_ranks(2, [overlap](ProcessGroup& g) {
    auto used = torch::ones({3}, torch::requires_grad());
    auto unused = torch::ones({2}, torch::requires_grad());
    auto sometimes = torch::ones({2}, torch::requires_grad());
    auto shared = std::shared_ptr<ProcessGroup>(&g, [](ProcessGroup*) {});
    GradientReducer reducer(shared, {used, unused, sometimes}, 25 << 20, overlap);
    auto loss = (used * (g.rank() + 1.0)).sum();
    if (g.rank() == 0) loss = loss + (sometimes * 4.0).sum();
    loss.backward();
    auto sums = reducer.average({g.rank() == 1 ? 1 : 0, 1});
    EXPECT_EQ(sums, (std::vector<int64_t>{1, 2}));
    EXPECT_TRUE(used.grad().equal(torch::full({3}, 1.5)));  // (1 + 2) / 2
    EXPECT_FALSE(unused.grad().defined());
    EXPECT_TRUE(sometimes.grad().equal(torch::full({2}, 2.0)));  // (4 + 0) / 2
  });
}

TEST(ProcessGroup, AHungRankStopsTheOthersWithinTheTimeoutNamingWhereEachWas) {
  std::promise<void> rank0_done;
  auto rank0_finished = rank0_done.get_future().share();
  run_ranks(
      2,
      [&](ProcessGroup& g) {
        g.note_progress(g.rank() == 0 ? "epoch 1, step 4" : "epoch 1, step 3");
        g.barrier();
        if (g.rank() == 1) {  // never joins the all-reduce, stays alive until rank 0 gave up
          rank0_finished.wait();
          return;
        }
        std::vector<torch::Tensor> t{torch::ones({4})};
        const std::string error =
            finch::test::error_of([&] { g.all_reduce_sum(t, "the gradient all-reduce"); });
        rank0_done.set_value();
        EXPECT_NE(error.find("rank 0 of 2: the gradient all-reduce failed"), std::string::npos)
            << error;
        EXPECT_NE(error.find("rank 1: epoch 1, step 3"), std::string::npos) << error;
        EXPECT_NE(error.find("--resume"), std::string::npos) << error;
      },
      std::chrono::seconds(2));
}

TEST(MetricsAccumulator, MergedSharesEqualOneAccumulator) {
  torch::manual_seed(1);
  const auto logits = torch::randn({30, 4});
  const auto labels = torch::randint(0, 4, {30}, torch::kInt64);
  std::vector<std::string> names{"a", "b", "c", "d"};
  finch::eval::MetricsAccumulator whole(names), first(names), second(names), merged(names);
  whole.add(logits, labels);
  first.add(logits.slice(0, 0, 13), labels.slice(0, 0, 13));
  second.add(logits.slice(0, 13), labels.slice(0, 13));
  merged.merge_packed(first.pack());
  merged.merge_packed(second.pack());
  const auto a = whole.finish(), b = merged.finish();
  EXPECT_EQ(b.num_samples, 30);
  EXPECT_EQ(a.top1, b.top1);
  EXPECT_EQ(a.top5, b.top5);
  EXPECT_EQ(a.confusion, b.confusion);
  EXPECT_NEAR(a.loss, b.loss, 1e-12);
  EXPECT_NEAR(a.calibration.ece, b.calibration.ece, 1e-12);
  EXPECT_THROW(merged.merge_packed(torch::zeros({5}, torch::kFloat64)), c10::Error);
}

// SyncBatchNorm (train.sync_bn): 2 ranks x local batch B/2 with statistics over both equal one
// process x batch B with an ordinary BatchNorm: weights, gradients through the statistics, and
// running mean / variance; float64, 2 epochs of reshuffled batches of 4, 4, 2.
class SyncBatchNormTest : public ::testing::TestWithParam<bool> {};
INSTANTIATE_TEST_SUITE_P(Layout, SyncBatchNormTest, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "ChannelsLast" : "Nchw"; });

TEST_P(SyncBatchNormTest, TwoRanksEqualOneProcessWithPlainBatchNorm) {
  const bool channels_last = GetParam();
  torch::manual_seed(5);
  const torch::Tensor x = torch::randn({10, 3, 6, 6}, torch::kDouble) * 2 + 1;
  const torch::Tensor y = torch::randint(0, 5, {10}, torch::kInt64);
  auto make = [channels_last] {
    torch::manual_seed(9);
    torch::nn::Sequential net(torch::nn::Conv2d(torch::nn::Conv2dOptions(3, 4, 3).padding(1)),
                              finch::models::BatchNorm2d(4), torch::nn::ReLU(),
                              torch::nn::Flatten(), torch::nn::Linear(4 * 6 * 6, 5));
    net->to(torch::kDouble);
    if (channels_last) finch::models::convert_to_channels_last(*net);
    return net;
  };
  auto train = [&](torch::nn::Sequential& net, int64_t batch, GradientReducer* reducer, int rank,
                   int world) {
    torch::optim::SGD sgd(net->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
    for (int64_t epoch = 0; epoch < 2; ++epoch) {
      auto mine =
          finch::data::shard_order(finch::data::epoch_order(10, true, 5, epoch), rank, world, true);
      for (size_t begin = 0; begin < mine.size(); begin += batch) {
        std::vector<int64_t> rows(mine.begin() + begin,
                                  mine.begin() + std::min(mine.size(), begin + batch));
        auto index = torch::tensor(rows, torch::kInt64);
        sgd.zero_grad();
        auto batch_x = x.index_select(0, index);
        if (channels_last) batch_x = batch_x.contiguous(torch::MemoryFormat::ChannelsLast);
        torch::nn::functional::cross_entropy(net->forward(batch_x), y.index_select(0, index))
            .backward();
        if (reducer) reducer->average();
        sgd.step();
      }
    }
  };
  auto reference = make();
  train(reference, 4, nullptr, 0, 1);
  std::vector<torch::nn::Sequential> nets{make(), make()};
  std::vector<std::vector<torch::Tensor>> results(2);
  run_ranks(2, [&](ProcessGroup& g) {
    auto& net = nets[g.rank()];
    auto shared = std::shared_ptr<ProcessGroup>(&g, [](ProcessGroup*) {});
    EXPECT_EQ(finch::models::set_batch_stats_sync(*net, finch::train::batch_stats_sync(shared)), 1);
    GradientReducer reducer(shared, net->parameters(), 25 << 20, /*overlap=*/true);
    train(net, 2, &reducer, g.rank(), 2);
    for (auto& p : net->parameters()) results[g.rank()].push_back(p.detach().clone());
    for (auto& b : net->buffers()) results[g.rank()].push_back(b.detach().clone());
  });
  std::vector<torch::Tensor> expected = reference->parameters();
  for (auto& b : reference->buffers()) expected.push_back(b);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(results[r].size(), expected.size());
    for (size_t i = 0; i < expected.size(); ++i)
      EXPECT_TRUE(torch::allclose(results[r][i].to(torch::kDouble), expected[i].to(torch::kDouble),
                                  0, 1e-10))
          << "rank " << r << " tensor " << i << " differs by "
          << (results[r][i].to(torch::kDouble) - expected[i].to(torch::kDouble))
                 .abs()
                 .max()
                 .item<double>();
  }
  // Without synchronisation the shards' statistics differ and so do the weights: the test can
  // tell the two apart.
  std::vector<torch::nn::Sequential> plain{make(), make()};
  std::vector<torch::Tensor> unsynced;
  run_ranks(2, [&](ProcessGroup& g) {
    auto shared = std::shared_ptr<ProcessGroup>(&g, [](ProcessGroup*) {});
    GradientReducer reducer(shared, plain[g.rank()]->parameters());
    train(plain[g.rank()], 2, &reducer, g.rank(), 2);
    if (g.rank() == 0) unsynced = plain[0]->parameters();
  });
  EXPECT_FALSE(torch::allclose(unsynced[0], expected[0], 0, 1e-6));
}
