#pragma once
// Image decoding at the boundary: every image enters finch as 8-bit RGB (in that order).
#include <cstdint>
#include <filesystem>
#include <opencv2/core.hpp>
#include <optional>
#include <string>

namespace finch::io {

/// Images declaring more pixels than this are refused before decoding unless a caller passes
/// another limit: PIL's decompression-bomb error threshold (2 x 89,478,485), ~13,400 px square.
inline constexpr int64_t kDefaultMaxPixels = 178956970;

/// Decodes an image file (JPEG, PNG, BMP, TIFF, WebP; grey, RGBA, 16-bit, CMYK; EXIF
/// orientation applied) to an HxWx3 uint8 RGB matrix. Throws finch::Error naming the path
/// when the file is missing, empty, of another format (checked by its magic bytes) or cannot
/// be decoded, or when its header declares more than `max_pixels` pixels (checked before
/// decoding; 0 = no limit).
cv::Mat read_image_rgb(const std::filesystem::path& path, int64_t max_pixels = kDefaultMaxPixels);

/// Decodes encoded image bytes (same rules as read_image_rgb); `source` names them in errors.
cv::Mat decode_image_rgb(const std::string& bytes, const std::string& source,
                         int64_t max_pixels = kDefaultMaxPixels);

/// Width and height from a PNG or JPEG header without decoding; nullopt for other files, a
/// JPEG with an Exif block (its orientation may swap the sides) or a file that cannot be read
/// (callers fall back to read_image_rgb).
std::optional<cv::Size> read_image_size(const std::filesystem::path& path);

/// Width and height that encoded image bytes declare in their header (PNG, JPEG, BMP, GIF,
/// WebP, TIFF's first directory), read without decoding; nullopt when the header is not one
/// of these or is cut short.
std::optional<cv::Size> declared_image_size(const std::string& bytes);

/// Refuses a decompression bomb before it is decoded: throws finch::Error naming `source`
/// when the header declares more than `max_pixels` pixels (0: no limit).
void check_pixel_limit(const std::string& bytes, const std::string& source, int64_t max_pixels);

/// True when the extension is one finch treats as an image (case-insensitive).
bool has_image_extension(const std::filesystem::path& path);

/// Writes an RGB8 image (PNG/JPEG by extension) atomically.
void write_image_rgb(const std::filesystem::path& path, const cv::Mat& rgb);

}  // namespace finch::io
