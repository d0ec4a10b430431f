#include "finch/data/transforms.h"

#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <opencv2/core.hpp>
#include <set>
#include <sstream>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/io/image.h"
#include "test_support.h"

namespace fs = std::filesystem;
using finch::Rng;
using finch::data::build_pipeline;
using finch::data::Pipeline;

namespace {

const std::vector<float> kMean = {0.485f, 0.456f, 0.406f};
const std::vector<float> kStd = {0.229f, 0.224f, 0.225f};

// 37x53 (odd sizes exercise the rounding rules): smooth colour ramps plus per-pixel noise,
// so both interpolation and exact pixel placement show up in comparisons.
cv::Mat test_image() {
  cv::Mat rgb(37, 53, CV_8UC3);
  for (int y = 0; y < rgb.rows; ++y)
    for (int x = 0; x < rgb.cols; ++x) {
      uint64_t noise = finch::mix64(static_cast<uint64_t>(y * 1000 + x));
      rgb.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uchar>(4 * x + (noise & 15)),
                                          static_cast<uchar>(6 * y + ((noise >> 8) & 31)),
                                          static_cast<uchar>(128 + 100 * std::sin(0.3 * (x + y))));
    }
  return rgb;
}

Pipeline pipeline(const std::string& yaml) { return build_pipeline(YAML::Load(yaml), kMean, kStd); }

// Seeds go through derive_seed as the loader's do (Rng(s) and Rng(s + 1) share a stream).
cv::Mat apply(const std::string& yaml, const cv::Mat& img, uint64_t seed = 0) {
  Rng rng(finch::derive_seed(seed));
  return pipeline(yaml).apply_image(img, rng);
}

bool same(const cv::Mat& a, const cv::Mat& b) {
  return a.size() == b.size() && a.type() == b.type() && cv::norm(a, b, cv::NORM_INF) == 0;
}

struct Reference {
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
  cv::Mat image() const {  // HxWx3 uint8
    return cv::Mat(static_cast<int>(shape[0]), static_cast<int>(shape[1]), CV_8UC3,
                   const_cast<char*>(bytes.data()));
  }
};

// Runs tests/parity/transforms_reference.py once on test_image() and loads its results.
const std::map<std::string, Reference>& references() {
  static const std::map<std::string, Reference> refs = [] {
    std::map<std::string, Reference> out;
    finch::test::TempDir dir("finch-transforms-ref");
    finch::io::write_image_rgb(dir / "input.png", test_image());
    std::istringstream lines(finch::test::run_python_reference(
        "transforms_reference.py", (dir / "input.png").string() + " " + dir.path().string()));
    std::string name;
    Reference ref;
    int64_t d0, d1, d2;
    while (lines >> name >> ref.dtype >> d0 >> d1 >> d2) {
      ref.shape = {d0, d1, d2};
      ref.bytes = finch::read_file(dir / (name + ".bin"));
      out[name] = ref;
    }
    return out;
  }();
  return refs;
}

const Reference& reference(const std::string& name) {
  auto it = references().find(name);
  if (it == references().end()) throw std::runtime_error("no torchvision reference " + name);
  return it->second;
}

// Max |finch - torchvision| over all pixels; sizes must agree.
double diff_to_reference(const cv::Mat& ours, const std::string& name) {
  cv::Mat ref = reference(name).image();
  EXPECT_EQ(ours.size(), ref.size()) << name;
  if (ours.size() != ref.size()) return 1e9;
  return cv::norm(ours, ref, cv::NORM_INF);
}

// Share of pixels where finch and torchvision differ in any channel.
double mismatch_fraction(const cv::Mat& ours, const std::string& name) {
  cv::Mat ref = reference(name).image(), diff, any;
  EXPECT_EQ(ours.size(), ref.size()) << name;
  if (ours.size() != ref.size()) return 1;
  cv::absdiff(ours, ref, diff);
  cv::transform(diff, any, cv::Matx13f(1, 1, 1));
  return cv::countNonZero(any) / static_cast<double>(ours.total());
}

