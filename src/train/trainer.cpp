#include "finch/train/trainer.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <optional>
#include <thread>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/core/interrupt.h"
#include "finch/core/progress.h"
#include "finch/core/rng.h"
#include "finch/core/threads.h"
#include "finch/core/version.h"
#include "finch/core/yaml_json.h"
#include "finch/data/from_config.h"
#include "finch/eval/evaluate.h"
#include "finch/eval/precision.h"
#include "finch/io/tfjs.h"
#include "finch/models/batchnorm.h"
#include "finch/models/inference.h"
#include "finch/models/model_file.h"
#include "finch/models/pretrained.h"
#include "finch/train/checkpoint.h"
#include "finch/train/distributed.h"
#include "finch/train/feature_cache.h"
#include "finch/train/freeze.h"
#include "finch/train/health.h"
#include "finch/train/losses.h"
#include "finch/train/mixed_precision.h"
#include "finch/train/optim.h"

namespace finch::train {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kInitStream = 0x494e4954;
constexpr uint64_t kStepStream = 0x53544550;
constexpr uint64_t kViewStream = 0x56494557;

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

torch::Device parse_device(const std::string& text) {
  try {
    torch::Device device(text);
    if (device.is_cuda() && !torch::cuda::is_available()) {
      throw Error("device '" + text +
                  "' requested but this LibTorch build has no CUDA device; use device: cpu");
    }
    return device;
  } catch (const c10::Error&) {
    throw Error("unknown device '" + text + "' (use cpu, cuda or cuda:N)");
  }
}

// A run writes best/last model files and a checkpoint (weights + optimizer moments, and a
// second copy while it is swapped in): warn at the start, not after the first epoch, when the
// disk cannot hold that.
void warn_if_short_of_space(const fs::path& run_dir, const torch::nn::Module& model) {
  int64_t bytes = 0;
  for (const auto& p : model.parameters()) bytes += p.numel() * p.element_size();
  for (const auto& b : model.buffers()) bytes += b.numel() * b.element_size();
  const int64_t needed = bytes * 8;  // best + last + 2 x (weights + 2 Adam moments)
  std::error_code ec;
  const auto space = fs::space(run_dir, ec);
  if (!ec && static_cast<int64_t>(space.available) < needed) {
    fmt::print(stderr,
               "warning: {} has {:.1f} MB free but this run's model files and checkpoints need "
               "about {:.1f} MB; writing them will fail (previous files stay intact)\n",
               run_dir.string(), space.available / 1e6, needed / 1e6);
  }
}

// Keeps only the metrics records of epochs already completed (a crash may have left a
// record of an epoch whose checkpoint was not written).
void trim_metrics(const fs::path& file, int64_t completed_epochs) {
  if (!fs::exists(file)) return;
  std::ifstream in(file);
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      if (nlohmann::json::parse(line).at("epoch").get<int64_t>() <= completed_epochs)
        kept += line + "\n";
    } catch (const std::exception&) {
      // a torn last line from a crash: drop it
    }
  }
  write_file_atomic(file, kept);
}

void append_line(const fs::path& file, const std::string& line) {
  std::ofstream out(file, std::ios::app);
  out << line << "\n";
  out.flush();
  if (!out) throw Error("cannot append to " + file.string() + ": " + std::strerror(errno));
}

models::ModelInfo model_info(const Config& config, const models::ModelSpec& spec,
                             const std::vector<std::string>& classes,
                             const nlohmann::json& training) {
  models::ModelInfo info;
  info.arch = spec;
  info.classes = classes;
  info.preprocess.eval_transforms = yaml_to_json(config.node("data.eval_transforms"));
  info.preprocess.mean = config.get<std::vector<float>>("data.mean");
  info.preprocess.std = config.get<std::vector<float>>("data.std");
  info.preprocess.input_size = config.get<int64_t>("model.input_size");
  info.training = training;
  return info;
}

// Validation metrics from cached embeddings (the head alone, eval mode).
eval::Metrics evaluate_cached(models::Classifier& model, const CachedFeatures& features,
                              const std::vector<std::string>& classes) {
  const bool was_training = model->is_training();
  model->eval();
  torch::NoGradGuard no_grad;
  eval::MetricsAccumulator metrics(classes);
  const auto device = model->parameters().front().device();
  for (int64_t begin = 0; begin < features.labels.size(0); begin += 1024) {
    const int64_t end = std::min<int64_t>(begin + 1024, features.labels.size(0));
    auto output =
        model->head()->forward_embedding(features.embeddings.slice(0, begin, end).to(device));
    metrics.add(output.logits, features.labels.slice(0, begin, end));
  }
  if (was_training) model->train();
  return metrics.finish();
}

}  // namespace

