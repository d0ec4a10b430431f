// Transforms reproduce torchvision 0.14's semantics (parameter sampling, rounding, padding)
// on OpenCV images, so recipes written for torchvision mean the same thing here. The
// parity tests in tests/unit/data compare them with torchvision on the same image.
//
// type                 parameters (defaults)                         torchvision equivalent
// resize               size: int (shorter side) | [h, w];            Resize (tensor path,
//                      interpolation: bilinear|nearest|area|bicubic   antialias=False;
//                      antialias: false (true: PIL's bilinear,        with antialias: true,
//                      bit-exact; what torchvision does on PIL images) Resize on PIL images)
// center_crop          size: int | [h, w]                            CenterCrop
// random_resized_crop  size; scale: [0.08, 1]; ratio: [3/4, 4/3];    RandomResizedCrop
//                      interpolation: bilinear
// hflip                p: 0.5                                        RandomHorizontalFlip
// rotation             degrees: d | [lo, hi]; fill: 0 | [r, g, b];   RandomRotation
//                      interpolation: nearest
// scale                range: [0.9, 1.1]; fill: 0; interpolation     (zoom about the centre)
// color_jitter         brightness, contrast, saturation: f | [lo, hi];  ColorJitter
//                      hue: f | [lo, hi] within [-0.5, 0.5]
// pad_crop             padding: 4 | [lr, tb] | [l, t, r, b];         RandomCrop(size, padding)
//                      size: input size; fill: 0
// random_erasing       p: 0.5; scale: [0.02, 0.33]; ratio: [0.3, 3.3];  RandomErasing (after
//                      value: 0 | [r, g, b] | random                     normalisation)
#include "finch/data/transforms.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <set>

#include "finch/core/error.h"
#include "finch/core/registry.h"

namespace finch::data {

namespace {

using Size2 = std::pair<int, int>;  // (height, width)
using Range = std::pair<double, double>;

// Python's round(): half to even (std::nearbyint in the default rounding mode).
int round_half_even(double x) { return static_cast<int>(std::nearbyint(x)); }

// The parameters of one `{type: NAME, ...}` entry. Every getter marks its key as used;
// finish() rejects the keys nobody asked for, so a typo never passes silently.
class Params {
 public:
  Params(const YAML::Node& node, std::string type) : node_(node), type_(std::move(type)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error("transform '" + type_ + "': '" + key + "' " + what);
  }

  bool has(const std::string& key) {
    used_.insert(key);
    return static_cast<bool>(node_[key]);
  }

  template <typename T>
  T scalar(const YAML::Node& n, const std::string& key, const char* what) const {
    if (!n.IsScalar()) fail(key, std::string("must be ") + what);
    try {
      return n.as<T>();
    } catch (const YAML::Exception&) {
      fail(key, std::string("must be ") + what + ", got '" + n.Scalar() + "'");
    }
  }

  double number(const std::string& key, double fallback, double lo = -HUGE_VAL,
                double hi = HUGE_VAL) {
    if (!has(key)) return fallback;
    double v = scalar<double>(node_[key], key, "a number");
    if (!(v >= lo && v <= hi))
      fail(key, "must be in [" + show(lo) + ", " + show(hi) + "], got " + show(v));
    return v;
  }

  bool flag(const std::string& key, bool fallback) {
    if (!has(key)) return fallback;
    return scalar<bool>(node_[key], key, "true or false");
  }

  double probability(const std::string& key, double fallback) {
    return number(key, fallback, 0, 1);
  }

  // A positive int (square, or shorter side where the op says so) or [height, width].
  std::optional<Size2> size(const std::string& key, bool required) {
    if (!has(key)) {
      if (required) fail(key, "is required");
      return std::nullopt;
    }
    const YAML::Node n = node_[key];
    Size2 s;
    if (n.IsSequence()) {
      if (n.size() != 2) fail(key, "must be an integer or [height, width]");
      s = {scalar<int>(n[0], key, "an integer or [height, width]"),
           scalar<int>(n[1], key, "an integer or [height, width]")};
    } else {
      int v = scalar<int>(n, key, "an integer or [height, width]");
      s = {v, v};
    }
    if (s.first <= 0 || s.second <= 0) fail(key, "must be positive");
    return s;
  }
  bool size_is_int(const std::string& key) const { return node_[key] && node_[key].IsScalar(); }