std::string error_of(const std::string& yaml) {
  try {
    pipeline(yaml);
  } catch (const finch::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected finch::Error for " << yaml;
  return "";
}

}  // namespace

// --- parity with torchvision 0.14 (python3-torchvision, the tensor code path) ---------------

// Geometry that involves no interpolation must match exactly: crops (Python's half-to-even
// rounding of the offset, zero padding when the crop is larger), flips, nearest resize and a
// 90-degree rotation.
TEST(TransformsParity, ExactOps) {
  cv::Mat img = test_image();
  // Offsets 8.5 -> 8, 16.5 -> 16 (not 9, 17) and 9.5 -> 10, 15.5 -> 16 (not 9, 15).
  EXPECT_EQ(diff_to_reference(apply("[{type: center_crop, size: 20}]", img), "center_crop_20"), 0);
  EXPECT_EQ(
      diff_to_reference(apply("[{type: center_crop, size: [18, 22]}]", img), "center_crop_18x22"),
      0);
  EXPECT_EQ(
      diff_to_reference(apply("[{type: center_crop, size: [45, 30]}]", img), "center_crop_45x30"),
      0);
  EXPECT_EQ(
      diff_to_reference(apply("[{type: center_crop, size: [40, 60]}]", img), "center_crop_40x60"),
      0);
  EXPECT_EQ(diff_to_reference(apply("[{type: hflip, p: 1.0}]", img), "hflip"), 0);
  EXPECT_EQ(
      diff_to_reference(apply("[{type: resize, size: [20, 30], interpolation: nearest}]", img),
                        "resize_nearest_20x30"),
      0);
  EXPECT_EQ(diff_to_reference(apply("[{type: rotation, degrees: [90, 90]}]", img), "rotate90"), 0);
  // At other angles both sample the nearest source pixel, but torchvision's float32 grid and
  // OpenCV's 1/1024-pixel fixed-point coordinates break near-ties differently: about 1% of the
  // pixels (measured 73 values of 5883) take a neighbour's value. A wrong direction or a
  // half-pixel shift of the centre would change most pixels.
  EXPECT_LT(mismatch_fraction(apply("[{type: rotation, degrees: [30, 30]}]", img), "rotate30"),
            0.03);
}

// OpenCV's bilinear resize uses the same half-pixel sampling as torch's interpolate
// (align_corners=False, antialias=False) but 11-bit fixed-point weights for uint8, while
// torchvision interpolates in float32 and rounds: results differ by at most 1 grey level.
// Bicubic (both a = -0.75) differs by the same fixed-point effect plus clamping of the
// intermediate row pass in OpenCV.
TEST(TransformsParity, InterpolatingResize) {
  cv::Mat img = test_image();
  EXPECT_LE(diff_to_reference(apply("[{type: resize, size: 24}]", img), "resize_short24"), 1);
  EXPECT_LE(diff_to_reference(apply("[{type: resize, size: [50, 80]}]", img), "resize_up_50x80"),
            1);
  EXPECT_LE(diff_to_reference(apply("[{type: resize, size: [20, 30]}]", img), "resize_down_20x30"),
            1);
  EXPECT_LE(
      diff_to_reference(apply("[{type: resize, size: [50, 70], interpolation: bicubic}]", img),
                        "resize_bicubic_50x70"),
      2);
}