namespace {

// The running sums of the epoch over every rank (each rank trains its own shard).
TrainState summed_over_ranks(const TrainState& state, ProcessGroup* group) {
  if (!group) return state;
  std::vector<torch::Tensor> sums{torch::tensor(
      {state.loss_sum, static_cast<double>(state.correct), static_cast<double>(state.seen)},
      torch::kFloat64)};
  group->all_reduce_sum(sums, "summing the epoch's training loss");
  TrainState total = state;
  total.loss_sum = sums[0][0].item<double>();
  total.correct = static_cast<int64_t>(sums[0][1].item<double>());
  total.seen = static_cast<int64_t>(sums[0][2].item<double>());
  return total;
}

// Identity of what a rank is about to train, compared across ranks at the start.
std::string training_fingerprint(const Config& config, const data::Dataset& train,
                                 const torch::nn::Module& model) {
  int64_t parameters = 0;
  for (const auto& p : model.parameters()) parameters += p.numel();
  return fmt::format("{}|{} samples|{}|{} parameters|finch {}", config.to_yaml(), train.size(),
                     fmt::join(train.class_names(), ","), parameters, kVersion);
}

}  // namespace

struct Trainer::Impl {
  explicit Impl(const Config& c) : config(c) {}
  Config config;
  fs::path run_dir;
  TrainHooks hooks;
  uint64_t seed = 0;
  torch::Device device{torch::kCPU};
  int64_t epochs = 0;
  // Data parallelism (torchrun): one rank per process; rank 0 writes every artifact.
  DistEnv dist;
  std::shared_ptr<ProcessGroup> group;
  bool writer = true;
  int threads = 1;
  // `threads: 0` (auto) on CPU: follows the CPU time other processes leave (core/threads.h).
  std::unique_ptr<ThreadGovernor> governor;
  ProgressStyle progress_style = ProgressStyle::kNone;
  data::TrainValData data;
  std::unique_ptr<data::Loader> train_loader, val_loader;
  int64_t batch_size = 0, global_batch = 0;
  models::ModelSpec spec;
  models::Classifier model{nullptr};
  FreezePlan freeze;
  bool channels_last = false;
  Precision precision = Precision::kFp32;  // train.precision
  OptimizerBundle optim;
  double clip_grad_norm = 0;   // optim.clip_grad_norm; 0 = off
  double fixed_lr_factor = 0;  // > 0: set_fixed_lr's factor replaces the schedule's
  int64_t batch_epoch = -1;    // next_training_batch: the loader epoch last started
  bool reading_epoch = false;  // ... and whether it still has batches
  Objective objective{nullptr};
  TrainState state;
  std::unique_ptr<GradientReducer> reducer;
  // Cached features: the frozen backbone's embeddings of train and val, computed once per run
  // directory (eval transforms) and reused on resume.
  CachedFeatures train_features, val_features;
  std::unique_ptr<CachedBatches> cached_batches;
  int64_t steps_per_epoch = 0;
  std::unique_ptr<LrSchedule> schedule;
  int64_t checkpoint_every = 0;
  TrainSummary summary;

  void open_data();
  void build_model(bool resume);
  void restore_or_start(bool resume);
  void join_ranks();
  void cache_features();
  void plan_steps();
  void print_summary_line() const;
};

void Trainer::Impl::open_data() {
  data = data::open_train_val(config);
  data::LoaderOptions train_options = data::train_loader_options(config, data.train);
  train_options.shard_rank = dist.rank;
  train_options.shard_count = dist.world_size;
  train_loader =
      std::make_unique<data::Loader>(data.train, data::train_pipeline(config), train_options);
  if (data.val) {
    data::LoaderOptions val_options = data::loader_options(config, false);
    val_options.shard_rank = dist.rank;
    val_options.shard_count = dist.world_size;
    val_options.pad_shards = false;  // every validation image counted exactly once
    val_loader = std::make_unique<data::Loader>(data.val, data::eval_pipeline(config), val_options);
  }
  batch_size = config.get<int64_t>("train.batch_size");
  global_batch = batch_size * dist.world_size;
}

