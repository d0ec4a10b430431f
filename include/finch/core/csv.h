#pragma once
// One line of a CSV file (manifests, class hierarchies, attribute tables).
#include <cstddef>
#include <string>
#include <vector>

namespace finch {

/// Splits `line` into fields; quoted fields may hold commas and "" for a quote (RFC 4180,
/// minus line breaks inside quotes). Unquoted fields are trimmed. Throws finch::Error naming
/// `file` and `line_number` on an unterminated quote or text after a closing quote.
std::vector<std::string> split_csv_line(const std::string& line, const std::string& file,
                                        size_t line_number);

/// `field` as one CSV field: quoted (with "" for a quote) when it holds a comma, quote, line
/// break or leading / trailing blanks, so that split_csv_line reads it back unchanged.
std::string csv_field(const std::string& field);

}  // namespace finch