  // [lo, hi] with lo <= hi, both within [min, max].
  Range range(const std::string& key, Range fallback, double min = -HUGE_VAL,
              double max = HUGE_VAL) {
    if (!has(key)) return fallback;
    const YAML::Node n = node_[key];
    if (!n.IsSequence() || n.size() != 2) fail(key, "must be a list [min, max]");
    Range r{scalar<double>(n[0], key, "a list of two numbers"),
            scalar<double>(n[1], key, "a list of two numbers")};
    if (!(r.first <= r.second && r.first >= min && r.second <= max))
      fail(key, "must satisfy " + show(min) + " <= min <= max <= " + show(max));
    return r;
  }

  // One number for all channels or [r, g, b].
  std::vector<double> per_channel(const std::string& key, double fallback) {
    if (!has(key)) return {fallback, fallback, fallback};
    const YAML::Node n = node_[key];
    if (n.IsSequence()) {
      if (n.size() != 3) fail(key, "must be a number or a list of 3 (R, G, B)");
      return {scalar<double>(n[0], key, "a number"), scalar<double>(n[1], key, "a number"),
              scalar<double>(n[2], key, "a number")};
    }
    double v = scalar<double>(n, key, "a number or a list of 3 (R, G, B)");
    return {v, v, v};
  }

  std::string choice(const std::string& key, const std::vector<std::string>& allowed) {
    if (!has(key)) return allowed.front();
    std::string v = scalar<std::string>(node_[key], key, "a string");
    if (std::find(allowed.begin(), allowed.end(), v) == allowed.end()) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(key, "must be one of " + list + ", got '" + v + "'");
    }
    return v;
  }

  const YAML::Node& node() const { return node_; }
  const std::string& type() const { return type_; }

  void finish() const {
    for (const auto& entry : node_) {
      std::string key = entry.first.as<std::string>();
      if (key != "type" && !used_.count(key))
        throw Error("transform '" + type_ + "': unknown parameter '" + key + "'");
    }
  }

 private:
  static std::string show(double v) {
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    std::string s = std::to_string(v);
    s.erase(s.find_last_not_of('0') + 1);
    if (s.back() == '.') s.pop_back();
    return s;
  }
  const YAML::Node node_;  // const: lookups must not insert keys into the user's config
  std::string type_;
  std::set<std::string> used_;
};

int interpolation_flag(Params& p) {
  static const std::map<std::string, int> kModes = {{"bilinear", cv::INTER_LINEAR},
                                                    {"nearest", cv::INTER_NEAREST},
                                                    {"area", cv::INTER_AREA},
                                                    {"bicubic", cv::INTER_CUBIC}};
  return kModes.at(p.choice("interpolation", {"bilinear", "nearest", "area", "bicubic"}));
}

cv::Scalar fill_scalar(Params& p) {
  std::vector<double> f = p.per_channel("fill", 0.0);
  for (double v : f)
    if (v < 0 || v > 255) p.fail("fill", "must be in [0, 255]");
  return cv::Scalar(f[0], f[1], f[2]);
}

// The region [top, top+h) x [left, left+w) of `img`, with `fill` where it lies outside:
// torchvision's pad-then-crop in one step.
cv::Mat crop_or_pad(const cv::Mat& img, int top, int left, int h, int w,
                    const cv::Scalar& fill = cv::Scalar::all(0)) {
  cv::Rect want(left, top, w, h);
  cv::Rect inside = want & cv::Rect(0, 0, img.cols, img.rows);
  if (inside == want) return img(want).clone();
  cv::Mat out(h, w, img.type(), fill);
  if (inside.area() > 0) img(inside).copyTo(out(inside - want.tl()));
  return out;
}

// Resized copy of `img` (a copy even when the size already matches and `img` is a view).
cv::Mat resize_to(const cv::Mat& img, Size2 size, int interpolation) {
  if (img.rows == size.first && img.cols == size.second)
    return img.isSubmatrix() ? img.clone() : img;
  cv::Mat out;
  cv::resize(img, out, cv::Size(size.second, size.first), 0, 0, interpolation);
  return out;
}

// PIL's antialiased bilinear resampling (Image.resize(..., BILINEAR), which torchvision's
// Resize uses on PIL images): a triangle filter widened by the downscale factor, 8-bit fixed
// point coefficients, horizontal pass then vertical, each rounded to uint8 -- so the result
// is bit-identical to PIL's.
struct PilCoefficients {
  std::vector<int> first, count;  // per output pixel: first input pixel and tap count
  std::vector<int32_t> weights;   // taps x out, fixed point with kPrecisionBits
  int taps = 0;
};
constexpr int kPrecisionBits = 32 - 8 - 2;

PilCoefficients pil_bilinear_coefficients(int in_size, int out_size) {
  const double scale = static_cast<double>(in_size) / out_size;
  const double filter_scale = std::max(scale, 1.0);
  const double support = 1.0 * filter_scale;  // the triangle filter's support is 1
  PilCoefficients c;
  c.taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.first.resize(out_size);
  c.count.resize(out_size);
  c.weights.assign(static_cast<size_t>(out_size) * c.taps, 0);
  std::vector<double> k(c.taps);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = (xx + 0.5) * scale;
    const int xmin = std::max(static_cast<int>(center - support + 0.5), 0);
    const int xmax = std::min(static_cast<int>(center + support + 0.5), in_size) - xmin;
    double total = 0;
    for (int x = 0; x < xmax; ++x) {
      const double t = std::abs((x + xmin - center + 0.5) / filter_scale);
      k[x] = t < 1.0 ? 1.0 - t : 0.0;
      total += k[x];
    }
    for (int x = 0; x < xmax; ++x) {
      const double w = total != 0 ? k[x] / total : 0.0;
      // PIL rounds half away from zero when converting to fixed point.
      c.weights[static_cast<size_t>(xx) * c.taps + x] = static_cast<int32_t>(
          w < 0 ? -0.5 + w * (1 << kPrecisionBits) : 0.5 + w * (1 << kPrecisionBits));
    }
    c.first[xx] = xmin;
    c.count[xx] = xmax;
  }
  return c;
}