void Trainer::Impl::build_model(bool resume) {
  const auto& classes = data.train->class_names();
  spec = yaml_to_json(config.node("model"));
  if (spec.value("num_classes", int64_t{0}) == 0)
    spec["num_classes"] = static_cast<int64_t>(classes.size());
  if (spec["num_classes"].get<int64_t>() != static_cast<int64_t>(classes.size())) {
    throw Error(fmt::format("model.num_classes is {} but the training data has {} classes",
                            spec["num_classes"].dump(), classes.size()));
  }
  torch::manual_seed(derive_seed(seed, kInitStream));
  model = models::build_classifier(spec);
  const std::string pretrained = config.get<std::string>("model.pretrained");
  if (!pretrained.empty() && !resume) {  // on resume the checkpoint holds the weights
    auto report = models::load_pretrained(model, models::read_weights_file(pretrained), pretrained,
                                          config.get<bool>("model.pretrained_strict"));
    fmt::print(stderr, "{}\n", report.summary());
    if (io::is_tfjs_model(pretrained) && !spec.value("tf_padding", false))
      fmt::print(stderr,
                 "note: {} comes from Keras; set model.tf_padding: true to compute as Keras does "
                 "(pooling and stride-2 padding; docs/pretrained.md)\n",
                 pretrained);
  }
  const bool cache = config.get<bool>("train.cache_features");
  if (cache && group)
    throw Error(
        "train.cache_features trains the head in seconds on one process; run it without "
        "torchrun");
  freeze = plan_freeze(config.get<std::string>("train.freeze"), *model->backbone());
  if (cache) {
    if (!model->head()->uses_embedding_only())
      throw Error(
          "train.cache_features needs a head that classifies the backbone's pooled "
          "embedding (model.head: linear), not model.head: " +
          spec["head"].get<std::string>());
    if (!freeze.whole_backbone) freeze = plan_freeze("backbone", *model->backbone());
  }
  freeze_parameters(model, freeze);
  model->to(device);
  // NHWC weights and batches: oneDNN's convolutions (forward and backward) then run without
  // reordering either on every call.
  channels_last = config.get<bool>("train.channels_last") && device.is_cpu();
  if (channels_last && !models::channels_last_is_safe(*model)) {
    channels_last = false;
    if (writer)
      fmt::print(stderr,
                 "note: training in NCHW: the model has convolutions whose channel counts are not "
                 "multiples of 16, where oneDNN's channels-last kernels are unsafe\n");
  }
  if (channels_last) models::convert_to_channels_last(*model);
  optim = build_optimizer(config, model);
  const std::string clip = config.get<std::string>("optim.clip_grad_norm");
  if (clip == "auto") {
    clip_grad_norm = model->head()->default_clip_grad_norm();
  } else {
    clip_grad_norm = config.get<double>("optim.clip_grad_norm");
    if (clip_grad_norm < 0 || !std::isfinite(clip_grad_norm))
      throw Error("optim.clip_grad_norm must be auto or a number >= 0 (0 = no clipping), got " +
                  clip);
  }
  std::vector<int64_t> class_counts(classes.size(), 0);
  for (int64_t label : data.train->labels()) ++class_counts.at(static_cast<size_t>(label));
  objective = Objective(config, static_cast<int64_t>(classes.size()),
                        model->head()->embedding_dim(), class_counts);
  objective->to(device);
  if (objective->wants_class_balanced_batches() && config.get<std::string>("data.sampler") != "pk")
    fmt::print(stderr,
               "warning: triplet loss with random batches finds few positive pairs; set "
               "data.sampler: pk (class-balanced batches)\n");
}

void Trainer::Impl::restore_or_start(bool resume) {
  if (resume) {
    auto loaded = load_checkpoint(run_dir, model, *optim.optimizer, objective.ptr().get());
    if (!loaded) throw Error("nothing to resume: " + run_dir.string() + " has no checkpoint/");
    state = *loaded;
    if (state.global_batch > 0 && state.global_batch != global_batch && state.batches_done > 0) {
      // Another world size (or batch): continue at the same sample of the epoch.
      const int64_t samples = state.batches_done * state.global_batch;
      state.batches_done = samples / global_batch;
      if (writer)
        fmt::print(stderr,
                   "note: the checkpoint counted batches of {} samples, this run's global batch "
                   "is {}: continuing the epoch at sample {}\n",
                   state.global_batch, global_batch, state.batches_done * global_batch);
    }
    if (!writer) state.loss_sum = 0, state.correct = 0, state.seen = 0;  // rank 0 holds the sums
    if (writer) {
      trim_metrics(run_dir / "metrics.jsonl", state.epoch);
      fmt::print(stderr, "resuming {} at epoch {} (batch {}, step {})\n", run_dir.string(),
                 state.epoch + 1, state.batches_done, state.global_step);
    }
  } else if (writer) {
    fs::remove(run_dir / "metrics.jsonl");
  }
  state.global_batch = global_batch;
}

