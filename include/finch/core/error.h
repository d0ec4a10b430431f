#pragma once
// finch::Error is the one exception type for bad user input, files and configs.
// Its message is meant to be printed as-is to the user: say what is wrong and where.
#include <stdexcept>
#include <string>

namespace finch {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// Error about one line of a text file: "FILE:LINE: MESSAGE\n  > LINE_TEXT".
Error line_error(const std::string& file, size_t line_number, const std::string& message,
                 const std::string& line_text);

}  // namespace finch
