#include "finch/io/image.h"

#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using finch::io::decode_image_rgb;
using finch::io::read_image_rgb;

namespace {

// A small image with distinct colours per pixel, in RGB order.
cv::Mat pattern_rgb(int rows, int cols) {
  cv::Mat rgb(rows, cols, CV_8UC3);
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x)
      rgb.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uchar>(10 + 7 * x), static_cast<uchar>(200 - 5 * y),
                    static_cast<uchar>((x * y * 13) % 256));
  return rgb;
}

double max_abs_diff(const cv::Mat& a, const cv::Mat& b) {
  EXPECT_EQ(a.size(), b.size());
  EXPECT_EQ(a.type(), b.type());
  if (a.size() != b.size() || a.type() != b.type()) return 1e9;
  return cv::norm(a, b, cv::NORM_INF);
}

}  // namespace

TEST(ImageIo, PngRoundTripKeepsRgbOrder) {
  finch::test::TempDir dir;
  cv::Mat rgb = pattern_rgb(9, 13);
  finch::io::write_image_rgb(dir / "a.png", rgb);
  EXPECT_EQ(max_abs_diff(read_image_rgb(dir / "a.png"), rgb), 0);

  // A file written by plain OpenCV (BGR in memory) decodes to RGB.
  cv::Mat bgr(1, 1, CV_8UC3, cv::Scalar(10, 20, 30));
  ASSERT_TRUE(cv::imwrite((dir / "b.png").string(), bgr));
  EXPECT_EQ(read_image_rgb(dir / "b.png").at<cv::Vec3b>(0, 0), cv::Vec3b(30, 20, 10));
  for (const auto& entry : fs::directory_iterator(dir.path()))
    EXPECT_EQ(entry.path().string().find(".tmp"), std::string::npos) << entry.path();
}

TEST(ImageIo, GreyRgbaAnd16BitPngDecodeToRgb8) {
  finch::test::TempDir dir;
  cv::Mat grey(4, 5, CV_8UC1);
  for (int i = 0; i < 20; ++i) grey.data[i] = static_cast<uchar>(i * 12);
  ASSERT_TRUE(cv::imwrite((dir / "grey.png").string(), grey));
  cv::Mat expected_grey;
  cv::cvtColor(grey, expected_grey, cv::COLOR_GRAY2RGB);
  EXPECT_EQ(max_abs_diff(read_image_rgb(dir / "grey.png"), expected_grey), 0);

  cv::Mat bgra(3, 4, CV_8UC4, cv::Scalar(11, 22, 33, 0));  // fully transparent: alpha dropped
  ASSERT_TRUE(cv::imwrite((dir / "rgba.png").string(), bgra));
  cv::Mat rgb = read_image_rgb(dir / "rgba.png");
  EXPECT_EQ(rgb.type(), CV_8UC3);
  EXPECT_EQ(rgb.at<cv::Vec3b>(2, 3), cv::Vec3b(33, 22, 11));

  // 16-bit: v * 257 maps back to v (OpenCV keeps the high byte).
  cv::Mat deep(3, 4, CV_16UC3, cv::Scalar(10 * 257, 100 * 257, 250 * 257));
  ASSERT_TRUE(cv::imwrite((dir / "deep.png").string(), deep));
  cv::Mat deep_rgb = read_image_rgb(dir / "deep.png");
  EXPECT_EQ(deep_rgb.type(), CV_8UC3);
  EXPECT_EQ(deep_rgb.at<cv::Vec3b>(1, 1), cv::Vec3b(250, 100, 10));

  cv::Mat deep_grey(2, 2, CV_16UC1, cv::Scalar(77 * 257));
  ASSERT_TRUE(cv::imwrite((dir / "deep_grey.png").string(), deep_grey));
  EXPECT_EQ(read_image_rgb(dir / "deep_grey.png").at<cv::Vec3b>(0, 1), cv::Vec3b(77, 77, 77));
}

