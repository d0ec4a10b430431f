// The doctor's per-image facts and findings: files written by PIL (a writer finch did not
// write) and by OpenCV, broken on purpose; quality signals on synthetic pictures; the
// perceptual hash's robustness and its separation of different pictures.
#include "finch/doctor/checks.h"

#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>

#include "finch/core/atomic_file.h"
#include "test_support.h"

namespace fd = finch::doctor;
namespace fs = std::filesystem;

namespace {

// A textured RGB picture: gradients, a few shapes, noise (seeded).
cv::Mat picture(int width, int height, uint32_t seed) {
  cv::Mat rgb(height, width, CV_8UC3);
  std::mt19937 rng(seed);
  for (int y = 0; y < height; ++y)
    for (int x = 0; x < width; ++x)
      rgb.at<cv::Vec3b>(y, x) = cv::Vec3b(static_cast<uint8_t>((x * 255) / width),
                                          static_cast<uint8_t>((y * 255) / height),
                                          static_cast<uint8_t>(rng() % 64 + 96));
  for (int k = 0; k < 6; ++k)
    cv::circle(rgb, cv::Point(rng() % width, rng() % height), 3 + rng() % (width / 4),
               cv::Scalar(rng() % 256, rng() % 256, rng() % 256), -1);
  return rgb;
}

void write_rgb(const fs::path& path, const cv::Mat& rgb, std::vector<int> params = {}) {
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  finch::test::require(cv::imwrite(path.string(), bgr, params), "imwrite " + path.string());
}

std::vector<std::string> reasons(const fd::ImageFacts& facts, const std::string& majority = "rgb",
                                 int depth = 8) {
  std::vector<std::string> out;
  for (const auto& f : fd::image_findings(facts, fd::Thresholds{}, majority, depth))
    out.push_back(f.reason);
  return out;
}

bool has(const std::vector<std::string>& v, const std::string& reason) {
  return std::find(v.begin(), v.end(), reason) != v.end();
}

}  // namespace

TEST(DoctorChecks, HeadersOfFilesWrittenByPil) {
  finch::test::TempDir dir("finch-doctor-odd");
  finch::test::run_python_reference("odd_images_writer.py", dir.path().string());
  const auto facts = [&](const char* name) {
    return fd::inspect_file(dir.path() / name, fd::Thresholds{}.max_pixels);
  };
  const auto cmyk = facts("cmyk.jpg");
  EXPECT_TRUE(cmyk.decoded) << cmyk.error;
  EXPECT_EQ(cmyk.container, "jpeg");
  EXPECT_EQ(cmyk.mode, "cmyk");
  EXPECT_TRUE(has(reasons(cmyk), "cmyk"));

  const auto gray16 = facts("gray16.png");
  EXPECT_TRUE(gray16.decoded) << gray16.error;
  EXPECT_EQ(gray16.mode, "gray");
  EXPECT_EQ(gray16.bit_depth, 16);
  EXPECT_TRUE(has(reasons(gray16), "high_bit_depth"));
  EXPECT_TRUE(has(reasons(gray16), "grayscale"));           // in a colour dataset
  EXPECT_FALSE(has(reasons(gray16, "gray"), "grayscale"));  // in a grey one

  EXPECT_EQ(facts("gray_alpha.png").mode, "gray+alpha");
  EXPECT_TRUE(has(reasons(facts("gray_alpha.png")), "alpha"));
  EXPECT_EQ(facts("palette.png").mode, "palette");

  const auto rotated = facts("rotated.jpg");
  EXPECT_EQ(rotated.exif_orientation, 6);
  EXPECT_TRUE(has(reasons(rotated), "exif_orientation"));
  // Orientation 6 turns 48 x 32 into 32 x 48 when decoded, as PIL's exif_transpose does.
  EXPECT_EQ(rotated.width, 32);
  EXPECT_EQ(rotated.height, 48);

  const auto plain = facts("rgb.jpg");
  EXPECT_EQ(plain.mode, "rgb");
  EXPECT_EQ(plain.exif_orientation, 0);
  EXPECT_FALSE(plain.truncated);
  EXPECT_TRUE(reasons(plain).empty()) << ::testing::PrintToString(reasons(plain));
}

