#include "finch/core/csv.h"

#include <cctype>

#include "finch/core/error.h"

namespace finch {

namespace {

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

}  // namespace

std::vector<std::string> split_csv_line(const std::string& line, const std::string& file,
                                        size_t line_no) {
  std::vector<std::string> fields;
  size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::string field;
    if (i < line.size() && line[i] == '"') {
      for (++i;; ++i) {
        if (i >= line.size()) throw line_error(file, line_no, "unterminated quoted field", line);
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            field += '"';
            ++i;
          } else {
            break;
          }
        } else {
          field += line[i];
        }
      }
      ++i;  // closing quote
      while (i < line.size() && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r')) ++i;
      if (i < line.size() && line[i] != ',')
        throw line_error(file, line_no, "unexpected text after a quoted field", line);
    } else {
      size_t end = line.find(',', i);
      field = trim(line.substr(i, end == std::string::npos ? std::string::npos : end - i));
      i = end == std::string::npos ? line.size() : end;
    }
    fields.push_back(std::move(field));
    if (i >= line.size()) return fields;
    ++i;  // the comma
  }
}

std::string csv_field(const std::string& field) {
  const bool blank_edge =
      !field.empty() && (std::isspace(static_cast<unsigned char>(field.front())) ||
                         std::isspace(static_cast<unsigned char>(field.back())));
  if (!blank_edge && field.find_first_of(",\"\r\n") == std::string::npos) return field;
  std::string out = "\"";
  for (char c : field) out += c == '"' ? std::string("\"\"") : std::string(1, c);
  return out + "\"";
}

}  // namespace finch