// Every rank starts from rank 0's weights and statistics, as DDP does, and trains the same
// thing (refused otherwise: ranks that differ would silently average unrelated gradients).
void Trainer::Impl::join_ranks() {
  if (!group) return;
  group->require_same("configuration, data and model",
                      training_fingerprint(config, *data.train, *model));
  std::vector<torch::Tensor> tensors;
  for (const auto& t : model->parameters()) tensors.push_back(t.data());
  for (const auto& t : model->buffers()) tensors.push_back(t);
  for (const auto& t : objective->buffers()) tensors.push_back(t);
  group->broadcast(tensors, 0, "broadcasting rank 0's weights");
  if (config.get<bool>("train.sync_bn")) {
    const int64_t synced = models::set_batch_stats_sync(*model, batch_stats_sync(group));
    if (writer)
      fmt::print(stderr, "SyncBatchNorm: {} BatchNorm layers use global-batch statistics\n",
                 synced);
  }
  std::vector<torch::Tensor> trained = model->parameters();
  for (const auto& p : objective->parameters()) trained.push_back(p);
  reducer = std::make_unique<GradientReducer>(group, trained,
                                              config.get<int64_t>("train.dist_bucket_mb") << 20,
                                              config.get<bool>("train.dist_overlap"));
}

void Trainer::Impl::cache_features() {
  if (!config.get<bool>("train.cache_features")) return;
  const std::string key = yaml_to_json(config.node("data")).dump() +
                          yaml_to_json(config.node("model")).dump() +
                          std::to_string(data.train->size());
  data::Loader train_eval(data.train, data::eval_pipeline(config),
                          data::loader_options(config, false));
  train_features =
      cached_embeddings(model, train_eval, device, run_dir / "features" / "train.safetensors", key,
                        progress_style, "cache train features");
  if (val_loader) {
    val_features =
        cached_embeddings(model, *val_loader, device, run_dir / "features" / "val.safetensors", key,
                          progress_style, "cache val features");
  }
  cached_batches = std::make_unique<CachedBatches>(train_features, batch_size,
                                                   config.get<bool>("train.drop_last"), seed);
}

void Trainer::Impl::plan_steps() {
  steps_per_epoch = cached_batches ? cached_batches->num_batches() : train_loader->num_batches();
  const int64_t max_steps = config.get<int64_t>("train.max_steps_per_epoch");
  if (max_steps > 0) steps_per_epoch = std::min(steps_per_epoch, max_steps);
  if (steps_per_epoch < 1) {
    throw Error(fmt::format("the training split has {} samples, fewer than one batch of {}",
                            data.train->size(), batch_size));
  }
  schedule = std::make_unique<LrSchedule>(config, steps_per_epoch, steps_per_epoch * epochs);
  checkpoint_every = config.get<int64_t>("train.checkpoint_every");
}

void Trainer::Impl::print_summary_line() const {
  int64_t parameters = 0;
  for (const auto& p : model->parameters()) parameters += p.numel();
  fmt::print(
      stderr,
      "finch {}: {} train / {} val ({}) images, {} classes; model {} + {} ({:.2f} M "
      "parameters, frozen: {}); {} compute threads, {} loader workers, device {}, {}{}\n",
      kVersion, data.train->size(), data.val ? data.val->size() : 0, data.val_source,
      data.train->class_names().size(), spec["backbone"].get<std::string>(),
      spec["head"].get<std::string>(), parameters / 1e6, freeze.description, threads,
      config.get<int>("data.workers"), device.str(), precision_name(precision),
      group ? fmt::format("; data parallel over {} ranks: global batch {} ({} x {}), {} gradient "
                          "bucket(s) of {:.1f} MB per step",
                          dist.world_size, global_batch, dist.world_size, batch_size,
                          reducer->bucket_count(), reducer->bytes_per_step() / 1e6)
            : "");
}

