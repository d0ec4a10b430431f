#include "finch/io/image.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <fstream>
#include <limits>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <vector>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"

namespace finch::io {

namespace fs = std::filesystem;

namespace {

std::string lower_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}

// libjpeg decodes a truncated JPEG with only a warning and grey-fills the missing rows, so
// such files would enter training silently (PIL refuses them by default). A complete JPEG
// has an EOI marker (FF D9) after its last start-of-scan (FF DA); the entropy-coded data
// in between never contains 0xFF followed by a marker byte (it is stuffed as FF 00).
bool jpeg_is_truncated(const std::string& bytes) {
  if (bytes.size() < 2 || static_cast<unsigned char>(bytes[0]) != 0xFF ||
      static_cast<unsigned char>(bytes[1]) != 0xD8)
    return false;
  size_t sos = bytes.rfind("\xFF\xDA");
  if (sos == std::string::npos) return true;
  return bytes.find("\xFF\xD9", sos + 2) == std::string::npos;
}

}  // namespace

cv::Mat decode_image_rgb(const std::string& bytes, const std::string& source) {
  if (bytes.empty()) throw Error("empty image file: " + source);
  if (jpeg_is_truncated(bytes)) throw Error("truncated JPEG image: " + source);
  if (bytes.size() > static_cast<size_t>(std::numeric_limits<int>::max()))
    throw Error("image file too large to decode: " + source);
  cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
  cv::Mat bgr;
  try {
    // IMREAD_COLOR applies the EXIF orientation, drops alpha and converts grey, CMYK and
    // 16-bit images to 8-bit BGR.
    bgr = cv::imdecode(encoded, cv::IMREAD_COLOR);
  } catch (const cv::Exception& e) {
    throw Error("cannot decode image " + source + ": " + e.what());
  }
  if (bgr.empty() || bgr.type() != CV_8UC3)
    throw Error("cannot decode image " + source + " (not an image, or corrupt)");
  cv::Mat rgb;
  cv::cvtColor(bgr, rgb, cv::COLOR_BGR2RGB);
  return rgb;
}

cv::Mat read_image_rgb(const fs::path& path) {
  return decode_image_rgb(read_file(path), path.string());
}

std::optional<cv::Size> read_image_size(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  unsigned char h[24];
  if (!in.read(reinterpret_cast<char*>(h), 2)) return std::nullopt;
  auto be16 = [](const unsigned char* p) { return (p[0] << 8) | p[1]; };
  if (h[0] == 0x89 && h[1] == 'P') {
    if (!in.read(reinterpret_cast<char*>(h) + 2, 22) || std::memcmp(h + 12, "IHDR", 4) != 0)
      return std::nullopt;
    return cv::Size((be16(h + 16) << 16) | be16(h + 18), (be16(h + 20) << 16) | be16(h + 22));
  }
  if (h[0] != 0xFF || h[1] != 0xD8) return std::nullopt;
  while (true) {
    int c = in.get();
    if (c != 0xFF) return std::nullopt;
    while (c == 0xFF) c = in.get();
    if (c == EOF) return std::nullopt;
    if (c == 0x01 || (c >= 0xD0 && c <= 0xD8)) continue;  // markers without a length
    unsigned char len[2];
    if (!in.read(reinterpret_cast<char*>(len), 2)) return std::nullopt;
    const int length = be16(len);
    if (length < 2) return std::nullopt;
    if (c == 0xE1) return std::nullopt;  // Exif: let the decoder apply the orientation
    if (c >= 0xC0 && c <= 0xCF && c != 0xC4 && c != 0xC8 && c != 0xCC) {
      unsigned char sof[5];
      if (!in.read(reinterpret_cast<char*>(sof), 5)) return std::nullopt;
      return cv::Size(be16(sof + 3), be16(sof + 1));
    }
    in.seekg(length - 2, std::ios::cur);
  }
}

bool has_image_extension(const fs::path& path) {
  static const std::array<const char*, 7> kExtensions = {".jpg", ".jpeg", ".png", ".bmp",
                                                         ".tif", ".tiff", ".webp"};
  std::string ext = lower_extension(path);
  return std::find(kExtensions.begin(), kExtensions.end(), ext) != kExtensions.end();
}

void write_image_rgb(const fs::path& path, const cv::Mat& rgb) {
  if (rgb.empty() || rgb.type() != CV_8UC3)
    throw Error("write_image_rgb: " + path.string() + ": expected a non-empty 8-bit RGB image");
  std::string ext = lower_extension(path);
  if (ext.empty() || !has_image_extension(path))
    throw Error("write_image_rgb: " + path.string() + ": unsupported image extension");
  cv::Mat bgr;
  cv::cvtColor(rgb, bgr, cv::COLOR_RGB2BGR);
  std::vector<uchar> encoded;
  bool ok = false;
  try {
    ok = cv::imencode(ext, bgr, encoded);
  } catch (const cv::Exception& e) {
    throw Error("cannot encode image " + path.string() + ": " + e.what());
  }
  if (!ok) throw Error("cannot encode image " + path.string());
  write_file_atomic(path, std::string(encoded.begin(), encoded.end()));
}

}  // namespace finch::io
