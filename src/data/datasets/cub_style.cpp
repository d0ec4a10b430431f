// Internal readers shared by the "cub" and "nabirds" formats (see cub_style.h).
#include "cub_style.h"

#include <algorithm>
#include <charconv>
#include <cmath>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"

namespace finch::data::cub_style {

void Line::fail(const std::string& message) const {
  throw line_error(*file, number, message, std::string(text));
}

void Line::expect_fields(size_t min, size_t max, const char* layout) const {
  if (fields.size() >= min && fields.size() <= max) return;
  fail(std::string("expected ") + layout + ", found " + std::to_string(fields.size()) + " field" +
       (fields.size() == 1 ? "" : "s"));
}

int64_t Line::integer(size_t k, const char* what) const {
  std::string_view f = fields.at(k);
  int64_t value = 0;
  auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), value);
  if (ec != std::errc() || end != f.data() + f.size())
    fail(std::string(what) + " is not an integer: '" + std::string(f) + "'");
  return value;
}

float Line::real(size_t k, const char* what) const {
  std::string_view f = fields.at(k);
  float value = 0;
  auto [end, ec] = std::from_chars(f.data(), f.data() + f.size(), value);
  if (ec != std::errc() || end != f.data() + f.size() || !std::isfinite(value))
    fail(std::string(what) + " is not a number: '" + std::string(f) + "'");
  return value;
}

std::string Line::rest() const {
  size_t p = text.find_first_of(" \t");
  if (p == std::string_view::npos) return "";
  p = text.find_first_not_of(" \t", p);
  if (p == std::string_view::npos) return "";
  std::string_view r = text.substr(p);
  r = r.substr(0, r.find_last_not_of(" \t") + 1);
  return std::string(r);
}

bool file_exists(const fs::path& file) {
  std::error_code ec;
  return fs::is_regular_file(file, ec);
}

void require_file(const fs::path& file, const std::string& format) {
  if (!file_exists(file)) throw Error(format + ": required file not found: " + file.string());
}

void for_each_line(const fs::path& file, const std::function<void(const Line&)>& visit) {
  const std::string bytes = read_file(file);
  const std::string name = file.string();
  Line line;
  line.file = &name;
  size_t pos = bytes.rfind("\xEF\xBB\xBF", 0) == 0 ? 3 : 0;
  for (size_t number = 1; pos < bytes.size(); ++number) {
    size_t end = bytes.find('\n', pos);
    if (end == std::string::npos) end = bytes.size();
    std::string_view text(bytes.data() + pos, end - pos);
    pos = end + 1;
    if (!text.empty() && text.back() == '\r') text.remove_suffix(1);
    line.number = number;
    line.text = text;
    line.fields.clear();
    for (size_t i = 0; i < text.size();) {
      i = text.find_first_not_of(" \t", i);
      if (i == std::string_view::npos) break;
      size_t j = text.find_first_of(" \t", i);
      if (j == std::string_view::npos) j = text.size();
      line.fields.push_back(text.substr(i, j - i));
      i = j;
    }
    if (!line.fields.empty()) visit(line);
  }
}

ImageList read_image_list(const fs::path& root) {
  ImageList images;
  const fs::path file = root / "images.txt";
  images.file = file.string();
  for_each_line(file, [&](const Line& line) {
    // Relative paths have no spaces in either benchmark; a third field means a bad line.
    line.expect_fields(2, 2, "<image_id> <relative path>");
    std::string id(line.fields[0]);
    if (!images.index.emplace(id, images.ids.size()).second)
      line.fail("image id " + id + " is listed twice");
    images.ids.push_back(std::move(id));
    images.paths.push_back(root / "images" / fs::path(std::string(line.fields[1])));
  });
  if (images.ids.empty()) throw Error(images.file + " lists no images");
  return images;
}

void for_each_image_line(const fs::path& file, const ImageList& images, bool once_per_image,
                         const std::function<void(const Line&, size_t)>& visit) {
  std::vector<bool> seen(once_per_image ? images.ids.size() : 0, false);
  // Lines come grouped by image (parts, attributes): remember the last lookup.
  std::string last_id;
  size_t last_pos = 0;
  for_each_line(file, [&](const Line& line) {
    size_t pos;
    if (!last_id.empty() && line.fields[0] == last_id) {
      pos = last_pos;
    } else {
      std::string id(line.fields[0]);
      auto it = images.index.find(id);
      if (it == images.index.end())
        line.fail("image id " + id + " is not listed in " + images.file);
      pos = last_pos = it->second;
      last_id = std::move(id);
    }
    if (once_per_image) {
      if (seen[pos]) line.fail("image id " + images.ids[pos] + " is listed twice");
      seen[pos] = true;
    }
    visit(line, pos);
  });
  if (once_per_image)
    for (size_t i = 0; i < seen.size(); ++i)
      if (!seen[i])
        throw Error("image id " + images.ids[i] + " is listed in " + images.file +
                    " but missing from " + file.string());
}