Trainer::Trainer(const Config& config, const fs::path& run_dir, bool resume, TrainHooks hooks)
    : impl_(std::make_unique<Impl>(config)) {
  Impl& t = *impl_;
  t.run_dir = run_dir;
  t.hooks = std::move(hooks);
  t.seed = config.get<uint64_t>("seed");
  t.device = parse_device(config.get<std::string>("device"));
  t.epochs = config.get<int64_t>("train.epochs");
  if (t.epochs < 1) throw Error("train.epochs must be >= 1");
  t.precision = parse_precision(config.get<std::string>("train.precision"));

  t.dist = DistEnv::from_environment();
  if (t.dist.distributed()) {
    const int64_t timeout_s = config.get<int64_t>("train.dist_timeout_s");
    if (timeout_s < 1) throw Error("train.dist_timeout_s must be >= 1");
    t.group = ProcessGroup::connect(t.dist, std::chrono::seconds(timeout_s));
  }
  t.writer = t.dist.rank == 0;
  t.threads = choose_threads(config.get<int>("threads"), t.dist.local_world_size);
  torch::set_num_threads(t.threads);
  if (config.get<int>("threads") == 0 && t.device.is_cpu() && t.threads > 1)
    t.governor = std::make_unique<ThreadGovernor>(t.threads);
  t.progress_style = t.writer ? parse_progress_style(config.get<std::string>("train.progress"))
                              : ProgressStyle::kNone;
  if (!resume && t.dist.restart_count > 0 && fs::exists(run_dir / "checkpoint" / "state.json")) {
    resume = true;  // torchrun restarted the job after a failure: continue, do not start over
    if (t.writer)
      fmt::print(stderr, "restart {}: resuming from the run's checkpoint\n", t.dist.restart_count);
  }
  if (t.writer) {
    require_writable_folder(run_dir, "the run folder");
    write_file_atomic(run_dir / "config.yaml", config.to_yaml());
  }

  t.open_data();
  t.build_model(resume);
  models::set_blas_threads_for(t.model);
  t.restore_or_start(resume);
  t.join_ranks();
  t.cache_features();
  t.plan_steps();
  if (t.writer) {
    t.print_summary_line();
    warn_if_short_of_space(run_dir, *t.model);
    if (t.precision == Precision::kBf16Mixed && t.device.is_cpu() && eval::cpu_bf16_isa().empty())
      fmt::print(stderr,
                 "note: this CPU has no native bf16 (AMX-BF16 or AVX512_BF16); "
                 "train.precision: bf16-mixed will likely be slower than fp32 here\n");
  }
  t.summary.best_val_acc = t.state.best_val_acc;
  t.summary.best_epoch = t.state.best_epoch;
  t.summary.best_model = run_dir / "best.safetensors";
  t.summary.last_model = run_dir / "last.safetensors";
}

Trainer::~Trainer() = default;

bool Trainer::is_writer() const { return impl_->writer; }
const TrainState& Trainer::state() const { return impl_->state; }
models::Classifier& Trainer::model() { return impl_->model; }
int64_t Trainer::steps_per_epoch() const { return impl_->steps_per_epoch; }

TrainSummary Trainer::run() {
  Impl& t = *impl_;
  while (t.state.epoch < t.epochs) {
    if (!train_epoch()) return t.summary;
  }
  // The check `--dtype auto` decides from (eval/precision.h): a bf16 copy of best.safetensors
  // against fp32 on this run's validation images, recorded in that file. Only where the CPU
  // runs bf16 natively (elsewhere auto means fp32 anyway).
  if (!t.writer || !t.val_loader || !t.config.get<bool>("train.check_bf16") ||
      eval::cpu_bf16_isa().empty() || !fs::exists(t.summary.best_model))
    return t.summary;
  models::LoadedModel best = models::load_model_file(t.summary.best_model);
  t.val_loader->start_epoch(0);
  eval::DtypeComparison c;
  try {
    c = eval::compare_dtypes(
        best, torch::kBFloat16,
        [&]() -> std::optional<std::pair<torch::Tensor, torch::Tensor>> {
          auto batch = t.val_loader->next();
          if (!batch) return std::nullopt;
          return std::make_pair(batch->images, batch->labels);
        },
        t.config.get<int64_t>("train.check_bf16_images"));
  } catch (const std::exception& e) {
    // A layer without a bf16 kernel: the model stays fp32, and the training result stands.
    fmt::print(stderr, "note: bf16 check of {} failed ({}); `--dtype auto` will run it in fp32\n",
               t.summary.best_model.string(),
               std::string(e.what()).substr(0, std::string(e.what()).find('\n')));
    return t.summary;
  }
  if (!best.info.dtype_checks.is_object()) best.info.dtype_checks = nlohmann::json::object();
  best.info.dtype_checks["bf16"] = eval::dtype_check_record(c, "validation");
  models::save_model_file(t.summary.best_model, best.model, best.info);
  fmt::print(stderr,
             "bf16 check on {} validation images: top-1 agreement with fp32 {:.2f}%, max |prob "
             "diff| {:.3g}, {:.1f}x fp32's speed; `--dtype auto` will run {} in {}\n",
             c.images, 100 * c.agreement(), c.max_abs_prob_diff,
             c.seconds_other > 0 ? c.seconds_fp32 / c.seconds_other : 0.0,
             t.summary.best_model.filename().string(),
             c.agreement() >= eval::kBf16MinAgreement ? "bf16" : "fp32");
  return t.summary;
}

