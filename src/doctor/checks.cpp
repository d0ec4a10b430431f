#include "finch/doctor/checks.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/core/sha256.h"
#include "finch/io/image.h"

namespace finch::doctor {

namespace fs = std::filesystem;

namespace {

std::string container_of(const std::string& b) {
  auto starts = [&](std::string_view magic) {
    return b.size() >= magic.size() && std::memcmp(b.data(), magic.data(), magic.size()) == 0;
  };
  if (starts("\xFF\xD8")) return "jpeg";
  if (starts("\x89PNG\r\n\x1A\n")) return "png";
  if (starts("GIF87a") || starts("GIF89a")) return "gif";
  if (starts("BM")) return "bmp";
  if (starts(std::string_view("II*\0", 4)) || starts(std::string_view("MM\0*", 4))) return "tiff";
  if (starts("RIFF") && b.size() >= 12 && b.compare(8, 4, "WEBP") == 0) return "webp";
  return "";
}

std::string container_of_extension(const fs::path& path) {
  std::string ext = path.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (ext == ".jpg" || ext == ".jpeg" || ext == ".jpe" || ext == ".jfif") return "jpeg";
  if (ext == ".png") return "png";
  if (ext == ".gif") return "gif";
  if (ext == ".bmp" || ext == ".dib") return "bmp";
  if (ext == ".tif" || ext == ".tiff") return "tiff";
  if (ext == ".webp") return "webp";
  return "";
}

// PNG: colour type and bit depth from IHDR; complete files end with an IEND chunk.
void read_png_header(const std::string& b, ImageFacts& facts) {
  if (b.size() >= 26 && b.compare(12, 4, "IHDR") == 0) {
    facts.bit_depth = static_cast<unsigned char>(b[24]);
    switch (static_cast<unsigned char>(b[25])) {
      case 0:
        facts.mode = "gray";
        break;
      case 2:
        facts.mode = "rgb";
        break;
      case 3:
        facts.mode = "palette";
        facts.bit_depth = 8;
        break;
      case 4:
        facts.mode = "gray+alpha";
        break;
      case 6:
        facts.mode = "rgba";
        break;
      default:
        facts.mode = "unknown";
    }
  }
  facts.truncated = b.rfind("IEND") == std::string::npos;
}

// JPEG: walk the marker segments up to the first scan. SOFn gives the precision and the
// number of components (1 grey, 3 colour, 4 CMYK or YCCK per the Adobe APP14 transform);
// an APP1 Exif block may carry an orientation (tag 0x0112 of IFD0).
void read_jpeg_header(const std::string& s, ImageFacts& facts) {
  const auto* b = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  auto be16 = [&](size_t i) { return static_cast<int>(b[i] << 8 | b[i + 1]); };
  int adobe_transform = -1, components = 0;
  size_t i = 2;
  while (i + 4 <= n) {
    if (b[i] != 0xFF) break;
    while (i < n && b[i] == 0xFF) ++i;
    if (i >= n) break;
    const int marker = b[i++];
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD8)) continue;
    if (marker == 0xD9 || marker == 0xDA || i + 2 > n) break;
    const size_t length = static_cast<size_t>(be16(i));
    if (length < 2 || i + length > n) break;
    const size_t body = i + 2, body_size = length - 2;
    if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC &&
        body_size >= 6) {
      facts.bit_depth = b[body];
      components = b[body + 5];
    } else if (marker == 0xEE && body_size >= 12 && std::memcmp(b + body, "Adobe", 5) == 0) {
      adobe_transform = b[body + 11];
    } else if (marker == 0xE1 && body_size >= 14 && std::memcmp(b + body, "Exif\0\0", 6) == 0) {
      const size_t tiff = body + 6, end = body + body_size;
      const bool little = b[tiff] == 'I';
      auto u16 = [&](size_t k) {
        return little ? static_cast<uint32_t>(b[k] | b[k + 1] << 8)
                      : static_cast<uint32_t>(b[k] << 8 | b[k + 1]);
      };
      auto u32 = [&](size_t k) {
        return little ? (u16(k) | u16(k + 2) << 16) : (u16(k) << 16 | u16(k + 2));
      };
      if (tiff + 8 <= end) {
        const size_t ifd = tiff + u32(tiff + 4);
        if (ifd >= tiff && ifd + 2 <= end) {
          const uint32_t entries = u16(ifd);
          for (uint32_t e = 0; e < entries && ifd + 2 + 12 * (e + 1) <= end; ++e) {
            const size_t entry = ifd + 2 + 12 * e;
            if (u16(entry) == 0x0112) facts.exif_orientation = static_cast<int>(u16(entry + 8));
          }
        }
      }
    }
    i += length;
  }
  facts.mode = components == 1   ? "gray"
               : components == 3 ? "rgb"
               : components == 4 ? (adobe_transform == 2 ? "ycck" : "cmyk")
                                 : "unknown";
  size_t sos = s.rfind("\xFF\xDA");
  facts.truncated = sos == std::string::npos || s.find("\xFF\xD9", sos + 2) == std::string::npos;
}

