// libFuzzer target: base64_decode, which reads the images that clients of `finch serve` send
// in JSON bodies (`{"image": "<base64 or data: URL>"}`). Any text must decode or be refused
// (nullopt); a decoding is never longer than 3/4 of the text.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "finch/serve/http_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const auto bytes = finch::serve::base64_decode(text);
  if (bytes && bytes->size() > text.size() / 4 * 3 + 3) std::abort();
  return 0;
}