bool Trainer::train_step(torch::Tensor inputs, torch::Tensor labels) {
  Impl& t = *impl_;
  TrainState& state = t.state;
  if (t.governor && t.governor->update() != t.threads) {
    t.threads = t.governor->threads();
    torch::set_num_threads(t.threads);
    models::set_blas_threads_for(t.model);
  }
  inputs = inputs.to(t.device);
  if (t.channels_last && inputs.dim() == 4)
    inputs = inputs.contiguous(torch::MemoryFormat::ChannelsLast);
  labels = labels.to(t.device);
  torch::manual_seed(derive_seed(t.seed, kStepStream, state.global_step));  // dropout etc.
  set_lr_factor(t.optim,
                t.fixed_lr_factor > 0 ? t.fixed_lr_factor : t.schedule->factor(state.global_step));
  models::ModelOutput output;
  // Extra views the head asks for (WS-DAN's attention crops and drops).
  std::vector<torch::Tensor> view_logits;
  {
    AutocastScope autocast(t.precision == Precision::kBf16Mixed, t.device);
    output =
        t.cached_batches ? t.model->head()->forward_embedding(inputs) : t.model->forward(inputs);
    if (!t.cached_batches) {
      Rng view_rng(derive_seed(t.seed, kViewStream, state.global_step));
      for (const auto& view : t.model->head()->training_views(inputs, output, view_rng))
        view_logits.push_back(t.model->forward(view).logits.to(torch::kFloat));
    }
  }
  output = outputs_to_fp32(std::move(output));
  torch::Tensor loss = t.objective->forward(output, labels, view_logits);
  const double loss_value = loss.item<double>();
  const auto non_finite_loss = [&](const std::string& where) {
    return Error(fmt::format(
        "training loss became {} at epoch {}, batch {} (global step {}){}; stopping. Lower "
        "optim.lr or check the data; the last good checkpoint is in {}",
        loss_value, state.epoch + 1, state.batches_done + 1, state.global_step + 1, where,
        (t.run_dir / "checkpoint").string()));
  };
  // One process stops before backward; data-parallel ranks first agree (in the gradient
  // all-reduce) so that all of them stop at the same step.
  if (!t.reducer && !std::isfinite(loss_value)) throw non_finite_loss("");
  t.optim.optimizer->zero_grad();
  loss.backward();
  if (t.hooks.after_backward) t.hooks.after_backward(t.model);
  bool stop = false;
  if (t.reducer) {
    t.group->note_progress(
        fmt::format("epoch {}, step {}", state.epoch + 1, state.global_step + 1));
    const auto any =
        t.reducer->average({std::isfinite(loss_value) ? 0 : 1, interrupt_requested() ? 1 : 0});
    if (any[0] > 0)
      throw non_finite_loss(fmt::format(" on {} of {} ranks", any[0], t.dist.world_size));
    stop = any[1] > 0;
  }
  // After the all-reduce, so that every rank rescales the same averaged gradients.
  if (t.clip_grad_norm > 0) {
    torch::nn::utils::clip_grad_norm_(t.model->parameters(), t.clip_grad_norm);
  }
  t.optim.optimizer->step();

  const int64_t n = labels.size(0);
  if (state.global_step == 0) state.initial_loss = loss_value;
  state.loss_sum += loss_value * n;
  state.correct += output.logits.argmax(1).eq(labels).sum().item<int64_t>();
  state.seen += n;
  ++state.batches_done;
  ++state.global_step;
  return stop;
}

void Trainer::set_fixed_lr(double lr) {
  if (lr < 0 || !std::isfinite(lr)) throw Error("a fixed learning rate must be >= 0");
  impl_->fixed_lr_factor = lr / impl_->config.get<double>("optim.lr");
}

