// USE_C10D_GLOO comes with LibTorch's compile flags (its libtorch_cpu is built with gloo).
#include "finch/train/distributed.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "finch/core/error.h"
#include "finch/eval/metrics.h"
#include "finch/models/batchnorm.h"

namespace finch::train {

namespace {

using Clock = std::chrono::steady_clock;

// An integer environment variable; `fallback` when unset. Throws on text that is not one.
int env_int(const char* name, int fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  try {
    size_t used = 0;
    const int value = std::stoi(text, &used);
    if (used != std::string(text).size()) throw std::invalid_argument(text);
    return value;
  } catch (const std::exception&) {
    throw Error(fmt::format("environment variable {}='{}' is not an integer", name, text));
  }
}

std::string env_string(const char* name, const std::string& fallback) {
  const char* text = std::getenv(name);
  return text && *text ? std::string(text) : fallback;
}

// c10d reports failures as c10::Error (timeouts, "Connection closed by peer") or
// std::runtime_error; keep only the first line of the message (no C++ backtrace).
std::string first_line(const std::exception& e) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&e);
  std::string text = c10_error ? c10_error->what_without_backtrace() : e.what();
  const size_t end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

}  // namespace

DistEnv DistEnv::from_environment() {
  DistEnv env;
  env.world_size = env_int("WORLD_SIZE", 1);
  if (env.world_size < 1) throw Error(fmt::format("WORLD_SIZE={} must be >= 1", env.world_size));
  env.rank = env_int("RANK", 0);
  if (env.rank < 0 || env.rank >= env.world_size)
    throw Error(fmt::format("RANK={} is outside 0..WORLD_SIZE-1 (WORLD_SIZE={})", env.rank,
                            env.world_size));
  env.local_rank = env_int("LOCAL_RANK", env.rank);
  env.local_world_size = env_int("LOCAL_WORLD_SIZE", env.world_size);
  env.restart_count = env_int("TORCHELASTIC_RESTART_COUNT", 0);
  env.agent_hosts_store = env_string("TORCHELASTIC_USE_AGENT_STORE", "") == "True";
  if (env.distributed()) {
    env.master_addr = env_string("MASTER_ADDR", "");
    env.master_port = env_int("MASTER_PORT", -1);
    if (env.master_addr.empty() || env.master_port < 1 || env.master_port > 65535)
      throw Error(fmt::format(
          "WORLD_SIZE={} needs MASTER_ADDR and MASTER_PORT (1..65535) of rank 0's store; "
          "launch with torchrun --no-python, which sets them",
          env.world_size));
  }
  return env;
}

std::string DistEnv::describe() const {
  return distributed() ? fmt::format("rank {} of {}", rank, world_size) : "";
}

struct ProcessGroup::Impl {
  DistEnv env;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;

  // Where every rank last said it was (note_progress), for failure messages. Reading the store
  // may itself fail when the store's host (rank 0) is the one that died.
  std::string last_seen() {
    std::string text;
    for (int r = 0; r < env.world_size; ++r) {
      std::string where = "unknown";
      try {
        const std::string key = fmt::format("finch/progress/{}", r);
        if (store->check({key})) {
          auto bytes = store->get(key);
          where.assign(bytes.begin(), bytes.end());
        }
      } catch (const std::exception&) {
        return " (rank 0's store is unreachable: rank 0 itself has probably stopped)";
      }
      text += fmt::format("{}rank {}: {}", text.empty() ? " (last seen: " : "; ", r, where);
    }
    return text + ")";
  }

  [[noreturn]] void fail(const std::string& what, const std::exception& e) {
    throw Error(fmt::format(
        "rank {} of {}: {} failed: {}{}. Another rank has stopped, hung or lost its connection "
        "(the limit is {} s, train.dist_timeout_s in training); every rank stops, and a training "
        "run folder can be resumed with --resume at any world size",
        env.rank, env.world_size, what.empty() ? "a collective operation" : what, first_line(e),
        last_seen(), timeout.count() / 1000));
  }