TEST(ImageIo, EveryListedFormatDecodes) {
  finch::test::TempDir dir;
  cv::Mat rgb(16, 24, CV_8UC3);  // smooth ramps, which lossy codecs keep well
  for (int y = 0; y < rgb.rows; ++y)
    for (int x = 0; x < rgb.cols; ++x)
      rgb.at<cv::Vec3b>(y, x) =
          cv::Vec3b(static_cast<uchar>(8 * x), static_cast<uchar>(10 * y), 128);
  for (const std::string ext : {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}) {
    SCOPED_TRACE(ext);
    finch::io::write_image_rgb(dir / ("x" + ext), rgb);
    cv::Mat back = read_image_rgb(dir / ("x" + ext));
    bool lossy = ext == ".jpg" || ext == ".jpeg" || ext == ".webp";
    EXPECT_LE(max_abs_diff(back, rgb), lossy ? 24 : 0);
    if (lossy) EXPECT_LT(cv::norm(back, rgb, cv::NORM_L1) / rgb.total() / 3, 3.0);
  }
}

// libjpeg's decoder applies nothing by itself; OpenCV must read the EXIF orientation tag.
TEST(ImageIo, JpegExifOrientationIsApplied) {
  finch::test::TempDir dir;
  cv::Mat rgb(16, 32, CV_8UC3, cv::Scalar(0, 0, 255));       // blue...
  rgb(cv::Rect(0, 0, 16, 16)).setTo(cv::Scalar(255, 0, 0));  // ...with a red left half
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<uchar> jpeg;
  ASSERT_TRUE(cv::imencode(".jpg", bgr, jpeg));
  // APP1 "Exif" segment, big-endian TIFF with one IFD entry: Orientation (0x0112) = 6,
  // "rotate 90 degrees clockwise to display".
  const unsigned char app1[] = {0xFF, 0xE1, 0x00, 0x22, 'E',  'x',  'i',  'f',  0,
                                0,    'M',  'M',  0x00, 0x2A, 0x00, 0x00, 0x00, 0x08,
                                0x00, 0x01, 0x01, 0x12, 0x00, 0x03, 0x00, 0x00, 0x00,
                                0x01, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  std::string bytes(jpeg.begin(), jpeg.begin() + 2);
  bytes.append(reinterpret_cast<const char*>(app1), sizeof(app1));
  bytes.append(jpeg.begin() + 2, jpeg.end());
  finch::write_file_atomic(dir / "rotated.jpg", bytes);

  cv::Mat out = read_image_rgb(dir / "rotated.jpg");
  ASSERT_EQ(out.rows, 32);
  ASSERT_EQ(out.cols, 16);
  cv::Vec3b top = out.at<cv::Vec3b>(4, 8), bottom = out.at<cv::Vec3b>(28, 8);
  EXPECT_GT(top[0], 200);  // the stored left half (red) is on top after a clockwise turn
  EXPECT_LT(top[2], 60);
  EXPECT_GT(bottom[2], 200);
  EXPECT_LT(bottom[0], 60);
}

TEST(ImageIo, BadFilesThrowNamingThePath) {
  finch::test::TempDir dir;
  cv::Mat rgb = pattern_rgb(20, 20);
  finch::io::write_image_rgb(dir / "good.png", rgb);
  finch::io::write_image_rgb(dir / "good.jpg", rgb);
  std::string png = finch::read_file(dir / "good.png");
  std::string jpg = finch::read_file(dir / "good.jpg");
  finch::write_file_atomic(dir / "cut.png", png.substr(0, png.size() / 2));
  finch::write_file_atomic(dir / "cut.jpg", jpg.substr(0, jpg.size() * 2 / 3));
  finch::write_file_atomic(dir / "garbage.jpg", "this is not an image at all");
  finch::write_file_atomic(dir / "empty.png", "");

  for (const std::string name : {"cut.png", "cut.jpg", "garbage.jpg", "empty.png", "missing.png"}) {
    SCOPED_TRACE(name);
    std::string message = finch::test::error_of([&] { read_image_rgb(dir / name); });
    EXPECT_NE(message.find((dir / name).string()), std::string::npos) << message;
  }
  EXPECT_NE(
      finch::test::error_of([&] { decode_image_rgb("garbage", "memory#3"); }).find("memory#3"),
      std::string::npos);
}

TEST(ImageIo, ImageExtensions) {
  for (const char* name : {"a.jpg", "b.JPEG", "c.png", "d.Bmp", "e.tif", "f.TIFF", "g.webp"})
    EXPECT_TRUE(finch::io::has_image_extension(name)) << name;
  for (const char* name : {"a.txt", "b", "c.png.txt", ".png", "d.gif", "e.csv"})
    EXPECT_FALSE(finch::io::has_image_extension(name)) << name;
}

TEST(ImageIo, WriteRejectsBadInput) {
  finch::test::TempDir dir;
  EXPECT_THROW(finch::io::write_image_rgb(dir / "x.txt", pattern_rgb(2, 2)), finch::Error);
  EXPECT_THROW(finch::io::write_image_rgb(dir / "x.png", cv::Mat(2, 2, CV_8UC1)), finch::Error);
  EXPECT_FALSE(fs::exists(dir / "x.png"));
}

// TIFF keeps its size in the first image directory: read from there, so a TIFF bomb is
// refused before decoding like a PNG one, and a TIFF whose directory is unreadable too.
TEST(ImageIo, TiffSizeIsReadAndBombsAreRefused) {
  finch::test::TempDir dir;
  finch::io::write_image_rgb(dir / "x.tif", pattern_rgb(7, 11));
  const std::string tiff = finch::read_file(dir / "x.tif");
  const auto size = finch::io::declared_image_size(tiff);
  ASSERT_TRUE(size.has_value());
  EXPECT_EQ(size->width, 11);
  EXPECT_EQ(size->height, 7);
  EXPECT_EQ(decode_image_rgb(tiff, "x.tif", 77).size(), cv::Size(11, 7));
  EXPECT_CONTAINS(finch::test::error_of([&] { decode_image_rgb(tiff, "x.tif", 76); }),
                  "x.tif: the image declares 11 x 7 = 77 pixels, more than the limit of 76");

  // A little-endian TIFF whose one directory declares 30000 x 30000 (LONG values).
  std::string bomb("II*\0\x08\0\0\0\x02\0", 10);
  bomb += std::string("\x00\x01\x04\x00\x01\0\0\0\x30\x75\0\0", 12);  // 256 ImageWidth
  bomb += std::string("\x01\x01\x04\x00\x01\0\0\0\x30\x75\0\0", 12);  // 257 ImageLength
  bomb += std::string(4, '\0');
  EXPECT_CONTAINS(finch::test::error_of([&] { decode_image_rgb(bomb, "bomb.tif"); }),
                  "30000 x 30000 = 900000000 pixels");
  EXPECT_CONTAINS(finch::test::error_of(
                      [&] { decode_image_rgb(std::string("MM\0*\xff\xff\xff\xff", 8), "t"); }),
                  "a TIFF file without a readable size");
}

// imdecode also reads PPM, PFM, Sun raster, Radiance HDR, OpenEXR and JPEG 2000, whose
// headers finch does not check against the pixel limit (the last three compress, so a small
// file can declare a huge image; a 20-byte PPM header makes OpenCV reserve 2.7 GB before it
// finds the pixels missing). Only the listed formats reach the decoder.
TEST(ImageIo, FormatsOutsideTheListAreRefusedBeforeDecoding) {
  const std::string ppm_bomb = "P6\n30000 30000\n255\n";
  EXPECT_CONTAINS(finch::test::error_of([&] { decode_image_rgb(ppm_bomb, "bomb.ppm"); }),
                  "bomb.ppm (not a JPEG, PNG, BMP, TIFF or WebP file, or corrupt)");
  cv::Mat bgr(4, 4, CV_8UC3, cv::Scalar(1, 2, 3));
  std::vector<uchar> ppm;
  ASSERT_TRUE(cv::imencode(".ppm", bgr, ppm));  // a valid PPM is refused as well
  EXPECT_THROW(decode_image_rgb(std::string(ppm.begin(), ppm.end()), "x.ppm"), finch::Error);
}