std::pair<torch::Tensor, torch::Tensor> Trainer::next_training_batch() {
  Impl& t = *impl_;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!t.reading_epoch) {
      t.batch_epoch = t.batch_epoch < 0 ? t.state.epoch : t.batch_epoch + 1;
      t.reading_epoch = true;
      if (t.cached_batches)
        t.cached_batches->start_epoch(t.batch_epoch, 0);
      else
        t.train_loader->start_epoch(t.batch_epoch, 0);
    }
    if (t.cached_batches) {
      if (auto batch = t.cached_batches->next()) return *batch;
    } else if (auto batch = t.train_loader->next()) {
      return {batch->images, batch->labels};
    }
    t.reading_epoch = false;  // exhausted: start the next epoch
  }
  throw Error("the training data gives no batch (fewer images than train.batch_size?)");
}

eval::Metrics Trainer::validate() {
  Impl& t = *impl_;
  if (!t.val_loader) throw Error("this run has no validation data (data.val_fraction is 0)");
  if (t.cached_batches) return evaluate_cached(t.model, t.val_features, t.data.val->class_names());
  return eval::evaluate(t.model, *t.val_loader, t.device, t.progress_style, "  validate",
                        {eval::Tta::kNone, nullptr, merge_metrics_over_ranks(t.group.get())});
}

void Trainer::save_checkpoint() {
  Impl& t = *impl_;
  const TrainState total = summed_over_ranks(t.state, t.group.get());
  if (t.writer)
    train::save_checkpoint(t.run_dir, t.model, *t.optim.optimizer, total, t.objective.ptr().get());
}

