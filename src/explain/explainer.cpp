#include "finch/explain/explainer.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cctype>

#include "finch/core/error.h"

namespace finch::explain {

Explainer::Explainer(eval::InferenceSession& session)
    : model_(session.source_model()), pipeline_(session.pipeline()) {}

int64_t Explainer::class_index(const std::string& name) const {
  const auto& classes = model_.info.classes;
  auto it = std::find(classes.begin(), classes.end(), name);
  if (it != classes.end()) return it - classes.begin();
  if (!name.empty() && std::all_of(name.begin(), name.end(), ::isdigit)) {
    const int64_t index = std::stoll(name);
    if (index < static_cast<int64_t>(classes.size())) return index;
  }
  std::string some;
  for (size_t i = 0; i < std::min<size_t>(classes.size(), 5); ++i)
    some += (i ? ", " : "") + classes[i];
  throw Error(fmt::format("unknown class '{}': give a class name ({}{}) or an index in [0, {})",
                          name, some, classes.size() > 5 ? ", ..." : "", classes.size()));
}

std::vector<Explanation> Explainer::explain(const std::vector<cv::Mat>& rgb_images,
                                            const CamOptions& options,
                                            const std::vector<int64_t>& targets) {
  std::vector<Explanation> out;
  if (rgb_images.empty()) return out;
  TORCH_CHECK(targets.empty() || targets.size() == rgb_images.size(), "one target per image");
  Rng unused(0);  // eval pipelines are deterministic
  std::vector<torch::Tensor> inputs;
  for (const auto& rgb : rgb_images) {
    Explanation e;
    e.input_rgb = pipeline_.apply_image(rgb, unused);
    inputs.push_back(data::to_normalized_tensor(e.input_rgb, pipeline_.mean(), pipeline_.std()));
    out.push_back(std::move(e));
  }
  torch::Tensor batch = torch::stack(inputs);
  // Per-image targets run image by image (each map explains its own class); otherwise one pass.
  std::vector<CamResult> results;
  if (targets.empty()) {
    results.push_back(compute_cam(model_.model, batch, options));
  } else {
    for (size_t i = 0; i < targets.size(); ++i) {
      CamOptions one = options;
      one.target = targets[i];
      results.push_back(compute_cam(model_.model, batch.narrow(0, i, 1), one));
    }
  }
  size_t row = 0;
  for (const auto& r : results) {
    torch::Tensor probs = torch::softmax(r.logits.to(torch::kFloat), 1);
    for (int64_t b = 0; b < r.cam.size(0); ++b, ++row) {
      auto& e = out[row];
      e.cam = r.cam[b].contiguous();
      e.target = r.target[b].item<int64_t>();
      e.predicted = probs[b].argmax().item<int64_t>();
      e.predicted_prob = probs[b][e.predicted].item<double>();
      e.target_prob = probs[b][e.target].item<double>();
    }
  }
  return out;
}

DatasetLocalization localize_dataset(Explainer& explainer, const data::Dataset& dataset,
                                     const CamOptions& options, double threshold,
                                     bool explain_label, ProgressStyle progress_style) {
  DatasetLocalization result;
  std::vector<size_t> with_box;
  for (size_t i = 0; i < dataset.size(); ++i) {
    if (dataset.box(i))
      with_box.push_back(i);
    else
      ++result.without_box;
  }
  if (with_box.empty())
    throw Error(
        "this dataset split has no object boxes; localization needs annotated boxes (CUB, "
        "Cars, Aircraft, Dogs, NABirds, or a CSV with x,y,w,h columns)");
  const auto& transforms = explainer.info().preprocess.eval_transforms;
  Progress progress("localize", static_cast<int64_t>(with_box.size()), progress_style);
  int64_t done = 0;
  size_t pointing_hits = 0;
  for (size_t i : with_box) {
    const cv::Mat rgb = dataset.load_rgb(i);
    std::vector<int64_t> targets;
    if (explain_label && options.method != CamMethod::kAttention)
      targets.push_back(dataset.label(i));
    const auto e = explainer.explain({rgb}, options, targets).front();
    const auto geometry = input_geometry(transforms, rgb.cols, rgb.rows);
    const data::Box in_input = cam_to_box(e.cam, threshold, e.input_rgb.cols, e.input_rgb.rows);
    const data::Box box = to_original(in_input, geometry, rgb.cols, rgb.rows);
    result.indices.push_back(i);
    result.boxes.push_back(box);
    result.ious.push_back(iou(box, *dataset.box(i)));
    // Pointing game: the map's peak, mapped back like the box, inside the annotated box.
    const auto [px, py] = cam_peak(e.cam, e.input_rgb.cols, e.input_rgb.rows);
    const data::Box point = to_original({static_cast<float>(px), static_cast<float>(py), 0, 0},
                                        geometry, rgb.cols, rgb.rows);
    pointing_hits += inside(*dataset.box(i), point.x, point.y) ? 1 : 0;
    progress.update(++done, "");
  }
  progress.finish("");
  result.summary = summarize_localization(result.ious);
  result.summary.pointing = static_cast<double>(pointing_hits) / with_box.size();
  return result;
}

}  // namespace finch::explain