// With antialias: true, resize reimplements PIL's fixed-point antialiased bilinear filter (what
// torchvision's Resize does on PIL images): bit-identical when shrinking, enlarging, and both.
TEST(TransformsParity, AntialiasedResizeIsPils) {
  cv::Mat img = test_image();
  EXPECT_EQ(diff_to_reference(apply("[{type: resize, size: [17, 23], antialias: true}]", img),
                              "pil_down_17x23"),
            0);
  EXPECT_EQ(diff_to_reference(apply("[{type: resize, size: [50, 80], antialias: true}]", img),
                              "pil_up_50x80"),
            0);
  EXPECT_EQ(diff_to_reference(apply("[{type: resize, size: [90, 21], antialias: true}]", img),
                              "pil_mixed_90x21"),
            0);
  EXPECT_CONTAINS(error_of("[{type: resize, size: 9, antialias: true, interpolation: nearest}]"),
                  "bilinear only");
}

// ColorJitter with a degenerate range [f, f] is the fixed adjustment F.adjust_*(img, f).
// finch repeats torchvision's float32 arithmetic and truncation; the mean in contrast is
// summed in another order, which may move a value across an integer: tolerance 1.
TEST(TransformsParity, ColorAdjustments) {
  cv::Mat img = test_image();
  EXPECT_LE(diff_to_reference(apply("[{type: color_jitter, brightness: [1.3, 1.3]}]", img),
                              "brightness_1.3"),
            1);
  EXPECT_LE(
      diff_to_reference(apply("[{type: color_jitter, contrast: [0.6, 0.6]}]", img), "contrast_0.6"),
      1);
  EXPECT_LE(diff_to_reference(apply("[{type: color_jitter, saturation: [1.7, 1.7]}]", img),
                              "saturation_1.7"),
            1);
  EXPECT_LE(diff_to_reference(apply("[{type: color_jitter, hue: [0.12, 0.12]}]", img), "hue_0.12"),
            1);
  EXPECT_LE(diff_to_reference(apply("[{type: color_jitter, hue: [-0.3, -0.3]}]", img), "hue_-0.3"),
            1);
}

// ToTensor + Normalize: the same float32 operations in the same order, so bit-identical.
TEST(TransformsParity, NormalizeIsExact) {
  const Reference& ref = reference("normalize");
  ASSERT_EQ(ref.shape, (std::vector<int64_t>{3, 37, 53}));
  torch::Tensor expected =
      torch::from_blob(const_cast<char*>(ref.bytes.data()), {3, 37, 53}, torch::kFloat32);
  torch::Tensor ours = finch::data::to_normalized_tensor(test_image(), kMean, kStd);
  ASSERT_EQ(ours.sizes(), expected.sizes());
  EXPECT_EQ(ours.sub(expected).abs().max().item<float>(), 0.f);
}

// RandomCrop(size=None -> input size, padding=4): every output is a window of torchvision's
// padded image, and the windows cover many offsets over seeds.
TEST(TransformsParity, PadCropIsAWindowOfThePaddedImage) {
  cv::Mat img = test_image();
  cv::Mat padded = reference("pad4").image();
  ASSERT_EQ(padded.size(), cv::Size(53 + 8, 37 + 8));
  std::set<std::pair<int, int>> offsets;
  for (uint64_t seed = 0; seed < 60; ++seed) {
    cv::Mat out = apply("[{type: pad_crop, padding: 4}]", img, seed);
    ASSERT_EQ(out.size(), img.size());
    bool found = false;
    for (int top = 0; top <= 8 && !found; ++top)
      for (int left = 0; left <= 8 && !found; ++left)
        if (same(out, padded(cv::Rect(left, top, img.cols, img.rows)))) {
          offsets.insert({top, left});
          found = true;
        }
    EXPECT_TRUE(found) << "seed " << seed;
  }
  EXPECT_GT(offsets.size(), 20u);
}

// --- behaviour of the random ops -------------------------------------------------------------

TEST(Transforms, RandomResizedCropSizeAndDeterminism) {
  cv::Mat img = test_image();
  const std::string op = "[{type: random_resized_crop, size: 24}]";
  EXPECT_EQ(apply(op, img, 1).size(), cv::Size(24, 24));
  EXPECT_EQ(apply("[{type: random_resized_crop, size: [20, 30]}]", img, 1).size(),
            cv::Size(30, 20));
  EXPECT_TRUE(same(apply(op, img, 5), apply(op, img, 5)));
  int differing = 0;
  for (uint64_t seed = 1; seed < 6; ++seed)
    differing += !same(apply(op, img, 0), apply(op, img, seed));
  EXPECT_EQ(differing, 5);
}

