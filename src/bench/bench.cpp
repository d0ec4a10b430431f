#include "finch/bench/bench.h"

#include <ATen/record_function.h>
#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <utility>

#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/data/loader.h"
#include "finch/data/transforms.h"
#include "finch/eval/precision.h"
#include "finch/models/inference.h"
#include "finch/models/model_file.h"
#include "finch/models/registry.h"
#include "finch/train/trainer.h"

namespace finch::bench {

namespace {

// RecordFunction start callbacks are plain function pointers, so the count lives in a
// thread-local that count_macs_per_image() resets and reads around one forward.
thread_local double tls_macs = 0;

std::vector<int64_t> int_list(const c10::IValue& value) { return value.toIntVector(); }

std::unique_ptr<at::ObserverContext> count_op(const at::RecordFunction& fn) {
  const std::string name = fn.name();
  const auto inputs = fn.inputs();
  if (name == "aten::convolution" && inputs.size() >= 9 && inputs[0].isTensor() &&
      inputs[1].isTensor()) {
    const auto& x = inputs[0].toTensor();
    const auto& w = inputs[1].toTensor();  // [Cout, Cin / groups, kh, kw]
    if (x.dim() != 4 || w.dim() != 4 || inputs[6].toBool()) return nullptr;  // 2-d, not transposed
    const auto stride = int_list(inputs[3]);
    const auto padding = int_list(inputs[4]);
    const auto dilation = int_list(inputs[5]);
    double out_pixels = 1;
    for (int d = 0; d < 2; ++d) {
      const int64_t k = w.size(2 + d);
      out_pixels *= (x.size(2 + d) + 2 * padding[d] - dilation[d] * (k - 1) - 1) / stride[d] + 1;
    }
    tls_macs +=
        static_cast<double>(x.size(0)) * w.size(0) * out_pixels * w.size(1) * w.size(2) * w.size(3);
  } else if ((name == "aten::addmm" && inputs.size() >= 3) ||
             ((name == "aten::mm" || name == "aten::bmm") && inputs.size() >= 2)) {
    // Linear layers reach these (torch::nn::Linear -> addmm, matmul -> mm / bmm); counting
    // aten::linear too would count them twice.
    const size_t first = name == "aten::addmm" ? 1 : 0;
    if (!inputs[first].isTensor() || !inputs[first + 1].isTensor()) return nullptr;
    const auto& a = inputs[first].toTensor();      // [..., M, K]
    const auto& b = inputs[first + 1].toTensor();  // [..., K, N]
    tls_macs += static_cast<double>(a.numel()) * b.size(-1);
  }
  return nullptr;
}

double read_status_kib(const std::string& key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ":", 0) == 0) {
      std::istringstream fields(line.substr(key.size() + 1));
      double kib = 0;
      fields >> kib;
      return kib;
    }
  }
  return 0;
}

}  // namespace

double peak_rss_mib() { return read_status_kib("VmHWM") / 1024.0; }

double load_average_1min() {
  std::ifstream in("/proc/loadavg");
  double load = -1;
  in >> load;
  return in ? load : -1;
}

