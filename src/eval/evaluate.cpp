#include "finch/eval/evaluate.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include "finch/core/error.h"
#include "finch/core/yaml_json.h"
#include "finch/data/from_config.h"
#include "finch/eval/session.h"
#include "finch/io/safetensors.h"

namespace finch::eval {

Tta parse_tta(const std::string& name) {
  if (name.empty() || name == "none") return Tta::kNone;
  if (name == "flip") return Tta::kFlip;
  if (name == "five-crop" || name == "five_crop") return Tta::kFiveCrop;
  if (name == "ten-crop" || name == "ten_crop") return Tta::kTenCrop;
  throw Error(fmt::format("unknown --tta '{}' (flip, five-crop, ten-crop)", name));
}

int64_t tta_views(Tta tta) {
  switch (tta) {
    case Tta::kNone:
      return 1;
    case Tta::kFlip:
      return 2;
    case Tta::kFiveCrop:
      return 5;
    case Tta::kTenCrop:
      return 10;
  }
  return 1;
}

namespace {

// torchvision FiveCrop (tl, tr, bl, br, centre) of the image the base ops make, stacked
// vertically so that every sample of a batch has one shape.
class FiveCropTiles final : public data::ImageTransform {
 public:
  FiveCropTiles(data::Pipeline base, int height, int width)
      : base_(std::move(base)), h_(height), w_(width) {}
  cv::Mat apply(const cv::Mat& rgb, Rng& rng) const override {
    cv::Mat image = base_.apply_image(rgb, rng);
    if (image.rows < h_ || image.cols < w_)
      throw Error(fmt::format("five-crop: the {}x{} crop is larger than the {}x{} image", w_, h_,
                              image.cols, image.rows));
    const int right = image.cols - w_, bottom = image.rows - h_;
    // Centre as torchvision's center_crop: round((H - h) / 2), half to even.
    const int cx = static_cast<int>(std::nearbyint(right / 2.0));
    const int cy = static_cast<int>(std::nearbyint(bottom / 2.0));
    std::vector<cv::Mat> crops{image(cv::Rect(0, 0, w_, h_)), image(cv::Rect(right, 0, w_, h_)),
                               image(cv::Rect(0, bottom, w_, h_)),
                               image(cv::Rect(right, bottom, w_, h_)),
                               image(cv::Rect(cx, cy, w_, h_))};
    cv::Mat out;
    cv::vconcat(crops, out);
    return out;
  }