// No crop with an aspect ratio of 2..3 and the whole area fits a square image, so all ten
// attempts fail and torchvision's fallback takes the full width, height round(36 / 2), centred.
TEST(Transforms, RandomResizedCropFallbackIsACentreCrop) {
  cv::Mat square = test_image()(cv::Rect(0, 0, 36, 36)).clone();
  cv::Mat out = apply("[{type: random_resized_crop, size: [18, 36], scale: [1, 1], ratio: [2, 3]}]",
                      square, 3);
  EXPECT_TRUE(same(out, square(cv::Rect(0, 9, 36, 18))));
}

TEST(Transforms, ResizeKeepsAspectOfTheShorterSide) {
  cv::Mat tall(100, 40, CV_8UC3, cv::Scalar::all(7));
  EXPECT_EQ(apply("[{type: resize, size: 20}]", tall).size(), cv::Size(20, 50));
  EXPECT_EQ(apply("[{type: resize, size: 30}]", tall).size(), cv::Size(30, 75));
  EXPECT_EQ(apply("[{type: resize, size: 30, interpolation: area}]", tall).size(),
            cv::Size(30, 75));
}

TEST(Transforms, RandomOpsAreSeededAndKeepTheSize) {
  cv::Mat img = test_image();
  for (const std::string op :
       {"[{type: rotation, degrees: 30}]", "[{type: scale, range: [0.8, 1.2]}]",
        "[{type: color_jitter, brightness: 0.4, contrast: 0.4, saturation: 0.4, hue: 0.1}]",
        "[{type: hflip}]"}) {
    SCOPED_TRACE(op);
    EXPECT_EQ(apply(op, img, 3).size(), img.size());
    EXPECT_TRUE(same(apply(op, img, 3), apply(op, img, 3)));
    int differing = 0;
    for (uint64_t seed = 0; seed < 8; ++seed) differing += !same(apply(op, img, seed), img);
    EXPECT_GT(differing, 0);
  }
  EXPECT_TRUE(same(apply("[{type: hflip, p: 0}]", img), img));
  EXPECT_TRUE(same(apply("[{type: scale, range: [1, 1]}]", img), img));
  // Zooming in by 2 about the centre keeps the centre pixel.
  cv::Mat odd = img(cv::Rect(0, 0, 33, 33)).clone();
  EXPECT_EQ(apply("[{type: scale, range: [2, 2]}]", odd).at<cv::Vec3b>(16, 16),
            odd.at<cv::Vec3b>(16, 16));
}

TEST(Transforms, RandomErasingChangesOnlyOneRectangle) {
  Pipeline erase = pipeline("[{type: random_erasing, p: 1.0, value: 7}]");
  cv::Mat img = test_image();
  torch::Tensor plain = finch::data::to_normalized_tensor(img, kMean, kStd);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    Rng rng(seed);
    torch::Tensor out = erase(img, rng);
    torch::Tensor changed = out.ne(plain).any(0);  // H x W
    ASSERT_TRUE(changed.any().item<bool>()) << "seed " << seed;
    torch::Tensor rows = changed.any(1).nonzero(), cols = changed.any(0).nonzero();
    int64_t top = rows.min().item<int64_t>(), bottom = rows.max().item<int64_t>() + 1;
    int64_t left = cols.min().item<int64_t>(), right = cols.max().item<int64_t>() + 1;
    torch::Tensor box = out.slice(1, top, bottom).slice(2, left, right);
    EXPECT_TRUE(box.eq(7).all().item<bool>()) << "seed " << seed;
    EXPECT_EQ(changed.sum().item<int64_t>(), (bottom - top) * (right - left));
    EXPECT_LT(bottom - top, 37);
    EXPECT_LT(right - left, 53);
  }
  Rng rng(0);
  EXPECT_TRUE(pipeline("[{type: random_erasing, p: 0}]")(img, rng).equal(plain));
  Rng noise_rng(1);
  torch::Tensor noisy = pipeline("[{type: random_erasing, p: 1, value: random}]")(img, noise_rng);
  EXPECT_GT(noisy.ne(plain).sum().item<int64_t>(), 10);
}