std::vector<int64_t> read_image_integers(const fs::path& file, const ImageList& images,
                                         const char* what, int64_t lo, int64_t hi) {
  std::vector<int64_t> values(images.ids.size(), 0);
  const std::string layout = std::string("<image_id> <") + what + ">";
  for_each_image_line(file, images, true, [&](const Line& line, size_t pos) {
    line.expect_fields(2, 2, layout.c_str());
    int64_t v = line.integer(1, what);
    if (v < lo || v > hi)
      line.fail(std::string(what) + " must be in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "], found " + std::to_string(v));
    values[pos] = v;
  });
  return values;
}

std::vector<int64_t> read_class_ids(const fs::path& file, const ImageList& images,
                                    const std::map<int64_t, std::string>& classes,
                                    const fs::path& classes_file) {
  std::vector<int64_t> ids(images.ids.size(), 0);
  for_each_image_line(file, images, true, [&](const Line& line, size_t pos) {
    line.expect_fields(2, 2, "<image_id> <class_id>");
    int64_t id = line.integer(1, "class_id");
    if (!classes.count(id))
      line.fail("class id " + std::to_string(id) + " is not listed in " + classes_file.string());
    ids[pos] = id;
  });
  return ids;
}

std::vector<Box> read_boxes(const fs::path& file, const ImageList& images) {
  std::vector<Box> boxes(images.ids.size());
  for_each_image_line(file, images, true, [&](const Line& line, size_t pos) {
    line.expect_fields(5, 5, "<image_id> <x> <y> <width> <height>");
    Box b{line.real(1, "x"), line.real(2, "y"), line.real(3, "width"), line.real(4, "height")};
    if (b.width <= 0 || b.height <= 0) line.fail("box width and height must be positive");
    boxes[pos] = b;
  });
  return boxes;
}

std::map<int64_t, std::string> read_id_names(const fs::path& file) {
  std::map<int64_t, std::string> names;
  for_each_line(file, [&](const Line& line) {
    line.expect_fields(2, SIZE_MAX, "<id> <name>");
    int64_t id = line.integer(0, "id");
    if (!names.emplace(id, line.rest()).second)
      line.fail("id " + std::to_string(id) + " is listed twice");
  });
  if (names.empty()) throw Error(file.string() + " lists no names");
  return names;
}

bool read_parts(const fs::path& root, const ImageList& images, std::vector<std::string>& names,
                std::vector<std::vector<PartLocation>>& locations) {
  const fs::path names_file = root / "parts" / "parts.txt";
  const fs::path locs_file = root / "parts" / "part_locs.txt";
  if (!file_exists(names_file) || !file_exists(locs_file)) return false;
  std::map<int64_t, std::string> by_id = read_id_names(names_file);
  std::map<int64_t, int> rank;
  names.clear();
  for (const auto& [id, name] : by_id) {
    rank[id] = static_cast<int>(names.size());
    names.push_back(name);
  }
  locations.assign(images.ids.size(), {});
  for_each_image_line(locs_file, images, false, [&](const Line& line, size_t pos) {
    line.expect_fields(5, 5, "<image_id> <part_id> <x> <y> <visible>");
    int64_t part = line.integer(1, "part_id");
    auto it = rank.find(part);
    if (it == rank.end())
      line.fail("part id " + std::to_string(part) + " is not listed in " + names_file.string());
    int64_t visible = line.integer(4, "visible");
    if (visible != 0 && visible != 1) line.fail("visible must be 0 or 1");
    auto& parts = locations[pos];
    for (const auto& p : parts)
      if (p.part_id == it->second)
        line.fail("part " + std::to_string(part) + " of image " + images.ids[pos] +
                  " is listed twice");
    parts.push_back({it->second, line.real(2, "x"), line.real(3, "y"), visible == 1});
  });
  for (auto& parts : locations)
    std::sort(parts.begin(), parts.end(),
              [](const PartLocation& a, const PartLocation& b) { return a.part_id < b.part_id; });
  return true;
}

std::vector<std::string> official_splits() { return {"train", "test"}; }

std::vector<size_t> split_positions(const std::vector<int64_t>& is_training,
                                    const std::string& split, const std::string& format) {
  if (split != "train" && split != "test")
    throw Error(format + " has no split '" + split + "' (splits: train, test)");
  const int64_t flag = split == "train" ? 1 : 0;
  std::vector<size_t> positions;
  for (size_t i = 0; i < is_training.size(); ++i)
    if (is_training[i] == flag) positions.push_back(i);
  return positions;
}

}  // namespace finch::data::cub_style