bool Trainer::train_epoch() {
  Impl& t = *impl_;
  TrainState& state = t.state;
  const auto epoch_start = Clock::now();
  t.model->train();
  keep_frozen_in_eval(t.model, t.freeze);
  if (t.cached_batches) {
    t.cached_batches->start_epoch(state.epoch, state.batches_done);
  } else {
    t.train_loader->start_epoch(state.epoch, state.batches_done);
  }
  Progress progress(fmt::format("epoch {}/{}", state.epoch + 1, t.epochs), t.steps_per_epoch,
                    t.progress_style);
  const auto train_start = Clock::now();
  const double seconds_before = state.train_seconds;
  const double allreduce_seconds_before = t.reducer ? t.reducer->seconds() : 0;
  const int64_t first_step = state.global_step;
  while (state.batches_done < t.steps_per_epoch) {
    torch::Tensor inputs, labels;
    if (t.cached_batches) {
      auto batch = t.cached_batches->next();
      if (!batch) break;
      std::tie(inputs, labels) = *batch;
    } else {
      auto batch = t.train_loader->next();
      if (!batch) break;
      inputs = batch->images;
      labels = batch->labels;
    }
    bool stop = train_step(inputs, labels);
    state.train_seconds = seconds_before + seconds_since(train_start);
    progress.update(state.batches_done,
                    fmt::format("loss {:.4f} acc {:.4f} {:.0f} img/s", state.loss_sum / state.seen,
                                static_cast<double>(state.correct) / state.seen,
                                state.seen / std::max(1e-9, state.train_seconds)));
    if (t.hooks.on_step) t.hooks.on_step(state, t.model);
    // Data-parallel ranks learn of an interrupt in the next step's all-reduce, together.
    if (!t.reducer) stop = interrupt_requested();
    if (stop) {
      save_checkpoint();
      if (t.writer)
        fmt::print(stderr,
                   "\ninterrupted: checkpoint saved at epoch {}, batch {}; continue with "
                   "`finch train --resume {}`\n",
                   state.epoch + 1, state.batches_done, t.run_dir.string());
      t.summary.interrupted = true;
      t.summary.epochs_completed = state.epoch;
      return false;
    }
    if (t.checkpoint_every > 0 && state.global_step % t.checkpoint_every == 0) save_checkpoint();
  }
  const double train_seconds = state.train_seconds;
  state = summed_over_ranks(state, t.group.get());  // the epoch's figures over all shards
  state.train_seconds = train_seconds;
  const auto skipped =
      t.cached_batches ? std::vector<data::SkippedSample>{} : t.train_loader->skipped();
  progress.finish(
      fmt::format("loss {:.4f} acc {:.4f}", state.loss_sum / std::max<int64_t>(1, state.seen),
                  static_cast<double>(state.correct) / std::max<int64_t>(1, state.seen)));
  if (!skipped.empty()) {
    fmt::print(stderr, "warning: skipped {} unreadable training images this epoch, e.g. {}\n",
               skipped.size(), skipped.front().reason);
  }

  nlohmann::json record = {
      {"epoch", state.epoch + 1},
      {"train_loss", state.loss_sum / std::max<int64_t>(1, state.seen)},
      {"train_acc", static_cast<double>(state.correct) / std::max<int64_t>(1, state.seen)},
      {"val_loss", nullptr},
      {"val_acc", nullptr},
      {"lr", current_lr(t.optim)},
      {"img_per_s", state.seen / std::max(1e-9, train_seconds)},
      {"threads", t.threads},
      {"precision", precision_name(t.precision)},
      {"skipped", skipped.size()}};
  if (t.governor) record["thread_changes"] = t.governor->changes();
  if (t.reducer && state.global_step > first_step) {
    // What data parallelism costs: rank 0's time in the gradient all-reduce per step.
    const double steps = static_cast<double>(state.global_step - first_step);
    record["world_size"] = t.dist.world_size;
    record["allreduce_ms_per_step"] =
        1e3 * (t.reducer->seconds() - allreduce_seconds_before) / steps;
    record["allreduce_mb_per_step"] = t.reducer->bytes_per_step() / 1e6;
  }
  double val_acc = -1;
  if (t.val_loader) {
    const eval::Metrics val = validate();
    val_acc = val.top1;
    record["val_loss"] = val.loss;
    record["val_acc"] = val.top1;
  }
  record["seconds"] = seconds_since(epoch_start);

  nlohmann::json training = {{"epoch", state.epoch + 1},
                             {"val_acc", record["val_acc"]},
                             {"val_source", t.data.val_source},
                             {"seed", t.seed},
                             // what `finch eval --split val` needs to carve the same images
                             {"train_split", t.config.get<std::string>("data.train_split")},
                             {"val_fraction", t.config.get<double>("data.val_fraction")}};
  const auto info = model_info(t.config, t.spec, t.data.train->class_names(), training);
  if (t.writer) models::save_model_file(t.summary.last_model, t.model, info);
  // Model selection uses the validation split only; without one, the last epoch is "best".
  if (!t.val_loader || val_acc > state.best_val_acc) {
    state.best_val_acc = val_acc;
    state.best_epoch = state.epoch + 1;
    if (t.writer) models::save_model_file(t.summary.best_model, t.model, info);
  }
  if (t.writer)
    fmt::print(
        stderr,
        "epoch {}/{}: train loss {:.4f} acc {:.4f} | val loss {} acc {} | lr {:.5f} | "
        "{:.0f} img/s | {}\n",
        state.epoch + 1, t.epochs, record["train_loss"].get<double>(),
        record["train_acc"].get<double>(),
        record["val_loss"].is_null() ? "-"
                                     : fmt::format("{:.4f}", record["val_loss"].get<double>()),
        record["val_acc"].is_null() ? "-" : fmt::format("{:.4f}", val_acc), current_lr(t.optim),
        record["img_per_s"].get<double>(), format_duration(record["seconds"].get<double>()));

  const auto warning = diagnose_epoch(
      {state.epoch + 1, static_cast<int64_t>(t.data.train->class_names().size()),
       record["train_loss"].get<double>(), record["train_acc"].get<double>(), state.initial_loss,
       t.val_loader ? val_acc : -1.0, state.epoch + 1 == t.epochs});
  if (warning) {
    record["warning"] = *warning;
    if (t.writer) fmt::print(stderr, "warning: {}\n", *warning);
  }

  // Epoch done: reset the running sums and checkpoint at the start of the next epoch.
  TrainState next = state;
  next.epoch = state.epoch + 1;
  next.batches_done = 0;
  next.loss_sum = 0;
  next.correct = next.seen = 0;
  next.train_seconds = 0;
  // The record goes first: a crash before the checkpoint re-runs the epoch, and resume
  // trims records of epochs the checkpoint has not reached.
  if (t.writer) {
    append_line(t.run_dir / "metrics.jsonl", record.dump());
    train::save_checkpoint(t.run_dir, t.model, *t.optim.optimizer, next, t.objective.ptr().get());
  }
  state = next;
  t.summary.epochs_completed = state.epoch;
  t.summary.best_val_acc = state.best_val_acc;
  t.summary.best_epoch = state.best_epoch;
  return true;
}

TrainSummary run_training(const Config& config, const fs::path& run_dir, bool resume,
                          const TrainHooks& hooks) {
  return Trainer(config, run_dir, resume, hooks).run();
}

}  // namespace finch::train