double count_macs_per_image(models::Classifier& model, const torch::Tensor& images) {
  TORCH_CHECK(images.dim() == 4 && images.size(0) > 0, "expected [B, 3, H, W] images");
  tls_macs = 0;
  auto handle = at::addThreadLocalCallback(
      at::RecordFunctionCallback(&count_op).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
  try {
    c10::InferenceMode inference;
    model->forward(images);
  } catch (...) {
    at::removeCallback(handle);
    throw;
  }
  at::removeCallback(handle);
  return tls_macs / static_cast<double>(images.size(0));
}

double percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const double rank = p / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(rank);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (rank - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

nlohmann::json bench_infer(const InferBenchOptions& options) {
  if (options.batch < 1 || options.size < 32 || options.iters < 1 || options.warmup < 0) {
    throw Error("bench infer: need batch >= 1, size >= 32, iters >= 1, warmup >= 0");
  }
  if (options.threads > 0) torch::set_num_threads(static_cast<int>(options.threads));
  torch::manual_seed(0);
  models::ModelSpec spec;
  models::Classifier model{nullptr};
  if (std::filesystem::is_regular_file(options.model)) {
    models::LoadedModel loaded = models::load_model_file(options.model);
    spec = loaded.info.arch;
    model = loaded.model;
  } else {
    spec = {{"backbone", options.model}, {"head", "linear"}, {"num_classes", 1000}};
    model = models::build_classifier(spec);
  }
  model->eval();
  models::InferenceOptions inference;
  inference.dtype = models::parse_inference_dtype(options.dtype);
  inference.channels_last = options.channels_last;
  inference.fold_batchnorm = options.optimize;
  inference.onednn_layout = options.onednn_layout;
  const torch::Tensor images = torch::randn({options.batch, 3, options.size, options.size});
  if (inference.dtype == torch::kQUInt8) {
    // Speed only: scales from the timed batch itself (`bench agree` measures accuracy).
    models::LoadedModel source{model, {}};
    source.info.arch = spec;
    bool once = true;
    const eval::BatchSource the_batch =
        [&]() -> std::optional<std::pair<torch::Tensor, torch::Tensor>> {
      if (!std::exchange(once, false)) return std::nullopt;
      return std::make_pair(images, torch::Tensor());
    };
    inference.int8_ranges = eval::calibrate_int8(source, the_batch, 0)["ranges"];
  }
  // The int8 copy has no float convolutions for the counter to see: count the fp32 model.
  const double int8_macs =
      inference.dtype == torch::kQUInt8 ? count_macs_per_image(model, images) : 0.0;
  models::Classifier runner =
      options.optimize || inference.dtype != torch::kFloat || options.channels_last
          ? models::optimize_for_inference(spec, model, inference)
          : model;
  if (runner.ptr() != model.ptr()) model = nullptr;  // peak RSS: only the copy stays
  models::set_blas_threads_for(runner);
  const torch::Tensor input = models::prepare_inference_input(images, inference);
  const double macs =
      inference.dtype == torch::kQUInt8 ? int8_macs : count_macs_per_image(runner, input);

  std::vector<double> latencies_ms;
  {
    c10::InferenceMode guard;
    for (int64_t i = 0; i < options.warmup; ++i) runner->forward(input);
    for (int64_t i = 0; i < options.iters; ++i) {
      const auto start = std::chrono::steady_clock::now();
      torch::Tensor logits = runner->forward(input).logits;
      (void)logits.sum().item<float>();  // make sure the work is done
      latencies_ms.push_back(
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
              .count());
    }
  }
  double total_ms = 0;
  for (double ms : latencies_ms) total_ms += ms;
  const double img_per_s = 1000.0 * static_cast<double>(options.batch * options.iters) / total_ms;
  return {
      {"bench", "infer"},
      {"model", options.model},
      {"batch", options.batch},
      {"size", options.size},
      {"threads", torch::get_num_threads()},
      {"dtype", options.dtype},
      {"optimized", options.optimize},
      {"channels_last", options.channels_last},
      {"onednn_layout", options.onednn_layout},
      {"iters", options.iters},
      {"warmup", options.warmup},
      {"img_per_s", img_per_s},
      {"latency_ms",
       {{"p50", percentile(latencies_ms, 50)},
        {"p90", percentile(latencies_ms, 90)},
        {"p99", percentile(latencies_ms, 99)}}},
      {"gmacs_per_image", macs / 1e9},
      {"gflop_per_s", 2.0 * macs * img_per_s / 1e9},
      {"peak_rss_mib", peak_rss_mib()},
      {"load_avg_1min", load_average_1min()},
  };
}

nlohmann::json bench_data(const DataBenchOptions& options) {
  if (options.batch < 1 || options.batches < 1 || options.workers < 1 || options.warmup < 0) {
    throw Error("bench data: need batch >= 1, batches >= 1, workers >= 1, warmup >= 0");
  }
  data::DatasetPtr dataset = data::open_dataset(options.dataset, options.root, options.split);
  YAML::Node ops = YAML::Load("[{type: random_resized_crop, size: " + std::to_string(options.size) +
                              "}, {type: hflip}]");
  data::Pipeline pipeline =
      data::build_pipeline(ops, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f});
  data::LoaderOptions loader_options;
  loader_options.batch_size = options.batch;
  loader_options.shuffle = true;
  loader_options.drop_last = true;
  loader_options.workers = options.workers;
  data::Loader loader(dataset, pipeline, loader_options);
  const int64_t per_epoch = loader.num_batches();
  if (per_epoch < 1) throw Error("bench data: the dataset has fewer images than one batch");
  int64_t epoch = 0, images = 0, timed = 0;
  loader.start_epoch(epoch);
  auto next = [&] {
    auto batch = loader.next();
    if (!batch) {
      loader.start_epoch(++epoch);
      batch = loader.next();
    }
    return batch->images.size(0);
  };
  for (int64_t i = 0; i < options.warmup; ++i) next();
  const auto start = std::chrono::steady_clock::now();
  for (; timed < options.batches; ++timed) images += next();
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return {
      {"bench", "data"},
      {"dataset", options.dataset},
      {"root", options.root},
      {"size", options.size},
      {"workers", options.workers},
      {"batch", options.batch},
      {"batches", timed},
      {"warmup", options.warmup},
      {"img_per_s", static_cast<double>(images) / seconds},
      {"peak_rss_mib", peak_rss_mib()},
      {"load_avg_1min", load_average_1min()},
  };
}

nlohmann::json bench_agreement(const AgreementOptions& options) {
  if (options.batch < 1 || options.limit < 0)
    throw Error("bench agree: need batch >= 1, limit >= 0");
  if (options.threads > 0) torch::set_num_threads(static_cast<int>(options.threads));
  models::LoadedModel loaded;
  if (std::filesystem::is_regular_file(options.model)) {
    loaded = models::load_model_file(options.model);
  } else {
    torch::manual_seed(0);
    loaded.info.arch = {{"backbone", options.model}, {"head", "linear"}, {"num_classes", 1000}};
    loaded.model = models::build_classifier(loaded.info.arch);
    // torchvision's ImageNet evaluation transforms.
    loaded.info.preprocess.eval_transforms = nlohmann::json::array(
        {{{"type", "resize"}, {"size", 256}}, {{"type", "center_crop"}, {"size", 224}}});
  }
  loaded.model->eval();
  models::set_blas_threads_for(loaded.model);
  const auto batches_of = [&](data::Loader& loader) {
    loader.start_epoch(0);
    return [&loader]() -> std::optional<std::pair<torch::Tensor, torch::Tensor>> {
      auto batch = loader.next();
      if (!batch) return std::nullopt;
      return std::make_pair(batch->images, batch->labels);
    };
  };
  const auto loader_for = [&](const std::string& split, bool shuffle) {
    data::LoaderOptions loader_options;
    loader_options.batch_size = options.batch;
    loader_options.workers = 1;
    loader_options.shuffle = shuffle;  // calibration: every class, not the first folder's
    return std::make_unique<data::Loader>(data::open_dataset(options.dataset, options.root, split),
                                          models::eval_pipeline(loaded.info.preprocess),
                                          loader_options);
  };

  models::InferenceOptions candidate;
  candidate.dtype = models::parse_inference_dtype(options.dtype);
  nlohmann::json calibration;
  if (candidate.dtype == torch::kQUInt8) {
    if (options.calibration_images < 1) throw Error("bench agree: need --calibration-images >= 1");
    if (options.calibration_split == "test") {
      throw Error(
          "bench agree: --calibration-split test would tune the model on its test images; "
          "calibrate on train (the default) or a validation split");
    }
    auto calibration_loader = loader_for(options.calibration_split, true);
    calibration =
        eval::calibrate_int8(loaded, batches_of(*calibration_loader), options.calibration_images);
    calibration["split"] = options.calibration_split;
    candidate.int8_ranges = calibration["ranges"];
  }
  auto loader = loader_for(options.split, false);
  const eval::DtypeComparison c =
      eval::compare_dtypes(loaded, candidate, batches_of(*loader), options.limit);
  const int64_t images = c.images;
  const auto share = [images](int64_t n) { return static_cast<double>(n) / images; };
  if (options.record) {
    if (!std::filesystem::is_regular_file(options.model))
      throw Error("bench agree --record needs a model file, not a backbone name");
    if (candidate.dtype == torch::kFloat) throw Error("bench agree --record records bf16 or int8");
    if (candidate.dtype == torch::kQUInt8 && c.agreement() < eval::kInt8MinAgreement) {
      throw Error(fmt::format(
          "int8 agreed with fp32 on only {:.2f}% of {} {} images (needs {:.0f}%): not recorded. "
          "Try more --calibration-images, or keep fp32 / bf16 for this model",
          100 * c.agreement(), c.images, options.split, 100 * eval::kInt8MinAgreement));
    }
    if (!loaded.info.dtype_checks.is_object()) loaded.info.dtype_checks = nlohmann::json::object();
    nlohmann::json record = eval::dtype_check_record(c, options.split);
    if (!calibration.is_null()) record["calibration"] = calibration;
    loaded.info.dtype_checks[options.dtype] = record;
    models::save_model_file(options.model, loaded.model, loaded.info);
  }
  return {
      {"bench", "agree"},
      {"model", options.model},
      {"dataset", options.dataset},
      {"split", options.split},
      {"dtype", options.dtype},
      {"images", images},
      {"agreement", c.agreement()},
      {"top1_fp32", share(c.correct_fp32)},
      {"top1_" + options.dtype, share(c.correct_other)},
      {"max_abs_prob_diff", c.max_abs_prob_diff},
      {"img_per_s_fp32", images / c.seconds_fp32},
      {"img_per_s_" + options.dtype, images / c.seconds_other},
      {"recorded", options.record},
      {"calibration_images", calibration.is_null() ? nlohmann::json() : calibration["images"]},
      {"threads", torch::get_num_threads()},
      {"load_avg_1min", load_average_1min()},
  };
}

nlohmann::json bench_train(Config config, const TrainBenchOptions& options) {
  if (options.steps < 1 || options.warmup < 1) {
    // The first step also pays for opening the data and building the model: never timed.
    throw Error("bench train: need steps >= 1 and warmup >= 1");
  }
  const int64_t total = options.warmup + options.steps;
  config.set("train.epochs", "1");
  config.set("train.max_steps_per_epoch", std::to_string(total));
  config.set("train.progress", "none");
  config.set("train.checkpoint_every", "0");
  config.set("data.val_fraction", "0");

  const auto run_dir =
      std::filesystem::temp_directory_path() / ("finch-bench-train-" + std::to_string(::getpid()));
  std::filesystem::remove_all(run_dir);
  // Step i ends at ends[i] having seen seen[i] images; step warmup - 1's end opens the window.
  std::vector<std::chrono::steady_clock::time_point> ends;
  std::vector<int64_t> seen;
  train::TrainHooks hooks;
  hooks.on_step = [&](const train::TrainState& state, models::Classifier&) {
    ends.push_back(std::chrono::steady_clock::now());
    seen.push_back(state.seen);
  };
  try {
    train::run_training(config, run_dir, /*resume=*/false, hooks);
  } catch (...) {
    std::filesystem::remove_all(run_dir);
    throw;
  }
  std::filesystem::remove_all(run_dir);
  if (static_cast<int64_t>(ends.size()) < total) {
    throw Error(fmt::format(
        "bench train: the training split gave only {} steps; need warmup + steps = {} in one "
        "epoch (lower --steps or use more data)",
        ends.size(), total));
  }
  std::vector<double> step_ms;
  for (int64_t i = options.warmup; i < total; ++i) {
    const auto k = static_cast<size_t>(i);
    step_ms.push_back(std::chrono::duration<double, std::milli>(ends[k] - ends[k - 1]).count());
  }
  const auto first = static_cast<size_t>(options.warmup - 1), last = ends.size() - 1;
  const double images = static_cast<double>(seen[last] - seen[first]);
  const double seconds = std::chrono::duration<double>(ends[last] - ends[first]).count();
  return {
      {"bench", "train"},
      {"backbone", config.get<std::string>("model.backbone")},
      {"head", config.get<std::string>("model.head")},
      {"precision", config.get<std::string>("train.precision")},
      {"batch", config.get<int64_t>("train.batch_size")},
      {"threads", torch::get_num_threads()},
      {"workers", config.get<int>("data.workers")},
      {"steps", options.steps},
      {"warmup", options.warmup},
      {"img_per_s", images / seconds},
      {"step_ms",
       {{"p50", percentile(step_ms, 50)},
        {"p90", percentile(step_ms, 90)},
        {"p99", percentile(step_ms, 99)}}},
      {"peak_rss_mib", peak_rss_mib()},
      {"load_avg_1min", load_average_1min()},
  };
}

}  // namespace finch::bench