TEST(DoctorChecks, BrokenFilesEachGetTheirReason) {
  finch::test::TempDir dir("finch-doctor-broken");
  const fs::path d = dir.path();
  write_rgb(d / "ok.jpg", picture(64, 48, 1));
  const std::string jpeg = finch::read_file(d / "ok.jpg");
  finch::test::write_text(d / "empty.jpg", "");
  finch::test::write_text(d / "half.jpg", jpeg.substr(0, jpeg.size() / 2));
  finch::test::write_text(d / "noise.png", std::string(500, '\x5a'));
  finch::test::write_text(d / "jpeg_named.png", jpeg);
  write_rgb(d / "ok.png", picture(64, 48, 1));
  const std::string png = finch::read_file(d / "ok.png");
  finch::test::write_text(d / "half.png", png.substr(0, png.size() / 2));

  const auto check = [&](const char* name) {
    return reasons(fd::inspect_file(d / name, fd::Thresholds{}.max_pixels));
  };
  EXPECT_EQ(check("empty.jpg"), std::vector<std::string>{"zero_byte"});
  EXPECT_EQ(check("half.jpg"), std::vector<std::string>{"truncated"});
  EXPECT_EQ(check("half.png"), std::vector<std::string>{"truncated"});
  EXPECT_EQ(check("noise.png"), std::vector<std::string>{"undecodable"});
  EXPECT_EQ(check("jpeg_named.png"), std::vector<std::string>{"wrong_extension"});
  EXPECT_TRUE(check("ok.jpg").empty()) << ::testing::PrintToString(check("ok.jpg"));
  const auto missing = fd::inspect_file(d / "missing.jpg", 1000);
  EXPECT_FALSE(missing.decoded);
  EXPECT_FALSE(missing.error.empty());
  // Above the pixel limit: refused from the header, never decoded.
  const auto big = fd::inspect_file(d / "ok.png", 1000);
  EXPECT_TRUE(big.too_large);
  EXPECT_EQ(reasons(big), std::vector<std::string>{"too_large"});
}

TEST(DoctorChecks, QualitySignals) {
  const auto facts_of = [](const cv::Mat& rgb) {
    fd::ImageFacts f;
    fd::inspect_pixels(rgb, f);
    return f;
  };
  const cv::Mat sharp = picture(96, 96, 3);
  EXPECT_TRUE(reasons(facts_of(sharp)).empty())
      << ::testing::PrintToString(reasons(facts_of(sharp)));
  cv::Mat blurred;
  cv::GaussianBlur(sharp, blurred, cv::Size(0, 0), 4);
  EXPECT_TRUE(has(reasons(facts_of(blurred)), "blurry"));
  EXPECT_LT(facts_of(blurred).sharpness, facts_of(sharp).sharpness / 5);
  // Darkening keeps the structure (contrast-normalised sharpness stays) but not the light.
  const cv::Mat dark = sharp * 0.1;
  EXPECT_EQ(reasons(facts_of(dark)), std::vector<std::string>{"dark"});
  // (A bare 255 - Mat would only touch the first channel: OpenCV reads it as Scalar(255).)
  cv::Mat inverse;
  cv::subtract(cv::Scalar::all(255), sharp, inverse);
  cv::Mat bright;
  cv::subtract(cv::Scalar::all(255), inverse * 0.1, bright);
  EXPECT_EQ(reasons(facts_of(bright)), std::vector<std::string>{"bright"});
  const cv::Mat flat(40, 40, CV_8UC3, cv::Scalar(120, 120, 120));
  EXPECT_EQ(reasons(facts_of(flat)), std::vector<std::string>{"near_constant"});
  // Two grey levels, a quarter and three quarters: contrast, but 0.81 bits of entropy.
  cv::Mat halves(40, 40, CV_8UC3, cv::Scalar(20, 20, 20));
  halves(cv::Rect(0, 0, 10, 40)).setTo(cv::Scalar(220, 220, 220));
  EXPECT_TRUE(has(reasons(facts_of(halves)), "low_information"));
  EXPECT_TRUE(has(reasons(facts_of(picture(12, 40, 4))), "too_small"));
  EXPECT_TRUE(has(reasons(facts_of(picture(200, 40, 5))), "extreme_aspect"));
}

TEST(DoctorChecks, PerceptualHashSurvivesResizeRecompressionAndMirroring) {
  const cv::Mat a = picture(160, 120, 7);
  fd::ImageFacts fa, resized, recompressed, mirrored, other;
  fd::inspect_pixels(a, fa);
  cv::Mat half;
  cv::resize(a, half, cv::Size(80, 60), 0, 0, cv::INTER_AREA);
  fd::inspect_pixels(half, resized);
  std::vector<uint8_t> jpeg;
  cv::imencode(".jpg", a, jpeg, {cv::IMWRITE_JPEG_QUALITY, 70});
  fd::inspect_pixels(cv::imdecode(jpeg, cv::IMREAD_COLOR), recompressed);
  cv::Mat flipped;
  cv::flip(a, flipped, 1);
  fd::inspect_pixels(flipped, mirrored);
  fd::inspect_pixels(picture(160, 120, 8), other);

  EXPECT_LE(fd::hamming(fa.phash, resized.phash), 4);
  EXPECT_LE(fd::hamming(fa.phash, recompressed.phash), 4);
  EXPECT_EQ(fa.phash, mirrored.phash_flipped);  // the mirror's mirror is the original
  EXPECT_GT(fd::hamming(fa.phash, other.phash), 12);
  EXPECT_NE(fa.pixel_hash, recompressed.pixel_hash);  // exact = same decoded pixels only
  EXPECT_LT(fd::thumbnail_difference(fa, resized), 3.0);
  EXPECT_LT(fd::thumbnail_difference(fa, mirrored), 1.0);  // compared mirrored
  EXPECT_GT(fd::thumbnail_difference(fa, other), 10.0);
}