// Other containers: mode and depth from an unchanged decode.
void read_decoded_mode(const std::string& bytes, ImageFacts& facts) {
  try {
    cv::Mat encoded(1, static_cast<int>(bytes.size()), CV_8UC1, const_cast<char*>(bytes.data()));
    const cv::Mat raw = cv::imdecode(encoded, cv::IMREAD_UNCHANGED);
    if (raw.empty()) return;
    facts.mode = raw.channels() == 1   ? "gray"
                 : raw.channels() == 2 ? "gray+alpha"
                 : raw.channels() == 3 ? "rgb"
                                       : "rgba";
    facts.bit_depth = raw.depth() == CV_16U ? 16 : raw.depth() == CV_32F ? 32 : 8;
  } catch (const cv::Exception&) {
  }
}

double percentile(const std::vector<double>& cumulative, double q) {
  for (size_t v = 0; v < cumulative.size(); ++v)
    if (cumulative[v] >= q) return static_cast<double>(v) / 255.0;
  return 1.0;
}

}  // namespace

uint64_t perceptual_hash(const cv::Mat& rgb) {
  cv::Mat gray, small, f, freq;
  cv::cvtColor(rgb, gray, cv::COLOR_RGB2GRAY);
  cv::resize(gray, small, cv::Size(32, 32), 0, 0, cv::INTER_AREA);
  small.convertTo(f, CV_32F);
  cv::dct(f, freq);
  float low[64];
  for (int y = 0; y < 8; ++y)
    for (int x = 0; x < 8; ++x) low[y * 8 + x] = freq.at<float>(y, x);
  float sorted[63];
  std::copy(low + 1, low + 64, sorted);
  std::nth_element(sorted, sorted + 31, sorted + 63);
  const float median = sorted[31];
  uint64_t hash = 0;
  for (int k = 0; k < 64; ++k)
    if (low[k] > median) hash |= uint64_t{1} << k;
  return hash;
}

void inspect_pixels(const cv::Mat& rgb, ImageFacts& facts) {
  facts.decoded = true;
  facts.width = rgb.cols;
  facts.height = rgb.rows;
  cv::Mat gray;
  cv::cvtColor(rgb, gray, cv::COLOR_RGB2GRAY);
  // Grey-level histogram: percentiles, entropy.
  std::vector<double> histogram(256, 0.0);
  for (int y = 0; y < gray.rows; ++y) {
    const uint8_t* row = gray.ptr<uint8_t>(y);
    for (int x = 0; x < gray.cols; ++x) histogram[row[x]] += 1;
  }
  const double total = static_cast<double>(gray.total());
  std::vector<double> cumulative(256);
  double running = 0, entropy = 0;
  for (int v = 0; v < 256; ++v) {
    const double p = histogram[v] / total;
    running += p;
    cumulative[v] = running;
    if (p > 0) entropy -= p * std::log2(p);
  }
  facts.brightness_p01 = percentile(cumulative, 0.01);
  facts.brightness_p99 = percentile(cumulative, 0.99);
  facts.entropy = entropy;
  // Sharpness on at most 512 px (photos of 4000 px are not sharper for being large).
  cv::Mat measured = gray;
  const int longer = std::max(gray.cols, gray.rows);
  if (longer > 512) {
    const double scale = 512.0 / longer;
    cv::resize(gray, measured, cv::Size(), scale, scale, cv::INTER_AREA);
  }
  cv::Scalar mean, sd, lap_mean, lap_sd;
  cv::meanStdDev(measured, mean, sd);
  facts.contrast = sd[0] / 255.0;
  cv::Mat laplacian;
  cv::Laplacian(measured, laplacian, CV_64F);
  cv::meanStdDev(laplacian, lap_mean, lap_sd);
  facts.sharpness = sd[0] > 1e-9 ? (lap_sd[0] * lap_sd[0]) / (sd[0] * sd[0]) : 0.0;
  // Fingerprints.
  cv::Mat contiguous = rgb.isContinuous() ? rgb : rgb.clone();
  std::string pixels = fmt::format("{}x{}:", rgb.cols, rgb.rows);
  pixels.append(reinterpret_cast<const char*>(contiguous.data), contiguous.total() * 3);
  facts.pixel_hash = sha256_hex(pixels);
  cv::Mat thumb;
  cv::resize(gray, thumb, cv::Size(16, 16), 0, 0, cv::INTER_AREA);
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) facts.thumbnail[y * 16 + x] = thumb.at<uint8_t>(y, x);
  facts.phash = perceptual_hash(rgb);
  cv::Mat mirrored;
  cv::flip(rgb, mirrored, 1);
  facts.phash_flipped = perceptual_hash(mirrored);
}

double thumbnail_difference(const ImageFacts& a, const ImageFacts& b) {
  int64_t same = 0, mirrored = 0;
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 16; ++x) {
      const int v = a.thumbnail[y * 16 + x];
      same += std::abs(v - b.thumbnail[y * 16 + x]);
      mirrored += std::abs(v - b.thumbnail[y * 16 + 15 - x]);
    }
  return static_cast<double>(std::min(same, mirrored)) / 256.0;
}