  template <typename F>
  auto guarded(const std::string& what, F&& f) {
    try {
      return f();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }
};

ProcessGroup::ProcessGroup(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ProcessGroup::~ProcessGroup() = default;

std::shared_ptr<ProcessGroup> ProcessGroup::connect(const DistEnv& env,
                                                    std::chrono::milliseconds timeout) {
  auto impl = std::make_unique<Impl>();
  impl->env = env;
  impl->timeout = timeout;
  const std::string where = fmt::format("{}:{}", env.master_addr, env.master_port);
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<uint16_t>(env.master_port);
    options.timeout = timeout;
    options.numWorkers = env.world_size;
    if (env.agent_hosts_store) {
      // torchrun's agent already serves the store; each restart attempt gets its own keys.
      options.isServer = false;
      impl->store = c10::make_intrusive<c10d::PrefixStore>(
          fmt::format("/worker/attempt_{}", env.restart_count),
          c10::make_intrusive<c10d::TCPStore>(env.master_addr, options));
    } else {
      options.isServer = env.rank == 0;
      options.multiTenant = true;
      impl->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, options);
    }
    auto group_options = c10d::ProcessGroupGloo::Options::create(timeout);
    // The interface the ranks talk over: GLOO_SOCKET_IFNAME when set (as in PyTorch), loopback
    // when rank 0 is on this machine's loopback, else the interface of this host's name.
    const std::string interface = env_string("GLOO_SOCKET_IFNAME", "");
    const bool loopback = env.master_addr == "127.0.0.1" || env.master_addr == "localhost" ||
                          env.master_addr == "::1";
    group_options->devices.push_back(
        !interface.empty() ? c10d::ProcessGroupGloo::createDeviceForInterface(interface)
        : loopback         ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                           : c10d::ProcessGroupGloo::createDefaultDevice());
    impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("finch/gloo", impl->store), env.rank, env.world_size,
        group_options);
  } catch (const std::exception& e) {
    throw Error(fmt::format(
        "rank {} of {} could not join the job through the store at {} within {} s: {}. Check "
        "that every rank was started with the same MASTER_ADDR/MASTER_PORT and WORLD_SIZE",
        env.rank, env.world_size, where, timeout.count() / 1000, first_line(e)));
  }
  return std::shared_ptr<ProcessGroup>(new ProcessGroup(std::move(impl)));
}

int ProcessGroup::rank() const { return impl_->env.rank; }
int ProcessGroup::size() const { return impl_->env.world_size; }

namespace {
// Gloo works on dense row-major memory; channels-last weights (and any other strided tensor)
// travel through a contiguous copy that is written back.
template <typename Collective>
void on_contiguous(torch::Tensor& tensor, Collective&& collective) {
  if (tensor.is_contiguous()) {
    std::vector<at::Tensor> one{tensor};
    collective(one);
    return;
  }
  std::vector<at::Tensor> one{tensor.contiguous()};
  collective(one);
  torch::NoGradGuard no_grad;
  tensor.copy_(one[0]);
}
}  // namespace

void ProcessGroup::broadcast(std::vector<torch::Tensor>& tensors, int root,
                             const std::string& what) {
  impl_->guarded(what, [&] {
    c10d::BroadcastOptions options;
    options.rootRank = root;
    for (auto& tensor : tensors)
      on_contiguous(tensor, [&](std::vector<at::Tensor>& one) {
        impl_->group->broadcast(one, options)->wait(impl_->timeout);
      });
    return 0;
  });
}

void ProcessGroup::all_reduce_sum(std::vector<torch::Tensor>& tensors, const std::string& what) {
  impl_->guarded(what, [&] {
    for (auto& tensor : tensors)
      on_contiguous(tensor, [&](std::vector<at::Tensor>& one) {
        impl_->group->allreduce(one)->wait(impl_->timeout);
      });
    return 0;
  });
}

namespace {
class GlooPending : public ProcessGroup::Pending {
 public:
  GlooPending(c10::intrusive_ptr<c10d::Work> work, std::function<void()> wait)
      : work_(std::move(work)), wait_(std::move(wait)) {}
  void wait() override { wait_(); }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  std::function<void()> wait_;
};
}  // namespace

std::unique_ptr<ProcessGroup::Pending> ProcessGroup::all_reduce_sum_async(torch::Tensor tensor,
                                                                          const std::string& what) {
  TORCH_CHECK(tensor.is_contiguous(), "all_reduce_sum_async needs a contiguous tensor");
  return impl_->guarded(what, [&] {
    std::vector<at::Tensor> one{tensor};
    auto work = impl_->group->allreduce(one);
    Impl* impl = impl_.get();
    return std::unique_ptr<Pending>(new GlooPending(work, [impl, work, what] {
      impl->guarded(what, [&] { return work->wait(impl->timeout); });
    }));
  });
}

