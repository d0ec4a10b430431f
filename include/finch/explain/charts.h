#pragma once
// Pictures for explanations and reports: heatmap overlays, reliability diagrams, embedding
// maps (PNG via OpenCV drawing, SVG as text), NPY arrays and base64 for data URIs.
// Images are uint8 RGB HxWx3 in and out (colour order as decode gives it).
#include <torch/types.h>

#include <opencv2/core.hpp>
#include <string>
#include <utility>
#include <vector>

#include "finch/eval/metrics.h"

namespace finch::explain {

/// Jet colour map of `cam` [h, w] in [0, 1] (bilinearly upsampled to the image), blended
/// over `rgb`: out = (1 - alpha) * rgb + alpha * heat.
cv::Mat overlay_heatmap(const cv::Mat& rgb, const torch::Tensor& cam, double alpha = 0.5);

/// A float32 tensor as an NPY v1.0 file ('<f4', C order, its shape).
std::string npy_bytes(const torch::Tensor& tensor);

/// Reliability diagram: per-bin accuracy bars against the diagonal, with ECE in the title.
cv::Mat reliability_image(const eval::Calibration& calibration, int size = 480);

/// Lines of (x, y) points with both axes in [0, 1] (e.g. accuracy against rejected share),
/// one colour per series, legend in the top-left corner.
struct LineSeries {
  std::string name;
  std::vector<std::pair<double, double>> points;
};
cv::Mat unit_line_chart(const std::vector<LineSeries>& series, const std::string& title,
                        const std::string& x_label, int size = 480);

/// Embedding map: points [N, 2] coloured by label, with a legend of class names (at most
/// 20 listed). PNG-ready image and SVG text.
cv::Mat embedding_image(const torch::Tensor& points, const std::vector<int64_t>& labels,
                        const std::vector<std::string>& class_names, int size = 640);
std::string embedding_svg(const torch::Tensor& points, const std::vector<int64_t>& labels,
                          const std::vector<std::string>& class_names, int size = 640);

/// Colour of class c (distinct hues), as RGB.
cv::Scalar class_colour(int64_t c, int64_t num_classes);

/// PNG-encodes an RGB image.
std::string png_bytes(const cv::Mat& rgb);
/// Standard base64 (RFC 4648) with padding.
std::string base64(const std::string& bytes);
/// Escapes &, <, >, " and ' for HTML/SVG text.
std::string html_escape(const std::string& text);

}  // namespace finch::explain
