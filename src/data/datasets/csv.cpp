// Format "csv": a manifest with lines `path,label[,split][,x,y,w,h]`. Paths are relative to
// the CSV's folder; labels are class names (the class list is their sorted set); without a
// split column everything is split "train". An optional header line (first field "path")
// may name the columns in any order: path, label, split, x, y, w|width, h|height.
#include "finch/core/csv.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/io/image.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;

std::string trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

struct Record {
  fs::path path;
  std::string label, split;
  std::optional<Box> box;
};

struct Manifest {
  fs::path file;
  std::vector<std::string> classes;  // sorted unique labels
  std::vector<Record> records;
  std::vector<std::string> splits;  // train, val, test first, then others sorted
};

fs::path find_manifest(const fs::path& root, const YAML::Node& options) {
  std::error_code ec;
  if (fs::is_regular_file(root, ec)) return root;  // root may name the CSV itself
  if (!fs::is_directory(root, ec)) throw Error("csv dataset root not found: " + root.string());
  std::string name;
  if (options.IsMap() && options["csv_file"]) {
    try {
      name = options["csv_file"].as<std::string>();
    } catch (const YAML::Exception&) {
      throw Error("data.csv_file must be a file name");
    }
  }
  if (!name.empty()) return root / name;
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(root))
    if (lower(entry.path().extension().string()) == ".csv" && entry.is_regular_file())
      found.push_back(entry.path());
  if (found.size() == 1) return found[0];
  if (found.empty()) throw Error("no *.csv manifest in " + root.string());
  std::sort(found.begin(), found.end());
  std::string names;
  for (const auto& f : found) names += " " + f.filename().string();
  throw Error("several *.csv files in " + root.string() + " (" + names.substr(1) +
              "); set data.csv_file to choose one");
}

// Column positions; -1 when absent.
struct Columns {
  int path = -1, label = -1, split = -1, x = -1, y = -1, w = -1, h = -1;
  size_t count = 0;
};

Columns columns_from_header(const std::vector<std::string>& header, const std::string& file,
                            const std::string& line) {
  Columns c;
  c.count = header.size();
  std::map<std::string, int*> slots = {{"path", &c.path}, {"label", &c.label}, {"split", &c.split},
                                       {"x", &c.x},       {"y", &c.y},         {"w", &c.w},
                                       {"width", &c.w},   {"h", &c.h},         {"height", &c.h}};
  for (size_t i = 0; i < header.size(); ++i) {
    auto it = slots.find(lower(header[i]));
    if (it == slots.end())
      throw line_error(file, 1,
                       "unknown column '" + header[i] + "' (known: path, label, split, x, y, w, h)",
                       line);
    if (*it->second >= 0) throw line_error(file, 1, "column '" + header[i] + "' given twice", line);
    *it->second = static_cast<int>(i);
  }
  if (c.label < 0) throw line_error(file, 1, "the header has no 'label' column", line);
  int boxes = (c.x >= 0) + (c.y >= 0) + (c.w >= 0) + (c.h >= 0);
  if (boxes != 0 && boxes != 4)
    throw line_error(file, 1, "a box needs all four columns x, y, w, h", line);
  return c;
}

// Without a header the field count decides: 2 path,label; 3 +split; 6 +box; 7 +split+box.
Columns columns_from_count(size_t count, const std::string& file, size_t line_no,
                           const std::string& line) {
  Columns c;
  c.count = count;
  c.path = 0;
  c.label = 1;
  if (count == 3 || count == 7) c.split = 2;
  if (count == 6 || count == 7) {
    c.x = static_cast<int>(count) - 4;
    c.y = c.x + 1;
    c.w = c.x + 2;
    c.h = c.x + 3;
  }
  if (count != 2 && count != 3 && count != 6 && count != 7)
    throw line_error(file, line_no,
                     "expected path,label[,split][,x,y,w,h] (2, 3, 6 or 7 fields), found " +
                         std::to_string(count) + " fields",
                     line);
  return c;
}