std::vector<torch::Tensor> ProcessGroup::all_gather_varying(const torch::Tensor& tensor,
                                                            const std::string& what) {
  TORCH_CHECK(tensor.dim() == 1, "all_gather_varying takes a 1-d tensor");
  return impl_->guarded(what, [&] {
    const int world = size();
    // Lengths first, then every tensor padded to the longest.
    std::vector<std::vector<at::Tensor>> lengths_out(1);
    for (int r = 0; r < world; ++r) lengths_out[0].push_back(torch::zeros({1}, torch::kInt64));
    std::vector<at::Tensor> length_in{torch::full({1}, tensor.size(0), torch::kInt64)};
    impl_->group->allgather(lengths_out, length_in)->wait(impl_->timeout);
    int64_t longest = 0;
    for (const auto& l : lengths_out[0]) longest = std::max(longest, l.item<int64_t>());
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < world; ++r) out[0].push_back(torch::zeros({longest}, tensor.options()));
    std::vector<at::Tensor> in{torch::zeros({longest}, tensor.options())};
    in[0].slice(0, 0, tensor.size(0)).copy_(tensor);
    impl_->group->allgather(out, in)->wait(impl_->timeout);
    std::vector<torch::Tensor> result;
    for (int r = 0; r < world; ++r)
      result.push_back(out[0][r].slice(0, 0, lengths_out[0][r].item<int64_t>()).clone());
    return result;
  });
}

void ProcessGroup::barrier(const std::string& what) {
  impl_->guarded(what, [&] {
    impl_->group->barrier()->wait(impl_->timeout);
    return 0;
  });
}

void ProcessGroup::require_same(const std::string& what, const std::string& value) {
  impl_->guarded("comparing the ranks' " + what, [&] {
    const std::string key = "finch/same/" + what;
    if (rank() == 0) impl_->store->set(key, std::vector<uint8_t>(value.begin(), value.end()));
    const auto bytes = impl_->store->get(key);  // waits for rank 0's value
    const bool same = std::string(bytes.begin(), bytes.end()) == value;
    // Everyone learns whether anyone differs, so that all ranks stop together.
    std::vector<at::Tensor> flags{torch::zeros({size()}, torch::kInt64)};
    flags[0][rank()] = same ? 0 : 1;
    impl_->group->allreduce(flags)->wait(impl_->timeout);
    for (int r = 0; r < size(); ++r) {
      if (flags[0][r].item<int64_t>() != 0)
        throw Error(
            fmt::format("rank {} has a different {} than rank 0; start every rank with the same "
                        "configuration, data and finch version",
                        r, what));
    }
    return 0;
  });
}

void ProcessGroup::note_progress(const std::string& where) {
  impl_->guarded("recording progress", [&] {
    impl_->store->set(fmt::format("finch/progress/{}", rank()),
                      std::vector<uint8_t>(where.begin(), where.end()));
    return 0;
  });
}

GradientReducer::GradientReducer(std::shared_ptr<ProcessGroup> group,
                                 std::vector<torch::Tensor> parameters, int64_t bucket_bytes,
                                 bool overlap)
    : group_(std::move(group)), overlap_(overlap) {
  for (auto& p : parameters)
    if (p.requires_grad()) parameters_.push_back(p);
  bucket_of_.resize(parameters_.size());
  offset_of_.resize(parameters_.size());
  // Reverse registration order: backward produces the last layers' gradients first.
  int64_t filled = 0, elements = 0;
  for (size_t k = parameters_.size(); k-- > 0;) {
    const auto& p = parameters_[k];
    const int64_t bytes = p.numel() * p.element_size();
    const bool same_kind = !buckets_.empty() &&
                           parameters_[buckets_.back().front()].scalar_type() == p.scalar_type() &&
                           parameters_[buckets_.back().front()].device() == p.device();
    if (buckets_.empty() || !same_kind || filled + bytes > bucket_bytes) {
      if (!buckets_.empty())
        flats_.push_back(torch::zeros({elements}, parameters_[buckets_.back().front()].options()));
      buckets_.emplace_back();
      filled = elements = 0;
    }
    bucket_of_[k] = buckets_.size() - 1;
    offset_of_[k] = elements;
    buckets_.back().push_back(k);
    filled += bytes;
    elements += p.numel();
    bytes_per_step_ += bytes;
  }
  if (!buckets_.empty())
    flats_.push_back(torch::zeros({elements}, parameters_[buckets_.back().front()].options()));
  for (auto& flat : flats_) flat.set_requires_grad(false);
  received_.assign(parameters_.size(), 0);
  received_in_bucket_.assign(buckets_.size(), 0);
  pending_.resize(buckets_.size());
  if (overlap_) {
    for (size_t k = 0; k < parameters_.size(); ++k)
      hooks_.push_back(parameters_[k].register_hook([this, k](torch::Tensor grad) {
        on_gradient(k, grad);
        return grad;
      }));
  }
}

GradientReducer::~GradientReducer() {
  for (size_t k = 0; k < hooks_.size(); ++k) parameters_[k].remove_hook(hooks_[k]);
}

