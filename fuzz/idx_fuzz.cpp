// libFuzzer target: read_idx (Fashion-MNIST / MNIST files, gzip or plain) on any bytes. It
// must read or throw finch::Error; what it reads holds exactly product(shape) bytes.
#include <cstdlib>
#include <string>
#include <vector>

#include "finch/core/error.h"
#include "finch/io/idx.h"
#include "fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static finch::fuzz::ScratchRoot scratch;
  scratch.reset({"data.idx"}, {std::string(reinterpret_cast<const char*>(data), size)});
  try {
    const finch::io::IdxArray array = finch::io::read_idx(scratch.root() / "data.idx");
    size_t count = 1;
    for (int64_t d : array.shape) {
      if (d < 0) std::abort();
      count *= static_cast<size_t>(d);
    }
    if (count != array.data.size()) std::abort();
  } catch (const finch::Error&) {
  }
  return 0;
}