uint8_t clip_fixed(int64_t v) {
  v >>= kPrecisionBits;
  return static_cast<uint8_t>(std::clamp<int64_t>(v, 0, 255));
}

cv::Mat pil_resize_bilinear(const cv::Mat& rgb, int out_h, int out_w) {
  const int channels = rgb.channels();
  cv::Mat horizontal(rgb.rows, out_w, rgb.type());
  if (out_w == rgb.cols) {
    rgb.copyTo(horizontal);
  } else {
    const PilCoefficients c = pil_bilinear_coefficients(rgb.cols, out_w);
    for (int y = 0; y < rgb.rows; ++y) {
      const uint8_t* in = rgb.ptr<uint8_t>(y);
      uint8_t* out = horizontal.ptr<uint8_t>(y);
      for (int xx = 0; xx < out_w; ++xx) {
        const int32_t* w = &c.weights[static_cast<size_t>(xx) * c.taps];
        for (int ch = 0; ch < channels; ++ch) {
          int64_t acc = int64_t{1} << (kPrecisionBits - 1);
          for (int x = 0; x < c.count[xx]; ++x)
            acc += static_cast<int64_t>(in[(c.first[xx] + x) * channels + ch]) * w[x];
          out[xx * channels + ch] = clip_fixed(acc);
        }
      }
    }
  }
  if (out_h == rgb.rows) return horizontal;
  cv::Mat result(out_h, out_w, rgb.type());
  const PilCoefficients c = pil_bilinear_coefficients(rgb.rows, out_h);
  const int row_len = out_w * channels;
  std::vector<int64_t> acc(row_len);
  for (int yy = 0; yy < out_h; ++yy) {
    std::fill(acc.begin(), acc.end(), int64_t{1} << (kPrecisionBits - 1));
    const int32_t* w = &c.weights[static_cast<size_t>(yy) * c.taps];
    for (int y = 0; y < c.count[yy]; ++y) {
      const uint8_t* in = horizontal.ptr<uint8_t>(c.first[yy] + y);
      for (int i = 0; i < row_len; ++i) acc[i] += static_cast<int64_t>(in[i]) * w[y];
    }
    uint8_t* out = result.ptr<uint8_t>(yy);
    for (int i = 0; i < row_len; ++i) out[i] = clip_fixed(acc[i]);
  }
  return result;
}

// --- image ops -----------------------------------------------------------------------------

// torchvision Resize: an int is the shorter side (the longer one is int(size * long / short)),
// [h, w] is exact. Like torchvision on tensors, no antialiasing (cv::resize bilinear with
// half-pixel centres equals interpolate(align_corners=False, antialias=False)).
class Resize final : public ImageTransform {
 public:
  explicit Resize(Params& p)
      : shorter_side_(p.size_is_int("size")),
        size_(*p.size("size", true)),
        interpolation_(interpolation_flag(p)),
        antialias_(p.flag("antialias", false)) {
    if (antialias_ && interpolation_ != cv::INTER_LINEAR)
      p.fail("antialias", "is implemented for interpolation: bilinear only");
  }
  cv::Mat apply(const cv::Mat& rgb, Rng&) const override {
    Size2 out = size_;
    if (shorter_side_) {
      int s = size_.first;
      if (rgb.cols <= rgb.rows)
        out = {static_cast<int>(static_cast<double>(s) * rgb.rows / rgb.cols), s};
      else
        out = {s, static_cast<int>(static_cast<double>(s) * rgb.cols / rgb.rows)};
    }
    if (antialias_) return pil_resize_bilinear(rgb, out.first, out.second);
    return resize_to(rgb, out, interpolation_);
  }

