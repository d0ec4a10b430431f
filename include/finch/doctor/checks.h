#pragma once
// Per-image facts for `finch data doctor`: what a file's bytes say (container, truncation,
// colour mode, bit depth, Exif orientation), what its pixels say (brightness, contrast,
// entropy, sharpness, the CleanVision set of quality signals) and two fingerprints for the
// duplicate search (a hash of the decoded pixels and a DCT perceptual hash).
#include <array>
#include <cstdint>
#include <filesystem>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

namespace finch::doctor {

/// Where an image stops being usable or trustworthy. Every threshold is a config key
/// (doctor.*) and documented in docs/data-doctor.md with how it was chosen.
struct Thresholds {
  double blur = 0.10;              // sharpness (see ImageFacts) below: blurry
  double dark = 0.20;              // 99th brightness percentile below: dark
  double bright = 0.80;            // 1st brightness percentile above: bright
  double low_information = 1.0;    // grey-level entropy in bits below: low information
  double near_constant = 0.02;     // grey standard deviation (0..1) below: near-constant
  int min_side = 16;               // shorter side in pixels below: too small
  double max_aspect = 4.0;         // longer / shorter side above: extreme aspect ratio
  int64_t max_pixels = 178956970;  // declared pixels above: too large (never decoded)
};

struct ImageFacts {
  // From the bytes (files only).
  int64_t bytes = -1;               // file size; -1 when the sample has no file of its own
  std::string container;            // png, jpeg, bmp, gif, webp, tiff; empty when unknown
  bool extension_mismatch = false;  // the extension names another container
  bool truncated = false;           // a JPEG without its end marker, a PNG without IEND
  std::string mode;                 // gray, gray+alpha, rgb, rgba, palette, cmyk, ycck, ...
  int bit_depth = 8;                // bits per channel
  int exif_orientation = 0;         // 0: no Exif orientation tag, else 1..8
  // From the pixels.
  bool decoded = false;
  std::string error;       // why decoding failed
  bool too_large = false;  // declared more than max_pixels: not decoded
  int width = 0, height = 0;
  double brightness_p01 = 0, brightness_p99 = 0;  // grey-level percentiles, 0..1
  double contrast = 0;                            // grey standard deviation, 0..1
  double entropy = 0;                             // bits, of the 256-bin grey histogram
  /// Variance of the Laplacian over the grey variance: high-frequency energy relative to the
  /// image's own contrast, so that dim or low-contrast images are not called blurry.
  double sharpness = 0;
  std::string pixel_hash;                 // SHA-256 of the decoded RGB pixels and their size
  uint64_t phash = 0, phash_flipped = 0;  // of the image and of its mirror image
  /// 16 x 16 grey area-resized thumbnail: pHash candidates are confirmed on it, because on
  /// small or simple images (28 px clothing silhouettes) different pictures share hashes.
  std::array<uint8_t, 256> thumbnail{};
};

/// Mean absolute grey-level difference (0..255) of two thumbnails, the second one also
/// mirrored: the smaller of the two.
double thumbnail_difference(const ImageFacts& a, const ImageFacts& b);

/// Reads and inspects one image file. Never throws for a bad file: `decoded` is false and
/// `error` says why (missing, empty, undecodable, truncated, too large).
ImageFacts inspect_file(const std::filesystem::path& path, int64_t max_pixels);

/// Inspects decoded RGB8 pixels (the pixel half of inspect_file; for formats without files).
void inspect_pixels(const cv::Mat& rgb, ImageFacts& facts);

/// 64-bit DCT perceptual hash (pHash): grey, 32 x 32 area resize, the 8 x 8 lowest
/// frequencies of its DCT, each bit set where the coefficient is above their median (the DC
/// term left out of the median). Robust to resizing, recompression and small crops.
uint64_t perceptual_hash(const cv::Mat& rgb);

inline int hamming(uint64_t a, uint64_t b) { return __builtin_popcountll(a ^ b); }

/// One problem of one image.
struct ImageFinding {
  std::string reason;  // zero_byte, truncated, undecodable, wrong_extension, too_small, ...
  std::string detail;  // human-readable: the measured value and the threshold
  double score = 0;    // the measured value (for ranking)
};

/// The integrity and quality problems the facts show. `majority_mode` / `majority_depth` are
/// the dataset's most common colour mode and bit depth: a grey image in a colour dataset is
/// flagged, an all-grey dataset is not.
std::vector<ImageFinding> image_findings(const ImageFacts& facts, const Thresholds& thresholds,
                                         const std::string& majority_mode, int majority_depth);

}  // namespace finch::doctor