void GradientReducer::on_gradient(size_t k, const torch::Tensor& grad) {
  TORCH_CHECK(!received_[k],
              "a parameter received two gradients in one backward; data-parallel training "
              "needs each parameter used once per step");
  torch::NoGradGuard no_grad;
  const size_t b = bucket_of_[k];
  flats_[b].slice(0, offset_of_[k], offset_of_[k] + grad.numel()).view(grad.sizes()).copy_(grad);
  received_[k] = 1;
  ++received_in_bucket_[b];
  launch_ready_buckets(false);
}

// Buckets start strictly in index order, so that every rank issues the same collectives in the
// same sequence. `all`: start the rest too (after backward), zeros standing in for gradients
// this rank did not produce.
void GradientReducer::launch_ready_buckets(bool all) {
  while (next_bucket_ < buckets_.size() &&
         (all || received_in_bucket_[next_bucket_] == buckets_[next_bucket_].size())) {
    const size_t b = next_bucket_++;
    pending_[b] = group_->all_reduce_sum_async(flats_[b], "the gradient all-reduce");
  }
}

std::vector<int64_t> GradientReducer::average(const std::vector<int64_t>& extra) {
  const auto start = Clock::now();
  const int world = group_->size();
  torch::NoGradGuard no_grad;
  const size_t n = parameters_.size();
  std::vector<char> have(n);
  for (size_t k = 0; k < n; ++k)
    have[k] = overlap_ ? received_[k] : parameters_[k].grad().defined();
  // Pack what backward produced (without overlap: all of it now; with overlap: the hooks did,
  // and the buckets not yet started get zeros for the missing gradients), then start the rest.
  for (size_t b = next_bucket_; b < buckets_.size(); ++b) {
    for (size_t k : buckets_[b]) {
      auto slot = flats_[b].slice(0, offset_of_[k], offset_of_[k] + parameters_[k].numel());
      if (!have[k])
        slot.zero_();
      else if (!overlap_)
        slot.view(parameters_[k].sizes()).copy_(parameters_[k].grad());
    }
  }
  launch_ready_buckets(true);
  // Which gradients exist anywhere (unused parameters) and the callers' flags: one small
  // all-reduce, issued after the buckets on every rank.
  torch::Tensor flags = torch::zeros({static_cast<int64_t>(n + extra.size())}, torch::kInt64);
  auto* f = flags.data_ptr<int64_t>();
  for (size_t k = 0; k < n; ++k) f[k] = have[k];
  for (size_t k = 0; k < extra.size(); ++k) f[n + k] = extra[k];
  std::vector<torch::Tensor> flag_list{flags};
  group_->all_reduce_sum(flag_list, "the gradient all-reduce");
  f = flags.data_ptr<int64_t>();
  for (auto& p : pending_) {
    if (p) p->wait();
    p.reset();
  }
  for (size_t b = 0; b < buckets_.size(); ++b) {
    flats_[b].div_(world);
    for (size_t k : buckets_[b]) {
      if (f[k] == 0) continue;  // no rank has it: stays undefined, like in one process
      auto& p = parameters_[k];
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      const auto slot = flats_[b].slice(0, offset_of_[k], offset_of_[k] + p.numel());
      p.mutable_grad().copy_(slot.view(p.sizes()));
    }
  }
  std::fill(received_.begin(), received_.end(), 0);
  std::fill(received_in_bucket_.begin(), received_in_bucket_.end(), 0);
  next_bucket_ = 0;
  seconds_ += std::chrono::duration<double>(Clock::now() - start).count();
  return std::vector<int64_t>(f + n, f + n + extra.size());
}

namespace {
class GroupStatsSync : public models::BatchStatsSync {
 public:
  explicit GroupStatsSync(std::shared_ptr<ProcessGroup> group) : group_(std::move(group)) {}
  void all_reduce_sum(torch::Tensor& tensor) override {
    std::vector<torch::Tensor> one{tensor};
    group_->all_reduce_sum(one, "SyncBatchNorm's statistics");
  }

 private:
  std::shared_ptr<ProcessGroup> group_;
};
}  // namespace

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error("cannot open a socket to find a free port");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    ::close(fd);
    throw Error("cannot find a free port on 127.0.0.1");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

std::shared_ptr<models::BatchStatsSync> batch_stats_sync(std::shared_ptr<ProcessGroup> group) {
  return std::make_shared<GroupStatsSync>(std::move(group));
}

std::function<void(eval::MetricsAccumulator&)> merge_metrics_over_ranks(ProcessGroup* group) {
  if (!group) return {};
  return [group](eval::MetricsAccumulator& metrics) {
    auto shares = group->all_gather_varying(metrics.pack(), "gathering the metrics of every shard");
    metrics = eval::MetricsAccumulator(metrics.class_names());  // own share is among `shares`
    for (const auto& share : shares) metrics.merge_packed(share);
  };
}

}  // namespace finch::train