 private:
  bool shorter_side_;
  Size2 size_;
  int interpolation_;
  bool antialias_;
};

// torchvision CenterCrop: pads with zeros ((d // 2) before, the rest after) when the image is
// smaller, and places the crop at round((H - h) / 2) with Python's half-to-even rounding.
class CenterCrop final : public ImageTransform {
 public:
  explicit CenterCrop(Params& p) : size_(*p.size("size", true)) {}
  cv::Mat apply(const cv::Mat& rgb, Rng&) const override {
    auto start = [](int image, int crop) {
      return crop > image ? -((crop - image) / 2) : round_half_even((image - crop) / 2.0);
    };
    return crop_or_pad(rgb, start(rgb.rows, size_.first), start(rgb.cols, size_.second),
                       size_.first, size_.second);
  }

 private:
  Size2 size_;
};

// torchvision RandomResizedCrop.get_params: 10 tries of (area fraction, log-uniform aspect
// ratio), then a centre crop clamped to the ratio range; the crop is resized to `size`.
class RandomResizedCrop final : public ImageTransform {
 public:
  explicit RandomResizedCrop(Params& p)
      : size_(*p.size("size", true)),
        scale_(p.range("scale", {0.08, 1.0}, 0.0, 1.0)),
        ratio_(p.range("ratio", {3.0 / 4.0, 4.0 / 3.0}, 1e-6)),
        interpolation_(interpolation_flag(p)) {
    if (scale_.second <= 0) p.fail("scale", "must allow a positive area");
  }
  cv::Mat apply(const cv::Mat& rgb, Rng& rng) const override {
    const int height = rgb.rows, width = rgb.cols;
    const double area = static_cast<double>(height) * width;
    const Range log_ratio{std::log(ratio_.first), std::log(ratio_.second)};
    for (int attempt = 0; attempt < 10; ++attempt) {
      double target_area = area * rng.uniform(scale_.first, scale_.second);
      double aspect = std::exp(rng.uniform(log_ratio.first, log_ratio.second));
      int w = round_half_even(std::sqrt(target_area * aspect));
      int h = round_half_even(std::sqrt(target_area / aspect));
      if (w > 0 && w <= width && h > 0 && h <= height) {
        int top = static_cast<int>(rng.below(height - h + 1));
        int left = static_cast<int>(rng.below(width - w + 1));
        return resize_to(rgb(cv::Rect(left, top, w, h)), size_, interpolation_);
      }
    }
    double in_ratio = static_cast<double>(width) / height;
    int w = width, h = height;
    if (in_ratio < ratio_.first) {
      h = round_half_even(w / ratio_.first);
    } else if (in_ratio > ratio_.second) {
      w = round_half_even(h * ratio_.second);
    }
    cv::Rect crop((width - w) / 2, (height - h) / 2, w, h);
    return resize_to(rgb(crop), size_, interpolation_);
  }

 private:
  Size2 size_;
  Range scale_, ratio_;
  int interpolation_;
};

class HFlip final : public ImageTransform {
 public:
  explicit HFlip(Params& p) : p_(p.probability("p", 0.5)) {}
  cv::Mat apply(const cv::Mat& rgb, Rng& rng) const override {
    if (!(rng.uniform() < p_)) return rgb;
    cv::Mat out;
    cv::flip(rgb, out, 1);
    return out;
  }

 private:
  double p_;
};

// Rotation about the image centre, counter-clockwise for positive angles (torchvision
// RandomRotation, expand=False); the corners are filled. Default interpolation is nearest,
// as in torchvision.
class Rotation final : public ImageTransform {
 public:
  explicit Rotation(Params& p) : fill_(fill_scalar(p)) {
    if (!p.has("degrees")) p.fail("degrees", "is required");
    if (p.node()["degrees"].IsScalar()) {
      double d = p.number("degrees", 0, 0);
      degrees_ = {-d, d};
    } else {
      degrees_ = p.range("degrees", {0, 0});
    }
    interpolation_ = p.has("interpolation") ? interpolation_flag(p) : cv::INTER_NEAREST;
  }
  cv::Mat apply(const cv::Mat& rgb, Rng& rng) const override {
    double angle = rng.uniform(degrees_.first, degrees_.second);
    cv::Point2f centre((rgb.cols - 1) * 0.5f, (rgb.rows - 1) * 0.5f);
    cv::Mat out;
    cv::warpAffine(rgb, out, cv::getRotationMatrix2D(centre, angle, 1.0), rgb.size(),
                   interpolation_, cv::BORDER_CONSTANT, fill_);
    return out;
  }