TEST(Transforms, PipelineOutputsNormalisedChw) {
  Pipeline p = pipeline("[{type: resize, size: [16, 20]}, {type: hflip}, {type: random_erasing}]");
  Rng rng(4);
  torch::Tensor out = p(test_image(), rng);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{3, 16, 20}));
  EXPECT_EQ(out.dtype(), torch::kFloat32);
  Rng rng2(0);
  EXPECT_TRUE(build_pipeline(YAML::Node(), kMean, kStd).apply_image(test_image(), rng2).size() ==
              cv::Size(53, 37));
  EXPECT_NE(finch::data::transform_names().size(), 0u);
}

TEST(Transforms, BadConfigsNameTheTransformAndKey) {
  EXPECT_CONTAINS(error_of("[{type: resize, size: 10, sise: 3}]"),
                  "'resize': unknown parameter 'sise'");
  EXPECT_CONTAINS(error_of("[{type: resize, size: abc}]"), "'resize': 'size'");
  EXPECT_CONTAINS(error_of("[{type: resize, size: 1.5}]"), "'resize': 'size'");
  EXPECT_CONTAINS(error_of("[{type: resize, size: [1, 2, 3]}]"), "'resize': 'size'");
  EXPECT_CONTAINS(error_of("[{type: resize}]"), "'resize': 'size' is required");
  EXPECT_CONTAINS(error_of("[{type: resize, size: 8, interpolation: lanczos}]"), "'interpolation'");
  EXPECT_CONTAINS(error_of("[{type: hflip, p: [1]}]"), "'hflip': 'p'");
  EXPECT_CONTAINS(error_of("[{type: hflip, p: 2}]"), "'hflip': 'p' must be in [0, 1]");
  EXPECT_CONTAINS(error_of("[{type: random_resized_crop, size: 8, scale: [0.5]}]"), "'scale'");
  EXPECT_CONTAINS(error_of("[{type: random_resized_crop, size: 8, ratio: [2, 1]}]"), "'ratio'");
  EXPECT_CONTAINS(error_of("[{type: color_jitter, hue: 0.7}]"), "'color_jitter': 'hue'");
  EXPECT_CONTAINS(error_of("[{type: color_jitter, brightness: -1}]"), "'brightness'");
  EXPECT_CONTAINS(error_of("[{type: pad_crop, padding: [1, 2, 3]}]"), "'pad_crop': 'padding'");
  EXPECT_CONTAINS(error_of("[{type: rotation}]"), "'rotation': 'degrees' is required");
  EXPECT_CONTAINS(error_of("[{type: random_erasing, value: [1, 2]}]"), "'random_erasing': 'value'");
  EXPECT_CONTAINS(error_of("[{type: blur}]"), "unknown transform 'blur' (");
  EXPECT_CONTAINS(error_of("[{type: blur}]"), "known: center_crop, color_jitter");
  EXPECT_CONTAINS(error_of("[{type: blur}]"), "random_resized_crop");
  EXPECT_CONTAINS(error_of("[{size: 3}]"), "'type'");
  EXPECT_CONTAINS(error_of("{type: hflip}"), "list");
  EXPECT_CONTAINS(error_of("[{type: random_erasing}, {type: hflip}]"), "before");
  EXPECT_THROW(build_pipeline(YAML::Load("[]"), {0.5f}, {1.f, 1.f, 1.f}), finch::Error);
}
