#include "finch/explain/charts.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "finch/core/error.h"

namespace finch::explain {

cv::Mat overlay_heatmap(const cv::Mat& rgb, const torch::Tensor& cam, double alpha) {
  TORCH_CHECK(cam.dim() == 2 && rgb.type() == CV_8UC3, "overlay_heatmap: cam [h, w], RGB8 image");
  torch::Tensor c = cam.to(torch::kFloat).clamp(0, 1).contiguous();
  cv::Mat small(static_cast<int>(c.size(0)), static_cast<int>(c.size(1)), CV_32F,
                c.data_ptr<float>());
  cv::Mat up, gray, heat_bgr, heat;
  cv::resize(small, up, rgb.size(), 0, 0, cv::INTER_LINEAR);
  up.convertTo(gray, CV_8U, 255.0);
  cv::applyColorMap(gray, heat_bgr, cv::COLORMAP_JET);  // OpenCV colour maps are BGR
  cv::cvtColor(heat_bgr, heat, cv::COLOR_BGR2RGB);
  cv::Mat out;
  cv::addWeighted(rgb, 1 - alpha, heat, alpha, 0, out);
  return out;
}

std::string npy_bytes(const torch::Tensor& tensor) {
  torch::Tensor t = tensor.to(torch::kCPU, torch::kFloat).contiguous();
  // Python's tuple repr, as numpy writes it: (3,) for 1-D, (2, 3) otherwise.
  std::string shape = "(";
  for (int64_t i = 0; i < t.dim(); ++i) shape += (i ? ", " : "") + std::to_string(t.size(i));
  shape += t.dim() == 1 ? ",)" : ")";
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape + ", }";
  // Magic (6) + version (2) + header length (2) + header + '\n', padded to a multiple of 64.
  const size_t unpadded = 10 + header.size() + 1;
  header += std::string((64 - unpadded % 64) % 64, ' ') + "\n";
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>((header.size() >> 8) & 0xff);
  out += header;
  // float32 little-endian: the host order of every platform finch builds on.
  out.append(static_cast<const char*>(t.data_ptr()), t.numel() * sizeof(float));
  return out;
}

cv::Scalar class_colour(int64_t c, int64_t num_classes) {
  // Golden-angle hues so neighbouring class indices differ; two brightness levels.
  const double hue = std::fmod(c * 137.508, 360.0);
  cv::Mat hsv(1, 1, CV_8UC3, cv::Scalar(hue / 2, 200, (c % 2) ? 170 : 235)), rgb;
  cv::cvtColor(hsv, rgb, cv::COLOR_HSV2RGB);
  auto v = rgb.at<cv::Vec3b>(0, 0);
  (void)num_classes;
  return {static_cast<double>(v[0]), static_cast<double>(v[1]), static_cast<double>(v[2])};
}

namespace {

// A white square canvas with a unit plot area: [0, 1] on both axes, ticks every 0.25.
struct UnitPlot {
  int size, margin = 50, plot;
  cv::Mat img;
  explicit UnitPlot(int size_)
      : size(size_), plot(size_ - 2 * 50), img(size_, size_, CV_8UC3, cv::Scalar(255, 255, 255)) {}
  int px(double v) const { return margin + static_cast<int>(v * plot); }
  int py(double v) const { return size - margin - static_cast<int>(v * plot); }
  void frame(const std::string& title, const std::string& x_label) {
    const auto font = cv::FONT_HERSHEY_SIMPLEX;
    cv::rectangle(img, cv::Point(px(0), py(1)), cv::Point(px(1), py(0)), cv::Scalar(0, 0, 0), 1);
    for (int t = 0; t <= 4; ++t) {
      const double v = t / 4.0;
      cv::putText(img, fmt::format("{:.2f}", v), cv::Point(px(v) - 14, size - margin + 18), font,
                  0.4, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
      cv::putText(img, fmt::format("{:.2f}", v), cv::Point(8, py(v) + 4), font, 0.4,
                  cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    }
    cv::putText(img, title, cv::Point(margin, 30), font, 0.45, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
    cv::putText(img, x_label, cv::Point(size / 2 - 4 * static_cast<int>(x_label.size()), size - 12),
                font, 0.45, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
};

}  // namespace

cv::Mat reliability_image(const eval::Calibration& calibration, int size) {
  UnitPlot p(size);
  for (const auto& b : calibration.bins) {
    if (b.count == 0) continue;
    cv::rectangle(p.img, cv::Point(p.px(b.lower) + 1, p.py(b.accuracy)),
                  cv::Point(p.px(b.upper) - 1, p.py(0)), cv::Scalar(70, 120, 200), cv::FILLED);
    // The gap to the bin's mean confidence, in red.
    cv::line(p.img, cv::Point(p.px(b.lower) + 1, p.py(b.confidence)),
             cv::Point(p.px(b.upper) - 1, p.py(b.confidence)), cv::Scalar(220, 40, 40), 2);
  }
  cv::line(p.img, cv::Point(p.px(0), p.py(0)), cv::Point(p.px(1), p.py(1)),
           cv::Scalar(120, 120, 120), 1, cv::LINE_AA);
  p.frame(fmt::format("reliability (ECE {:.4f}); bars: accuracy, red: confidence", calibration.ece),
          "confidence");
  return p.img;
}

cv::Mat unit_line_chart(const std::vector<LineSeries>& series, const std::string& title,
                        const std::string& x_label, int size) {
  UnitPlot p(size);
  const auto font = cv::FONT_HERSHEY_SIMPLEX;
  const auto n = static_cast<int64_t>(series.size());
  for (int64_t s = 0; s < n; ++s) {
    const cv::Scalar colour = class_colour(s, n);
    const auto& pts = series[s].points;
    for (size_t i = 1; i < pts.size(); ++i)
      cv::line(p.img, cv::Point(p.px(pts[i - 1].first), p.py(pts[i - 1].second)),
               cv::Point(p.px(pts[i].first), p.py(pts[i].second)), colour, 2, cv::LINE_AA);
    const int y = p.margin + 18 + 16 * static_cast<int>(s);
    cv::line(p.img, cv::Point(p.px(0) + 10, y - 4), cv::Point(p.px(0) + 30, y - 4), colour, 2);
    cv::putText(p.img, series[s].name, cv::Point(p.px(0) + 36, y), font, 0.4, cv::Scalar(0, 0, 0),
                1, cv::LINE_AA);
  }
  p.frame(title, x_label);
  return p.img;
}

namespace {

// Points scaled into [margin, size - margin] on both axes (same scale, centred).
std::vector<cv::Point2d> to_canvas(const torch::Tensor& points, int size, int margin) {
  torch::Tensor p = points.to(torch::kFloat64).contiguous();
  std::vector<cv::Point2d> out;
  if (p.size(0) == 0) return out;
  auto lo = std::get<0>(p.min(0)), hi = std::get<0>(p.max(0));
  const double span = std::max({(hi - lo).max().item<double>(), 1e-12});
  auto a = p.accessor<double, 2>();
  const double cx = (lo[0].item<double>() + hi[0].item<double>()) / 2;
  const double cy = (lo[1].item<double>() + hi[1].item<double>()) / 2;
  const double s = (size - 2.0 * margin) / span;
  for (int64_t i = 0; i < p.size(0); ++i)
    out.emplace_back(size / 2.0 + (a[i][0] - cx) * s, size / 2.0 - (a[i][1] - cy) * s);
  return out;
}

constexpr int kLegendMax = 20;

}  // namespace

cv::Mat embedding_image(const torch::Tensor& points, const std::vector<int64_t>& labels,
                        const std::vector<std::string>& class_names, int size) {
  const int legend = 200;
  cv::Mat img(size, size + legend, CV_8UC3, cv::Scalar(255, 255, 255));
  const auto pts = to_canvas(points, size, 20);
  const auto n = static_cast<int64_t>(class_names.size());
  for (size_t i = 0; i < pts.size(); ++i)
    cv::circle(img, pts[i], 3, class_colour(labels.at(i), n), cv::FILLED, cv::LINE_AA);
  for (int64_t c = 0; c < std::min<int64_t>(n, kLegendMax); ++c) {
    const int y = 24 + 18 * static_cast<int>(c);
    cv::circle(img, cv::Point(size + 12, y - 4), 5, class_colour(c, n), cv::FILLED, cv::LINE_AA);
    cv::putText(img, class_names[c].substr(0, 24), cv::Point(size + 22, y),
                cv::FONT_HERSHEY_SIMPLEX, 0.4, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  }
  if (n > kLegendMax)
    cv::putText(img, fmt::format("... {} classes", n), cv::Point(size + 12, 24 + 18 * kLegendMax),
                cv::FONT_HERSHEY_SIMPLEX, 0.4, cv::Scalar(0, 0, 0), 1, cv::LINE_AA);
  return img;
}

std::string embedding_svg(const torch::Tensor& points, const std::vector<int64_t>& labels,
                          const std::vector<std::string>& class_names, int size) {
  const int legend = 220;
  const auto pts = to_canvas(points, size, 20);
  const auto n = static_cast<int64_t>(class_names.size());
  auto hex = [&](int64_t c) {
    auto s = class_colour(c, n);
    return fmt::format("#{:02x}{:02x}{:02x}", static_cast<int>(s[0]), static_cast<int>(s[1]),
                       static_cast<int>(s[2]));
  };
  std::string svg = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} "
      "{1}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" "
      "fill=\"white\"/>\n",
      size + legend, size);
  for (size_t i = 0; i < pts.size(); ++i) {
    const int64_t c = labels.at(i);
    svg += fmt::format(
        "<circle cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3\" fill=\"{}\"><title>{}</title></circle>\n",
        pts[i].x, pts[i].y, hex(c), html_escape(class_names.at(c)));
  }
  for (int64_t c = 0; c < std::min<int64_t>(n, kLegendMax); ++c) {
    const int y = 24 + 16 * static_cast<int>(c);
    svg += fmt::format(
        "<circle cx=\"{}\" cy=\"{}\" r=\"5\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>\n",
        size + 12, y - 4, hex(c), size + 22, y, html_escape(class_names[c]));
  }
  if (n > kLegendMax)
    svg += fmt::format("<text x=\"{}\" y=\"{}\">... {} classes (hover a point)</text>\n", size + 12,
                       24 + 16 * kLegendMax, n);
  return svg + "</svg>\n";
}

std::string png_bytes(const cv::Mat& rgb) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<uchar> buffer;
  if (!cv::imencode(".png", bgr, buffer)) throw Error("could not encode a PNG image");
  return std::string(buffer.begin(), buffer.end());
}

std::string base64(const std::string& bytes) {
  static const char* kTable = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v =
        (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    out += kTable[v >> 18];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += kTable[v & 63];
  }
  if (i + 1 == bytes.size()) {
    const uint32_t v = uint8_t(bytes[i]) << 16;
    out += kTable[v >> 18];
    out += kTable[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == bytes.size()) {
    const uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8);
    out += kTable[v >> 18];
    out += kTable[(v >> 12) & 63];
    out += kTable[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char ch : text) {
    switch (ch) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += ch;
    }
  }
  return out;
}

}  // namespace finch::explain