 private:
  cv::Scalar fill_;
  Range degrees_;
  int interpolation_;
};

// Random isotropic zoom about the centre by a factor in `range`, keeping the image size
// (zooming out fills the border).
class Scale final : public ImageTransform {
 public:
  explicit Scale(Params& p)
      : range_(p.range("range", {0.9, 1.1}, 1e-3)),
        fill_(fill_scalar(p)),
        interpolation_(interpolation_flag(p)) {}
  cv::Mat apply(const cv::Mat& rgb, Rng& rng) const override {
    double factor = rng.uniform(range_.first, range_.second);
    cv::Point2f centre((rgb.cols - 1) * 0.5f, (rgb.rows - 1) * 0.5f);
    cv::Mat out;
    cv::warpAffine(rgb, out, cv::getRotationMatrix2D(centre, 0.0, factor), rgb.size(),
                   interpolation_, cv::BORDER_CONSTANT, fill_);
    return out;
  }

 private:
  Range range_;
  cv::Scalar fill_;
  int interpolation_;
};

// torchvision ColorJitter on uint8 images: factors drawn after a random order of the four
// adjustments; each adjustment blends in float32 and truncates back to uint8 as
// torchvision's tensor kernels do (_blend, rgb_to_grayscale, _rgb2hsv/_hsv2rgb).
class ColorJitter final : public ImageTransform {
 public:
  explicit ColorJitter(Params& p)
      : brightness_(factor_range(p, "brightness")),
        contrast_(factor_range(p, "contrast")),
        saturation_(factor_range(p, "saturation")),
        hue_(hue_range(p)) {}

