#include "finch/io/image.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <fstream>
#include <limits>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <string_view>
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

bool starts_with(const std::string& bytes, std::string_view magic) {
  return bytes.size() >= magic.size() && std::memcmp(bytes.data(), magic.data(), magic.size()) == 0;
}

bool is_tiff(const std::string& bytes) {
  return starts_with(bytes, std::string_view("II*\0", 4)) ||
         starts_with(bytes, std::string_view("MM\0*", 4));
}

// OpenCV's imdecode also decodes PPM/PGM, PFM, Sun raster, Radiance HDR, OpenEXR and JPEG
// 2000, whose headers finch does not read (so the pixel limit could not apply) and which no
// fine-grained dataset uses. Only the formats the documentation lists are handed to it.
bool is_supported_format(const std::string& bytes) {
  return starts_with(bytes, "\xFF\xD8") || starts_with(bytes, "\x89PNG") ||
         starts_with(bytes, "BM") || is_tiff(bytes) ||
         (starts_with(bytes, "RIFF") && bytes.size() >= 12 && bytes.compare(8, 4, "WEBP") == 0);
}

}  // namespace

cv::Mat decode_image_rgb(const std::string& bytes, const std::string& source, int64_t max_pixels) {
  if (bytes.empty()) throw Error("empty image file: " + source);
  if (!is_supported_format(bytes))
    throw Error("cannot decode image " + source +
                " (not a JPEG, PNG, BMP, TIFF or WebP file, or corrupt)");
  check_pixel_limit(bytes, source, max_pixels);
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

cv::Mat read_image_rgb(const fs::path& path, int64_t max_pixels) {
  return decode_image_rgb(read_file(path), path.string(), max_pixels);
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

std::optional<cv::Size> declared_image_size(const std::string& bytes) {
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  auto be16 = [&](size_t i) { return static_cast<int64_t>(b[i] << 8 | b[i + 1]); };
  auto be32 = [&](size_t i) { return be16(i) << 16 | be16(i + 2); };
  auto le16 = [&](size_t i) { return static_cast<int64_t>(b[i] | b[i + 1] << 8); };
  auto le32 = [&](size_t i) { return le16(i) | le16(i + 2) << 16; };
  auto size_of = [](int64_t w, int64_t h) -> std::optional<cv::Size> {
    if (w <= 0 || h <= 0 || w > (int64_t{1} << 31) - 1 || h > (int64_t{1} << 31) - 1)
      return std::nullopt;
    return cv::Size(static_cast<int>(w), static_cast<int>(h));
  };
  if (n >= 24 && b[0] == 0x89 && std::memcmp(b + 1, "PNG", 3) == 0 &&
      std::memcmp(b + 12, "IHDR", 4) == 0)
    return size_of(be32(16), be32(20));
  if (n >= 10 && (std::memcmp(b, "GIF87a", 6) == 0 || std::memcmp(b, "GIF89a", 6) == 0))
    return size_of(le16(6), le16(8));
  if (n >= 26 && b[0] == 'B' && b[1] == 'M') {
    if (le32(14) == 12) return size_of(le16(18), le16(20));  // OS/2 header: 16-bit sides
    const int64_t h = static_cast<int32_t>(le32(22));        // negative: top-down rows
    return size_of(static_cast<int32_t>(le32(18)), h < 0 ? -h : h);
  }
  if (n >= 30 && std::memcmp(b, "RIFF", 4) == 0 && std::memcmp(b + 8, "WEBP", 4) == 0) {
    if (std::memcmp(b + 12, "VP8X", 4) == 0)
      return size_of(1 + (b[24] | b[25] << 8 | b[26] << 16),
                     1 + (b[27] | b[28] << 8 | b[29] << 16));
    if (std::memcmp(b + 12, "VP8L", 4) == 0 && n >= 25) {
      const uint32_t bits = static_cast<uint32_t>(le32(21));
      return size_of(1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF));
    }
    if (std::memcmp(b + 12, "VP8 ", 4) == 0) return size_of(le16(26) & 0x3FFF, le16(28) & 0x3FFF);
    return std::nullopt;
  }
  if (n >= 8 && is_tiff(bytes)) {
    // TIFF: ImageWidth (256) and ImageLength (257) in the first IFD (the page OpenCV reads).
    const bool little = b[0] == 'I';
    auto u16 = [&](size_t i) { return little ? le16(i) : be16(i); };
    auto u32 = [&](size_t i) { return little ? le32(i) : be32(i); };
    const size_t ifd = static_cast<size_t>(u32(4));
    if (ifd > n || n - ifd < 2) return std::nullopt;
    const size_t entries = static_cast<size_t>(u16(ifd));
    int64_t width = -1, height = -1;
    for (size_t k = 0; k < entries && ifd + 2 + 12 * (k + 1) <= n; ++k) {
      const size_t e = ifd + 2 + 12 * k;
      const int64_t tag = u16(e), type = u16(e + 2);
      const int64_t value = type == 3 ? u16(e + 8) : type == 4 ? u32(e + 8) : -1;
      if (tag == 256) width = value;
      if (tag == 257) height = value;
    }
    return size_of(width, height);
  }
  if (n < 4 || b[0] != 0xFF || b[1] != 0xD8) return std::nullopt;
  // JPEG: walk the segments to the first start-of-frame (an Exif orientation may swap the
  // sides, which does not change the pixel count).
  size_t i = 2;
  while (i + 4 <= n) {
    if (b[i] != 0xFF) return std::nullopt;
    while (i < n && b[i] == 0xFF) ++i;
    if (i >= n) return std::nullopt;
    const int marker = b[i++];
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;
    if (i + 2 > n) return std::nullopt;
    const int64_t length = be16(i);
    if (length < 2) return std::nullopt;
    if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
      if (i + 7 > n) return std::nullopt;
      return size_of(be16(i + 5), be16(i + 3));
    }
    i += static_cast<size_t>(length);
  }
  return std::nullopt;
}

void check_pixel_limit(const std::string& bytes, const std::string& source, int64_t max_pixels) {
  if (max_pixels <= 0) return;
  const auto size = declared_image_size(bytes);
  // A TIFF's size is only in its directory: without one it cannot be bounded, so refuse it.
  if (!size && is_tiff(bytes))
    throw Error("cannot decode image " + source + " (a TIFF file without a readable size)");
  if (size && static_cast<int64_t>(size->width) * size->height > max_pixels)
    throw Error(
        fmt::format("{}: the image declares {} x {} = {} pixels, more than the limit of "
                    "{} (a decompression bomb, or raise --max-pixels)",
                    source, size->width, size->height,
                    static_cast<int64_t>(size->width) * size->height, max_pixels));
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
