// libFuzzer target: image decoding as predict, eval, training and serve do it (OpenCV
// behind finch's format allow-list and pixel limit). Any bytes must decode or throw
// finch::Error; a decoded image is 3-channel 8-bit and within the pixel limit (which is
// checked from the header before decoding, so a bomb also shows as a slow or huge input).
#include <cstdint>
#include <cstdlib>
#include <opencv2/core.hpp>
#include <string>

#include "finch/core/error.h"
#include "finch/io/image.h"

namespace {
// Small enough that no accepted input can use more than a few hundred MB.
constexpr int64_t kMaxPixels = 4'000'000;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  (void)finch::io::declared_image_size(bytes);
  try {
    const cv::Mat rgb = finch::io::decode_image_rgb(bytes, "fuzz", kMaxPixels);
    if (rgb.empty() || rgb.type() != CV_8UC3) std::abort();
    if (static_cast<int64_t>(rgb.rows) * rgb.cols > kMaxPixels) std::abort();
  } catch (const finch::Error&) {
  }
  return 0;
}
