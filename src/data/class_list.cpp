#include "finch/data/class_list.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <fstream>

#include "finch/core/error.h"

namespace finch::data {

namespace {

std::string trim(const std::string& s) {
  const auto begin = s.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos) return "";
  return s.substr(begin, s.find_last_not_of(" \t\r\n") - begin + 1);
}

bool parse_index(const std::string& s, int64_t& value) {
  const char* end = s.data() + s.size();
  auto [ptr, error] = std::from_chars(s.data(), end, value);
  return error == std::errc() && ptr == end && !s.empty();
}

std::string some_names(const std::vector<std::string>& names) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < 8; ++i) out += (i ? ", " : "") + names[i];
  return names.size() > 8 ? out + ", ..." : out;
}

}  // namespace

std::vector<int64_t> parse_class_list(const std::string& spec,
                                      const std::vector<std::string>& names,
                                      const std::string& what) {
  std::vector<std::string> entries;
  if (!spec.empty() && spec[0] == '@') {
    std::ifstream in(spec.substr(1));
    if (!in) throw Error(what + ": cannot read the class list file " + spec.substr(1));
    for (std::string line; std::getline(in, line);)
      if (!trim(line).empty()) entries.push_back(trim(line));
  } else {
    size_t begin = 0;
    while (begin <= spec.size()) {
      const size_t comma = std::min(spec.find(',', begin), spec.size());
      if (!trim(spec.substr(begin, comma - begin)).empty())
        entries.push_back(trim(spec.substr(begin, comma - begin)));
      begin = comma + 1;
    }
  }
  if (entries.empty()) throw Error(what + ": the class list is empty");
  const auto n = static_cast<int64_t>(names.size());
  std::vector<int64_t> out;
  for (const auto& entry : entries) {
    auto it = std::find(names.begin(), names.end(), entry);
    if (it != names.end()) {
      out.push_back(it - names.begin());
      continue;
    }
    int64_t index = 0, end = 0;
    const auto colon = entry.find(':');
    if (colon == std::string::npos && parse_index(entry, index) && index >= 0 && index < n) {
      out.push_back(index);
      continue;
    }
    if (colon != std::string::npos && parse_index(trim(entry.substr(0, colon)), index) &&
        parse_index(trim(entry.substr(colon + 1)), end) && 0 <= index && index < end && end <= n) {
      for (int64_t c = index; c < end; ++c) out.push_back(c);
      continue;
    }
    throw Error(fmt::format(
        "{}: '{}' is not a class of the dataset: give names, indices in [0, {}) or ranges "
        "begin:end (classes: {})",
        what, entry, n, some_names(names)));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace finch::data