float parse_coordinate(const std::string& text, const char* name, const std::string& file,
                       size_t line_no, const std::string& line) {
  size_t used = 0;
  float value = 0;
  try {
    value = std::stof(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size() || !std::isfinite(value))
    throw line_error(file, line_no, std::string("box ") + name + " is not a number: '" + text + "'",
                     line);
  return value;
}

Manifest read_manifest(const fs::path& root, const YAML::Node& options) {
  Manifest m;
  m.file = find_manifest(root, options);
  const std::string file = m.file.string();
  std::istringstream in(read_file(m.file));
  const fs::path base = m.file.parent_path();

  std::optional<Columns> cols;
  std::set<std::string> classes, splits;
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1 && line.rfind("\xEF\xBB\xBF", 0) == 0) line.erase(0, 3);  // UTF-8 BOM
    if (trim(line).empty()) continue;
    std::vector<std::string> f = split_csv_line(line, file, line_no);
    if (!cols) {
      if (lower(f[0]) == "path") {
        cols = columns_from_header(f, file, line);
        continue;
      }
      cols = columns_from_count(f.size(), file, line_no, line);
    }
    if (f.size() != cols->count)
      throw line_error(
          file, line_no,
          "expected " + std::to_string(cols->count) + " fields, found " + std::to_string(f.size()),
          line);
    Record r;
    if (f[cols->path].empty()) throw line_error(file, line_no, "empty path", line);
    r.path = base / fs::path(f[cols->path]);
    r.label = f[cols->label];
    if (r.label.empty()) throw line_error(file, line_no, "empty label", line);
    r.split = cols->split >= 0 ? f[cols->split] : "train";
    if (r.split.empty()) throw line_error(file, line_no, "empty split", line);
    if (cols->x >= 0) {
      bool all_empty =
          f[cols->x].empty() && f[cols->y].empty() && f[cols->w].empty() && f[cols->h].empty();
      if (!all_empty) {  // four empty fields mean "no box for this image"
        Box b{parse_coordinate(f[cols->x], "x", file, line_no, line),
              parse_coordinate(f[cols->y], "y", file, line_no, line),
              parse_coordinate(f[cols->w], "w", file, line_no, line),
              parse_coordinate(f[cols->h], "h", file, line_no, line)};
        if (b.width <= 0 || b.height <= 0)
          throw line_error(file, line_no, "box width and height must be positive", line);
        r.box = b;
      }
    }
    classes.insert(r.label);
    splits.insert(r.split);
    m.records.push_back(std::move(r));
  }
  if (m.records.empty()) throw Error("csv manifest " + file + " lists no images");
  m.classes.assign(classes.begin(), classes.end());
  for (const char* usual : {"train", "val", "test"})
    if (splits.erase(usual)) m.splits.push_back(usual);
  m.splits.insert(m.splits.end(), splits.begin(), splits.end());
  return m;
}

class CsvDataset final : public Dataset {
 public:
  CsvDataset(std::vector<std::string> classes, std::vector<Record> records)
      : classes_(std::move(classes)), records_(std::move(records)) {
    for (const auto& r : records_)
      labels_.push_back(std::lower_bound(classes_.begin(), classes_.end(), r.label) -
                        classes_.begin());
  }

  size_t size() const override { return records_.size(); }
  int64_t label(size_t i) const override { return labels_.at(i); }
  cv::Mat load_rgb(size_t i) const override { return io::read_image_rgb(records_.at(i).path); }
  std::string describe(size_t i) const override { return records_.at(i).path.string(); }
  std::optional<std::filesystem::path> file(size_t i) const override { return records_.at(i).path; }
  std::optional<Box> box(size_t i) const override { return records_.at(i).box; }
  const std::vector<std::string>& class_names() const override { return classes_; }

 private:
  std::vector<std::string> classes_;
  std::vector<Record> records_;
  std::vector<int64_t> labels_;
};

std::vector<std::string> csv_splits(const fs::path& root, const YAML::Node& options) {
  return read_manifest(root, options).splits;
}

DatasetPtr open_csv(const fs::path& root, const std::string& split, const YAML::Node& options) {
  Manifest m = read_manifest(root, options);
  std::vector<Record> records;
  for (auto& r : m.records)
    if (r.split == split) records.push_back(std::move(r));
  if (records.empty()) {
    std::string known;
    for (const auto& s : m.splits) known += (known.empty() ? "" : ", ") + s;
    throw Error("csv manifest " + m.file.string() + " has no split '" + split +
                "' (splits: " + known + ")");
  }
  return std::make_shared<CsvDataset>(std::move(m.classes), std::move(records));
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{
    "csv",
    "manifest path,label[,split][,x,y,w,h] with paths relative to the CSV",
    csv_splits,
    open_csv,
    {{"data",
      R"(csv_file: ""   # csv format: the manifest's file name under root ("" = the only *.csv))"}}});

}  // namespace finch::data
