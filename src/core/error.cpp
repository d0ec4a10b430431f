#include "finch/core/error.h"

namespace finch {

Error line_error(const std::string& file, size_t line_number, const std::string& message,
                 const std::string& line_text) {
  std::string shown = line_text.size() > 200 ? line_text.substr(0, 200) + "..." : line_text;
  return Error(file + ":" + std::to_string(line_number) + ": " + message + "\n  > " + shown);
}

}  // namespace finch