ImageFacts inspect_file(const fs::path& path, int64_t max_pixels) {
  ImageFacts facts;
  std::string bytes;
  try {
    bytes = read_file(path);
  } catch (const Error& e) {
    facts.error = e.what();
    return facts;
  }
  facts.bytes = static_cast<int64_t>(bytes.size());
  if (bytes.empty()) {
    facts.error = "the file is empty";
    return facts;
  }
  facts.container = container_of(bytes);
  const std::string by_extension = container_of_extension(path);
  facts.extension_mismatch =
      !facts.container.empty() && !by_extension.empty() && facts.container != by_extension;
  if (facts.container == "png")
    read_png_header(bytes, facts);
  else if (facts.container == "jpeg")
    read_jpeg_header(bytes, facts);
  else if (!facts.container.empty())
    read_decoded_mode(bytes, facts);
  if (const auto size = io::declared_image_size(bytes);
      size && max_pixels > 0 && int64_t{size->width} * size->height > max_pixels) {
    facts.too_large = true;
    facts.width = size->width;
    facts.height = size->height;
    facts.error =
        fmt::format("{} x {} pixels, above the limit of {}", size->width, size->height, max_pixels);
    return facts;
  }
  try {
    inspect_pixels(io::decode_image_rgb(bytes, path.string(), max_pixels), facts);
  } catch (const Error& e) {
    facts.error = e.what();
  }
  return facts;
}

std::vector<ImageFinding> image_findings(const ImageFacts& f, const Thresholds& t,
                                         const std::string& majority_mode, int majority_depth) {
  std::vector<ImageFinding> out;
  auto add = [&](const char* reason, std::string detail, double score) {
    out.push_back({reason, std::move(detail), score});
  };
  if (f.bytes == 0) {
    add("zero_byte", "the file is empty", 0);
    return out;
  }
  if (f.too_large) {
    add("too_large", f.error, double(f.width) * f.height);
    return out;
  }
  if (!f.decoded) {
    if (f.truncated)
      add("truncated",
          f.container == "png" ? "the PNG ends before its IEND chunk"
                               : "the JPEG ends before its EOI marker",
          0);
    else
      add("undecodable", f.error, 0);
    return out;
  }
  if (f.truncated) add("truncated", "the file ends before its end marker", 0);
  if (f.extension_mismatch) add("wrong_extension", "the bytes are a " + f.container + " file", 0);
  if (f.mode == "cmyk" || f.mode == "ycck")
    add("cmyk", f.mode + " JPEG: colours depend on the decoder's conversion", 0);
  else if (!f.mode.empty() && f.mode != majority_mode) {
    if (f.mode.find("alpha") != std::string::npos || f.mode == "rgba")
      add("alpha", f.mode + " in a dataset of mostly " + majority_mode + " images", 0);
    else if (f.mode == "gray" && majority_mode != "gray+alpha")
      add("grayscale", "grey in a dataset of mostly " + majority_mode + " images", 0);
  }
  if (f.bit_depth > 8 && majority_depth <= 8)
    add("high_bit_depth", fmt::format("{} bits per channel (decoded to 8)", f.bit_depth),
        f.bit_depth);
  if (f.exif_orientation > 1)
    add("exif_orientation",
        fmt::format("Exif orientation {}: finch rotates it, tools that ignore Exif do not",
                    f.exif_orientation),
        f.exif_orientation);
  const int shorter = std::min(f.width, f.height), longer = std::max(f.width, f.height);
  if (shorter < t.min_side)
    add("too_small",
        fmt::format("{} x {} px, shorter side below {}", f.width, f.height, t.min_side), shorter);
  if (shorter > 0 && double(longer) / shorter > t.max_aspect)
    add("extreme_aspect",
        fmt::format("{} x {} px, aspect ratio {:.1f} above {}", f.width, f.height,
                    double(longer) / shorter, t.max_aspect),
        double(longer) / shorter);
  if (f.contrast < t.near_constant) {
    // A flat image is all of dark / bright / low-information / blurry at once: one reason.
    add("near_constant",
        fmt::format("grey standard deviation {:.4f} below {}", f.contrast, t.near_constant),
        f.contrast);
    return out;
  }
  if (f.entropy < t.low_information)
    add("low_information",
        fmt::format("grey-level entropy {:.2f} bits below {}", f.entropy, t.low_information),
        f.entropy);
  if (f.brightness_p99 < t.dark)
    add("dark",
        fmt::format("99% of pixels darker than {:.3f} (threshold {})", f.brightness_p99, t.dark),
        f.brightness_p99);
  if (f.brightness_p01 > t.bright)
    add("bright",
        fmt::format("99% of pixels brighter than {:.3f} (threshold {})", f.brightness_p01,
                    t.bright),
        f.brightness_p01);
  if (f.sharpness < t.blur)
    add("blurry", fmt::format("sharpness {:.4f} below {}", f.sharpness, t.blur), f.sharpness);
  return out;
}

}  // namespace finch::doctor