 private:
  data::Pipeline base_;
  int h_, w_;
};

}  // namespace

data::Pipeline tta_pipeline(const models::Preprocess& preprocess, Tta tta) {
  if (tta == Tta::kNone || tta == Tta::kFlip) return models::eval_pipeline(preprocess);
  nlohmann::json ops = preprocess.eval_transforms;
  int h = static_cast<int>(preprocess.input_size), w = h;
  if (!ops.empty() && ops.back().value("type", "") == "center_crop") {
    const auto& size = ops.back().at("size");
    if (size.is_number()) {
      h = w = size.get<int>();
    } else {
      h = size.at(0).get<int>(), w = size.at(1).get<int>();
    }
    ops.erase(ops.size() - 1);
  }
  data::Pipeline base = data::build_pipeline(json_to_yaml(ops), preprocess.mean, preprocess.std);
  return data::Pipeline({std::make_shared<FiveCropTiles>(base, h, w)}, {}, preprocess.mean,
                        preprocess.std);
}

Metrics evaluate(models::Classifier& model, data::Loader& loader, const torch::Device& device,
                 ProgressStyle progress_style, const std::string& label,
                 const EvalOptions& options) {
  const bool was_training = model->is_training();
  model->eval();
  Metrics result = evaluate([&model](const torch::Tensor& x) { return model->forward(x); }, loader,
                            device, progress_style, label, options);
  if (was_training) model->train();
  return result;
}

Metrics evaluate(const ForwardFn& forward, data::Loader& loader, const torch::Device& device,
                 ProgressStyle progress_style, const std::string& label,
                 const EvalOptions& options) {
  torch::NoGradGuard no_grad;
  MetricsAccumulator metrics(loader.dataset().class_names());
  Progress progress(label, loader.num_batches(), progress_style);
  loader.start_epoch(0);
  int64_t done = 0;
  std::vector<torch::Tensor> embeddings, labels, predictions, confidences;
  while (auto batch = loader.next()) {
    torch::Tensor images = batch->images.to(device);
    std::vector<torch::Tensor> views;
    if (options.tta == Tta::kFiveCrop || options.tta == Tta::kTenCrop) {
      TORCH_CHECK(images.size(2) % 5 == 0, "five-crop batches must stack 5 crops vertically");
      for (auto& crop : images.chunk(5, 2)) views.push_back(crop.contiguous());
    } else {
      views.push_back(images);
    }
    if (options.tta == Tta::kFlip || options.tta == Tta::kTenCrop) {
      const size_t n = views.size();
      for (size_t i = 0; i < n; ++i) views.push_back(views[i].flip({3}));
    }
    torch::Tensor probs, embedding, plain_logits;
    for (const auto& view : views) {
      auto output = forward(view);
      if (views.size() == 1) plain_logits = output.logits;
      auto p = torch::softmax(output.logits.to(torch::kFloat), 1);
      probs = probs.defined() ? probs + p : p;
      if (options.records && output.embedding.defined()) {
        auto e = output.embedding.to(torch::kFloat);
        embedding = embedding.defined() ? embedding + e : e;
      }
    }
    probs = probs / static_cast<double>(views.size());
    // log of the averaged probabilities: its softmax is that average, so top-k, loss and
    // calibration are those of the TTA ensemble. Without TTA the logits go in unchanged (no
    // float32 underflow of tiny probabilities).
    metrics.add(plain_logits.defined() ? plain_logits : torch::log(probs.clamp_min(1e-30)),
                batch->labels);
    if (options.records) {
      auto [conf, pred] = probs.max(1);
      options.records->indices.insert(options.records->indices.end(), batch->indices.begin(),
                                      batch->indices.end());
      if (embedding.defined())
        embeddings.push_back((embedding / static_cast<double>(views.size())).cpu());
      labels.push_back(batch->labels.cpu());
      predictions.push_back(pred.cpu());
      confidences.push_back(conf.cpu());
    }
    progress.update(++done, "");
  }
  if (options.records && !labels.empty()) {
    if (!embeddings.empty()) options.records->embeddings = torch::cat(embeddings);
    options.records->labels = torch::cat(labels);
    options.records->predictions = torch::cat(predictions);
    options.records->confidences = torch::cat(confidences);
  }
  if (options.combine) options.combine(metrics);
  Metrics result = metrics.finish();
  progress.finish("");
  return result;
}

nlohmann::json confused_examples(const Metrics& metrics, const EvalRecords& records,
                                 const data::Dataset& dataset, size_t per_pair) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& pair : metrics.most_confused) {
    nlohmann::json examples = nlohmann::json::array();
    if (records.labels.defined()) {
      auto labels = records.labels.accessor<int64_t, 1>();
      auto predictions = records.predictions.accessor<int64_t, 1>();
      for (size_t r = 0; r < records.indices.size() && examples.size() < per_pair; ++r) {
        if (labels[r] == pair.true_class && predictions[r] == pair.predicted_class)
          examples.push_back(dataset.describe(records.indices[r]));
      }
    }
    out.push_back({{"true", metrics.per_class.at(pair.true_class).name},
                   {"predicted", metrics.per_class.at(pair.predicted_class).name},
                   {"count", pair.count},
                   {"examples", examples}});
  }
  return out;
}

SplitEvaluation evaluate_split(InferenceSession& session, const Config& config,
                               const SplitEvalOptions& options) {
  SplitEvaluation out;
  data::EvalSplit split = data::open_eval_split(config, options.split);
  out.dataset = std::move(split.dataset);
  out.source = std::move(split.source);
  const auto& model_classes = session.classes();
  if (out.dataset->class_names() != model_classes) {
    throw Error(fmt::format(
        "the {} split has {} classes that differ from the model's {} classes (names or "
        "order); evaluate on data with the model's class list (data.classes selects and "
        "orders classes)",
        options.split, out.dataset->num_classes(), model_classes.size()));
  }
  data::LoaderOptions loader_options;
  loader_options.batch_size = options.batch_size;
  loader_options.workers = options.workers;
  loader_options.shard_rank = options.shard_rank;
  loader_options.shard_count = options.shard_count;
  loader_options.pad_shards = false;
  data::Loader loader(out.dataset, tta_pipeline(session.info().preprocess, options.tta),
                      loader_options);
  EvalOptions eval_options;
  eval_options.tta = options.tta;
  if (options.records) eval_options.records = &out.records;
  eval_options.combine = options.combine;
  out.metrics = evaluate([&session](const torch::Tensor& x) { return session.forward_model(x); },
                         loader, torch::kCPU, options.progress, "eval", eval_options);
  out.skipped = loader.skipped();
  return out;
}

void save_embeddings(const std::filesystem::path& path, const EvalRecords& records,
                     const std::vector<std::string>& class_names) {
  if (!records.labels.defined()) throw Error("no samples were evaluated: no embeddings to save");
  if (!records.embeddings.defined()) throw Error("this model's head returns no embedding");
  std::vector<int64_t> indices(records.indices.begin(), records.indices.end());
  io::write_safetensors(
      path,
      {{"embeddings", records.embeddings.to(torch::kFloat).contiguous()},
       {"labels", records.labels},
       {"predictions", records.predictions},
       {"indices", torch::tensor(indices, torch::kLong)}},
      {{"format", "finch-embeddings"}, {"classes", nlohmann::json(class_names).dump()}});
}

}  // namespace finch::eval
