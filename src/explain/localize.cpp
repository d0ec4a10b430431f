#include "finch/explain/localize.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

#include "finch/core/error.h"

namespace finch::explain {

namespace {

// `cam` [h, w] bilinearly resized (half-pixel centres) to height x width, float32, contiguous.
torch::Tensor upsample(const torch::Tensor& cam, int width, int height) {
  return torch::nn::functional::interpolate(
             cam.to(torch::kFloat).contiguous().view({1, 1, cam.size(0), cam.size(1)}),
             torch::nn::functional::InterpolateFuncOptions()
                 .size(std::vector<int64_t>{height, width})
                 .mode(torch::kBilinear)
                 .align_corners(false))
      .view({height, width})
      .contiguous();
}

}  // namespace

data::Box cam_to_box(const torch::Tensor& cam, double threshold, int width, int height) {
  TORCH_CHECK(cam.dim() == 2, "cam_to_box: expected a [h, w] map, got ", cam.sizes());
  torch::Tensor up = upsample(cam, width, height);
  const float peak = up.max().item<float>();
  if (!(peak > 0)) return {0, 0, static_cast<float>(width), static_cast<float>(height)};
  torch::Tensor mask_t =
      (up >= static_cast<float>(threshold) * peak).to(torch::kUInt8).contiguous();
  cv::Mat mask(height, width, CV_8U, mask_t.data_ptr<uint8_t>());
  cv::Mat labels, stats, centroids;
  const int n = cv::connectedComponentsWithStats(mask, labels, stats, centroids, 8, CV_32S);
  int best = -1, best_area = -1;
  for (int i = 1; i < n; ++i) {  // 0 is the background
    const int area = stats.at<int>(i, cv::CC_STAT_AREA);
    if (area > best_area) best = i, best_area = area;
  }
  if (best < 0) return {0, 0, static_cast<float>(width), static_cast<float>(height)};
  return {static_cast<float>(stats.at<int>(best, cv::CC_STAT_LEFT)),
          static_cast<float>(stats.at<int>(best, cv::CC_STAT_TOP)),
          static_cast<float>(stats.at<int>(best, cv::CC_STAT_WIDTH)),
          static_cast<float>(stats.at<int>(best, cv::CC_STAT_HEIGHT))};
}

namespace {

std::pair<int, int> size_param(const nlohmann::json& op, bool* shorter_side) {
  const auto& s = op.at("size");
  if (s.is_number()) {
    if (shorter_side) *shorter_side = true;
    return {s.get<int>(), s.get<int>()};
  }
  if (shorter_side) *shorter_side = false;
  return {s.at(0).get<int>(), s.at(1).get<int>()};  // (h, w)
}

// Python's round() (half to even), as torchvision's CenterCrop and finch's transform use.
int round_half_even(double v) { return static_cast<int>(std::nearbyint(v)); }

}  // namespace

InputGeometry input_geometry(const nlohmann::json& eval_transforms, int width, int height) {
  InputGeometry g;
  double w = width, h = height;
  for (const auto& op : eval_transforms) {
    const std::string type = op.value("type", "");
    if (type == "resize") {
      bool shorter = false;
      auto [sh, sw] = size_param(op, &shorter);
      int out_h = sh, out_w = sw;
      const int iw = static_cast<int>(std::lround(w)), ih = static_cast<int>(std::lround(h));
      if (shorter) {
        // finch's Resize: int(size * long / short) for the longer side.
        if (iw <= ih)
          out_h = static_cast<int>(static_cast<double>(sh) * ih / iw), out_w = sh;
        else
          out_h = sh, out_w = static_cast<int>(static_cast<double>(sh) * iw / ih);
      }
      const double fx = out_w / w, fy = out_h / h;
      g.scale_x *= fx, g.scale_y *= fy;
      g.offset_x *= fx, g.offset_y *= fy;
      w = out_w, h = out_h;
    } else if (type == "center_crop") {
      auto [ch, cw] = size_param(op, nullptr);
      const int iw = static_cast<int>(std::lround(w)), ih = static_cast<int>(std::lround(h));
      auto start = [](int image, int crop) {
        return crop > image ? -((crop - image) / 2) : round_half_even((image - crop) / 2.0);
      };
      g.offset_x += start(iw, cw), g.offset_y += start(ih, ch);
      w = cw, h = ch;
    } else if (type == "rotation" || type == "scale" || type == "pad_crop" ||
               type == "random_resized_crop") {
      throw Error(fmt::format(
          "eval transform '{}' changes geometry in a way boxes cannot be mapped back through; "
          "localization supports resize and center_crop",
          type));
    }
    // hflip in eval transforms would be odd; colour ops do not move pixels.
    if (type == "hflip")
      throw Error("eval transform 'hflip' cannot be mapped back to original-image boxes");
  }
  g.input_width = static_cast<int>(std::lround(w));
  g.input_height = static_cast<int>(std::lround(h));
  return g;
}

std::pair<double, double> cam_peak(const torch::Tensor& cam, int width, int height) {
  TORCH_CHECK(cam.dim() == 2, "cam_peak: expected a [h, w] map, got ", cam.sizes());
  torch::Tensor up = upsample(cam, width, height).view({height * width});
  const int64_t at = up.argmax().item<int64_t>();
  return {static_cast<double>(at % width) + 0.5, static_cast<double>(at / width) + 0.5};
}

bool inside(const data::Box& box, double x, double y) {
  return x >= box.x && x <= box.x + box.width && y >= box.y && y <= box.y + box.height;
}

data::Box to_original(const data::Box& box, const InputGeometry& g, int width, int height) {
  double x0 = (box.x + g.offset_x) / g.scale_x, y0 = (box.y + g.offset_y) / g.scale_y;
  double x1 = (box.x + box.width + g.offset_x) / g.scale_x;
  double y1 = (box.y + box.height + g.offset_y) / g.scale_y;
  x0 = std::clamp(x0, 0.0, static_cast<double>(width));
  x1 = std::clamp(x1, 0.0, static_cast<double>(width));
  y0 = std::clamp(y0, 0.0, static_cast<double>(height));
  y1 = std::clamp(y1, 0.0, static_cast<double>(height));
  return {static_cast<float>(x0), static_cast<float>(y0), static_cast<float>(x1 - x0),
          static_cast<float>(y1 - y0)};
}

double iou(const data::Box& a, const data::Box& b) {
  const double ix =
      std::max(0.0, std::min<double>(a.x + a.width, b.x + b.width) - std::max<double>(a.x, b.x));
  const double iy =
      std::max(0.0, std::min<double>(a.y + a.height, b.y + b.height) - std::max<double>(a.y, b.y));
  const double inter = ix * iy;
  const double uni =
      static_cast<double>(a.width) * a.height + static_cast<double>(b.width) * b.height - inter;
  return uni > 0 ? inter / uni : 0.0;
}

LocalizationSummary summarize_localization(const std::vector<double>& ious) {
  LocalizationSummary s;
  s.images = ious.size();
  if (ious.empty()) return s;
  size_t hits = 0;
  double sum = 0;
  for (double v : ious) {
    hits += v >= 0.5;
    sum += v;
  }
  s.corloc = static_cast<double>(hits) / ious.size();
  s.mean_iou = sum / ious.size();
  return s;
}

}  // namespace finch::explain