  cv::Mat apply(const cv::Mat& rgb, Rng& rng) const override {
    int order[4] = {0, 1, 2, 3};
    for (int i = 3; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    auto draw = [&](const std::optional<Range>& r) {
      return r ? std::optional<double>(rng.uniform(r->first, r->second)) : std::nullopt;
    };
    std::optional<double> b = draw(brightness_), c = draw(contrast_), s = draw(saturation_),
                          h = draw(hue_);
    cv::Mat out = rgb.clone();
    for (int op : order) {
      if (op == 0 && b) blend(out, *b, [](const uint8_t*) { return 0.f; });
      if (op == 1 && c) {
        double sum = 0;
        for (int y = 0; y < out.rows; ++y)
          for (int x = 0; x < out.cols; ++x) sum += gray(out.ptr<uint8_t>(y) + 3 * x);
        float mean = static_cast<float>(sum / (static_cast<double>(out.rows) * out.cols));
        blend(out, *c, [mean](const uint8_t*) { return mean; });
      }
      if (op == 2 && s) blend(out, *s, [](const uint8_t* px) { return float(gray(px)); });
      if (op == 3 && h) shift_hue(out, static_cast<float>(*h));
    }
    return out;
  }

 private:
  static std::optional<Range> factor_range(Params& p, const std::string& key) {
    if (!p.has(key)) return std::nullopt;
    Range r;
    if (p.node()[key].IsScalar()) {
      double v = p.number(key, 0, 0);
      r = {std::max(0.0, 1 - v), 1 + v};
    } else {
      r = p.range(key, {1, 1}, 0);
    }
    return r == Range{1, 1} ? std::nullopt : std::optional<Range>(r);
  }
  static std::optional<Range> hue_range(Params& p) {
    if (!p.has("hue")) return std::nullopt;
    Range r;
    if (p.node()["hue"].IsScalar()) {
      double v = p.number("hue", 0, 0, 0.5);
      r = {-v, v};
    } else {
      r = p.range("hue", {0, 0}, -0.5, 0.5);
    }
    return r == Range{0, 0} ? std::nullopt : std::optional<Range>(r);
  }
  // torchvision rgb_to_grayscale on uint8: float32 weights, truncated to uint8.
  static uint8_t gray(const uint8_t* px) {
    return static_cast<uint8_t>(0.2989f * px[0] + 0.587f * px[1] + 0.114f * px[2]);
  }
  template <typename Other>
  static void blend(cv::Mat& img, double ratio, Other other) {
    const float r = static_cast<float>(ratio), q = static_cast<float>(1.0 - ratio);
    for (int y = 0; y < img.rows; ++y) {
      uint8_t* px = img.ptr<uint8_t>(y);
      for (int x = 0; x < img.cols; ++x, px += 3) {
        float o = q * other(px);
        for (int c = 0; c < 3; ++c)
          px[c] = static_cast<uint8_t>(std::clamp(r * px[c] + o, 0.f, 255.f));
      }
    }
  }
  static void shift_hue(cv::Mat& img, float shift) {
    for (int y = 0; y < img.rows; ++y) {
      uint8_t* px = img.ptr<uint8_t>(y);
      for (int x = 0; x < img.cols; ++x, px += 3) {
        float r = px[0] / 255.f, g = px[1] / 255.f, b = px[2] / 255.f;
        float maxc = std::max({r, g, b}), minc = std::min({r, g, b});
        bool eqc = maxc == minc;
        float cr = maxc - minc;
        float s = cr / (eqc ? 1.f : maxc);
        float div = eqc ? 1.f : cr;
        float rc = (maxc - r) / div, gc = (maxc - g) / div, bc = (maxc - b) / div;
        float h = maxc == r ? bc - gc : maxc == g ? 2.f + rc - bc : 4.f + gc - rc;
        h = std::fmod(h / 6.f + 1.f, 1.f);
        h += shift;
        h -= std::floor(h);  // Python's % 1.0
        float v = maxc;
        float i = std::floor(h * 6.f), f = h * 6.f - i;
        float p = std::clamp(v * (1.f - s), 0.f, 1.f);
        float q = std::clamp(v * (1.f - s * f), 0.f, 1.f);
        float t = std::clamp(v * (1.f - s * (1.f - f)), 0.f, 1.f);
        float out[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
        int sector = ((static_cast<int>(i) % 6) + 6) % 6;
        for (int c = 0; c < 3; ++c) px[c] = static_cast<uint8_t>(out[sector][c] * 255.f);
      }
    }
  }
  std::optional<Range> brightness_, contrast_, saturation_, hue_;
};

// torchvision RandomCrop(size, padding, fill): pad every side, then crop `size` (default:
// the size before padding) at a uniformly random position. A padded image still smaller
// than `size` is padded further on the right/bottom (pad_if_needed).
class PadCrop final : public ImageTransform {
 public:
  explicit PadCrop(Params& p) : size_(p.size("size", false)), fill_(fill_scalar(p)) {
    if (p.has("padding")) {
      const YAML::Node n = p.node()["padding"];
      std::vector<int> v;
      if (n.IsSequence())
        for (const auto& e : n) v.push_back(p.scalar<int>(e, "padding", "an integer or a list"));
      else
        v.push_back(p.scalar<int>(n, "padding", "an integer or a list"));
      if (v.size() == 1) v = {v[0], v[0], v[0], v[0]};
      if (v.size() == 2) v = {v[0], v[1], v[0], v[1]};
      if (v.size() != 4)
        p.fail("padding",
               "must be an integer, [left/right, top/bottom] or "
               "[left, top, right, bottom]");
      if (*std::min_element(v.begin(), v.end()) < 0) p.fail("padding", "must not be negative");
      std::copy(v.begin(), v.end(), ltrb_);
    }
  }
  cv::Mat apply(const cv::Mat& rgb, Rng& rng) const override {
    int h = size_ ? size_->first : rgb.rows, w = size_ ? size_->second : rgb.cols;
    int padded_h = std::max(rgb.rows + ltrb_[1] + ltrb_[3], h);
    int padded_w = std::max(rgb.cols + ltrb_[0] + ltrb_[2], w);
    int top = 0, left = 0;
    if (padded_h != h || padded_w != w) {
      top = static_cast<int>(rng.below(padded_h - h + 1));
      left = static_cast<int>(rng.below(padded_w - w + 1));
    }
    return crop_or_pad(rgb, top - ltrb_[1], left - ltrb_[0], h, w, fill_);
  }

 private:
  std::optional<Size2> size_;
  cv::Scalar fill_;
  int ltrb_[4] = {4, 4, 4, 4};
};

// --- tensor ops ------------------------------------------------------------------------------

// torchvision RandomErasing on the normalised tensor: with probability p, up to 10 tries of
// (area fraction, log-uniform aspect ratio) for a rectangle strictly inside the image, filled
// with `value` (a number, [r, g, b], or "random" for standard-normal noise).
class RandomErasing final : public TensorTransform {
 public:
  explicit RandomErasing(Params& p)
      : p_(p.probability("p", 0.5)),
        scale_(p.range("scale", {0.02, 0.33}, 0.0, 1.0)),
        ratio_(p.range("ratio", {0.3, 3.3}, 1e-6)) {
    if (p.has("value") && p.node()["value"].IsScalar() && p.node()["value"].Scalar() == "random") {
      random_ = true;
    } else {
      value_ = p.per_channel("value", 0.0);
    }
  }
  void apply(torch::Tensor& chw, Rng& rng) const override {
    TORCH_CHECK(chw.dim() == 3, "random_erasing expects a CxHxW tensor, got ", chw.sizes());
    if (!(rng.uniform() < p_)) return;
    const int64_t channels = chw.size(0), height = chw.size(1), width = chw.size(2);
    const double area = static_cast<double>(height) * width;
    const Range log_ratio{std::log(ratio_.first), std::log(ratio_.second)};
    for (int attempt = 0; attempt < 10; ++attempt) {
      double erase_area = area * rng.uniform(scale_.first, scale_.second);
      double aspect = std::exp(rng.uniform(log_ratio.first, log_ratio.second));
      int64_t h = round_half_even(std::sqrt(erase_area * aspect));
      int64_t w = round_half_even(std::sqrt(erase_area / aspect));
      if (!(h < height && w < width)) continue;
      torch::Tensor fill;
      if (random_) {
        fill = torch::empty({channels, h, w}, torch::kFloat32);
        float* data = fill.data_ptr<float>();
        for (int64_t k = 0; k < fill.numel(); ++k) data[k] = static_cast<float>(normal(rng));
      } else {
        TORCH_CHECK(channels == 3, "random_erasing with a per-channel value expects 3 channels");
        fill = torch::tensor(std::vector<float>(value_.begin(), value_.end())).view({3, 1, 1});
      }
      int64_t top = static_cast<int64_t>(rng.below(height - h + 1));
      int64_t left = static_cast<int64_t>(rng.below(width - w + 1));
      chw.narrow(1, top, h).narrow(2, left, w).copy_(fill);
      return;
    }
  }

 private:
  static double normal(Rng& rng) {  // Box-Muller
    double u1 = 1.0 - rng.uniform(), u2 = rng.uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  }
  double p_;
  Range scale_, ratio_;
  bool random_ = false;
  std::vector<double> value_;
};

struct OpFactory {
  std::function<std::shared_ptr<const ImageTransform>(Params&)> image;
  std::function<std::shared_ptr<const TensorTransform>(Params&)> tensor;
};

template <typename T>
OpFactory image_op() {
  return {[](Params& p) { return std::make_shared<const T>(p); }, nullptr};
}

// The transform registry (core/registry.h); options are the keys of each list entry.
Registry<OpFactory>& factories() {
  static Registry<OpFactory> registry("transforms", "transform", "data.*_transforms[].type");
  static const bool filled = [] {
    auto& r = registry;
    r.add({"resize",
           "torchvision Resize: size N (shorter side) or [h, w]; interpolation, antialias",
           image_op<Resize>()});
    r.add({"center_crop", "torchvision CenterCrop: size N or [h, w]", image_op<CenterCrop>()});
    r.add({"random_resized_crop",
           "torchvision RandomResizedCrop: size; scale [0.08, 1], ratio [3/4, 4/3], interpolation",
           image_op<RandomResizedCrop>()});
    r.add({"hflip", "torchvision RandomHorizontalFlip: p 0.5", image_op<HFlip>()});
    r.add({"rotation",
           "torchvision RandomRotation: degrees D or [min, max], interpolation (nearest), fill",
           image_op<Rotation>()});
    r.add({"scale", "random zoom about the centre by a factor in range [0.9, 1.1], same size",
           image_op<Scale>()});
    r.add({"color_jitter",
           "torchvision ColorJitter: brightness, contrast, saturation, hue (random order)",
           image_op<ColorJitter>()});
    r.add({"pad_crop", "torchvision RandomCrop with padding: padding, size, fill",
           image_op<PadCrop>()});
    r.add({"random_erasing",
           "torchvision RandomErasing on the normalised tensor (after the image transforms): p, "
           "scale, ratio, value",
           {nullptr, [](Params& p) { return std::make_shared<const RandomErasing>(p); }}});
    return true;
  }();
  (void)filled;
  return registry;
}
// Built at load time, so `finch list`, `--help` and the config schema see every entry.
[[maybe_unused]] const bool kTransformsRegistered = (factories(), true);

void check_mean_std(const std::vector<float>& mean, const std::vector<float>& std) {
  if (mean.size() != 3 || std.size() != 3)
    throw Error("normalisation needs 3 mean and 3 std values (R, G, B)");
  for (float s : std)
    if (!(s > 0)) throw Error("normalisation std values must be positive");
}

}  // namespace

Pipeline::Pipeline(std::vector<std::shared_ptr<const ImageTransform>> image_ops,
                   std::vector<std::shared_ptr<const TensorTransform>> tensor_ops,
                   std::vector<float> mean, std::vector<float> std)
    : image_ops_(std::move(image_ops)),
      tensor_ops_(std::move(tensor_ops)),
      mean_(std::move(mean)),
      std_(std::move(std)) {
  check_mean_std(mean_, std_);
}

cv::Mat Pipeline::apply_image(const cv::Mat& rgb, Rng& rng) const {
  TORCH_CHECK(!rgb.empty() && rgb.type() == CV_8UC3, "transforms expect an 8-bit RGB image");
  cv::Mat out = rgb;
  for (const auto& op : image_ops_) out = op->apply(out, rng);
  return out;
}

torch::Tensor Pipeline::operator()(const cv::Mat& rgb, Rng& rng) const {
  torch::Tensor chw = to_normalized_tensor(apply_image(rgb, rng), mean_, std_);
  apply_tensor_ops(chw, rng);
  return chw;
}

void Pipeline::normalize_into(const cv::Mat& rgb, float* chw) const {
  write_normalized(rgb, mean_, std_, chw);
}

void Pipeline::apply_tensor_ops(torch::Tensor& chw, Rng& rng) const {
  for (const auto& op : tensor_ops_) op->apply(chw, rng);
}

Pipeline build_pipeline(const YAML::Node& ops, const std::vector<float>& mean,
                        const std::vector<float>& std) {
  std::vector<std::shared_ptr<const ImageTransform>> image_ops;
  std::vector<std::shared_ptr<const TensorTransform>> tensor_ops;
  if (ops && !ops.IsNull()) {
    if (!ops.IsSequence()) throw Error("transforms must be a list of {type: NAME, ...}");
    for (const auto& entry : ops) {
      if (!entry.IsMap() || !entry["type"] || !entry["type"].IsScalar())
        throw Error("each transform must be a map with a 'type', e.g. {type: hflip, p: 0.5}");
      std::string type = entry["type"].Scalar();
      const OpFactory& factory = factories().factory(type);
      Params params(entry, type);
      if (factory.image) {
        if (!tensor_ops.empty())
          throw Error("transform '" + type +
                      "' works on images and must come before the "
                      "tensor transforms (random_erasing)");
        image_ops.push_back(factory.image(params));
      } else {
        tensor_ops.push_back(factory.tensor(params));
      }
      params.finish();
    }
  }
  return Pipeline(std::move(image_ops), std::move(tensor_ops), mean, std);
}

torch::Tensor to_normalized_tensor(const cv::Mat& rgb, const std::vector<float>& mean,
                                   const std::vector<float>& std) {
  TORCH_CHECK(!rgb.empty() && rgb.type() == CV_8UC3, "expected an 8-bit RGB image");
  torch::Tensor chw = torch::empty({3, rgb.rows, rgb.cols}, torch::kFloat32);
  write_normalized(rgb, mean, std, chw.data_ptr<float>());
  return chw;
}

void write_normalized(const cv::Mat& rgb, const std::vector<float>& mean,
                      const std::vector<float>& std, float* chw) {
  TORCH_CHECK(!rgb.empty() && rgb.type() == CV_8UC3, "expected an 8-bit RGB image");
  check_mean_std(mean, std);
  // A uint8 channel has 256 values, so a table of torchvision's ToTensor + Normalize results
  // (the float32 operations x / 255, - mean, / std in that order) is bit-identical to
  // computing them per pixel, and the pass is one load and one store per value.
  float table[3][256];
  for (int c = 0; c < 3; ++c) {
    for (int v = 0; v < 256; ++v) {
      table[c][v] = (static_cast<float>(v) / 255.0f - mean[c]) / std[c];
    }
  }
  const size_t plane = static_cast<size_t>(rgb.rows) * rgb.cols;
  float* red = chw;
  float* green = chw + plane;
  float* blue = chw + 2 * plane;
  for (int y = 0; y < rgb.rows; ++y) {
    const uint8_t* in = rgb.ptr<uint8_t>(y);
    const size_t row = static_cast<size_t>(y) * rgb.cols;
    for (int x = 0; x < rgb.cols; ++x, in += 3) {
      red[row + x] = table[0][in[0]];
      green[row + x] = table[1][in[1]];
      blue[row + x] = table[2][in[2]];
    }
  }
}

std::vector<std::string> transform_names() { return factories().names(); }

}  // namespace finch::data
