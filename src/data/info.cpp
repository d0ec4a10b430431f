#include "finch/data/info.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <map>

#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/io/image.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxProblems = 5;

struct Official {
  size_t classes;
  std::map<std::string, size_t> images;
};

// Published counts of the benchmarks (their papers and READMEs; ../docs/datasets.md).
std::optional<Official> official_counts(const std::string& format, const Config& config) {
  if (format == "cub") return Official{200, {{"train", 5994}, {"test", 5794}}};
  if (format == "nabirds") return Official{555, {{"train", 23929}, {"test", 24633}}};
  if (format == "cars") return Official{196, {{"train", 8144}, {"test", 8041}}};
  if (format == "dogs") return Official{120, {{"train", 12000}, {"test", 8580}}};
  if (format == "flowers102")
    return Official{102, {{"train", 1020}, {"val", 1020}, {"test", 6149}}};
  if (format == "aircraft") {
    const std::string level = config.get<std::string>("data.level");
    const size_t classes = level == "family" ? 70 : level == "manufacturer" ? 30 : 100;
    return Official{classes, {{"train", 3334}, {"val", 3333}, {"trainval", 6667}, {"test", 3333}}};
  }
  return std::nullopt;
}

Spread spread(std::vector<int64_t> values) {
  if (values.empty()) return {};
  std::sort(values.begin(), values.end());
  // The lower median for an even count: always a value that occurs.
  return {values.front(), values[(values.size() - 1) / 2], values.back()};
}

// A sample's file exists: describe() is a path, or "container#index" for formats that pack
// images into one file (idx).
bool file_present(const std::string& described) {
  std::error_code ec;
  if (fs::is_regular_file(described, ec)) return true;
  const size_t hash = described.rfind('#');
  return hash != std::string::npos && fs::is_regular_file(described.substr(0, hash), ec);
}

}  // namespace

DatasetInfo dataset_info(const Config& config, const InfoOptions& options) {
  DatasetInfo info;
  info.format = config.get<std::string>("data.format");
  info.root = config.get<std::string>("data.root");
  info.checked_images = options.check_images;
  const YAML::Node data = config.node("data");
  const DatasetFormat& format = dataset_format(info.format);

  std::vector<DatasetPtr> datasets;
  for (const std::string& split : format.splits(info.root, data)) {
    datasets.push_back(format.open(info.root, split, data));
    SplitInfo s;
    s.name = split;
    info.splits.push_back(std::move(s));
  }
  if (datasets.empty()) throw Error(info.format + " at " + info.root + " has no splits");
  info.num_classes = datasets.front()->num_classes();

  size_t total = 0;
  for (const auto& d : datasets) total += d->size();
  // Without --check-images, sizes come from the headers of an evenly spaced sample.
  // size_sample 0: no sizes at all (it divided by zero before; found by cub_fuzz).
  const size_t sample = options.size_sample;
  const bool read_sizes = options.check_images || sample > 0;
  const size_t step =
      options.check_images || sample == 0 || total <= sample ? 1 : (total + sample - 1) / sample;
  std::vector<int64_t> widths, heights;
  std::unique_ptr<Progress> progress;
  if (options.check_images)
    progress = std::make_unique<Progress>("checking images", static_cast<int64_t>(total),
                                          options.progress);
  size_t visited = 0;
  for (size_t k = 0; k < datasets.size(); ++k) {
    const Dataset& d = *datasets[k];
    SplitInfo& s = info.splits[k];
    s.images = d.size();
    std::vector<int64_t> per_class(info.num_classes, 0);
    for (size_t i = 0; i < d.size(); ++i, ++visited) {
      const int64_t label = d.label(i);
      if (label >= 0 && label < static_cast<int64_t>(per_class.size())) ++per_class[label];
      const std::string path = d.describe(i);
      if (!file_present(path)) {
        ++s.missing;
        if (s.problems.size() < kMaxProblems) s.problems.push_back(path + ": file not found");
        continue;
      }
      // After the missing check: Aircraft clips its boxes to the image, so box() reads it.
      if (d.box(i)) ++s.with_boxes;
      std::optional<cv::Size> size;
      if (options.check_images) {
        try {
          size = d.load_rgb(i).size();
        } catch (const std::exception& e) {
          ++s.unreadable;
          if (s.problems.size() < kMaxProblems) s.problems.push_back(e.what());
        }
        if (progress && visited % 64 == 0) progress->update(static_cast<int64_t>(visited), "");
      } else if (read_sizes && visited % step == 0) {
        size = io::read_image_size(path);
        if (!size) {  // not PNG/JPEG, Exif-rotated or packed in a container: decode it
          try {
            size = d.load_rgb(i).size();
          } catch (const std::exception&) {
          }
        }
      }
      if (size) {
        widths.push_back(size->width);
        heights.push_back(size->height);
      }
    }
    s.per_class = spread(per_class);
    s.empty_classes = static_cast<size_t>(std::count(per_class.begin(), per_class.end(), 0));
  }
  if (progress) progress->finish("");
  info.sized = widths.size();
  info.width = spread(widths);
  info.height = spread(heights);
  if (options.check_images)
    info.size_source = fmt::format("all {} images decoded, {} readable", total, info.sized);
  else if (step == 1)
    info.size_source = fmt::format("file headers of all {} images, {} readable", total, info.sized);
  else
    info.size_source =
        fmt::format("file headers of every {}th image, {} of {} images", step, info.sized, total);

  if (auto official = official_counts(info.format, config)) {
    info.official_classes = official->classes;
    bool match = info.num_classes == official->classes;
    for (auto& s : info.splits) {
      auto it = official->images.find(s.name);
      if (it == official->images.end()) continue;
      s.official = it->second;
      match = match && s.images == it->second;
    }
    info.matches_official = match;
  }
  return info;
}

nlohmann::json to_json(const DatasetInfo& info) {
  auto spread_json = [](const Spread& s) {
    return nlohmann::json{{"min", s.min}, {"median", s.median}, {"max", s.max}};
  };
  nlohmann::json j;
  j["format"] = info.format;
  j["root"] = info.root;
  j["num_classes"] = info.num_classes;
  j["official_classes"] =
      info.official_classes ? nlohmann::json(*info.official_classes) : nlohmann::json();
  j["splits"] = nlohmann::json::array();
  for (const auto& s : info.splits)
    j["splits"].push_back(
        {{"name", s.name},
         {"images", s.images},
         {"official_images", s.official ? nlohmann::json(*s.official) : nlohmann::json()},
         {"images_per_class", spread_json(s.per_class)},
         {"empty_classes", s.empty_classes},
         {"with_boxes", s.with_boxes},
         {"missing", s.missing},
         {"unreadable", info.checked_images ? nlohmann::json(s.unreadable) : nlohmann::json()},
         {"problems", s.problems}});
  j["checked_images"] = info.checked_images;
  j["image_size"] = {{"measured", info.sized},
                     {"source", info.size_source},
                     {"width", spread_json(info.width)},
                     {"height", spread_json(info.height)}};
  j["matches_official"] =
      info.matches_official ? nlohmann::json(*info.matches_official) : nlohmann::json();
  return j;
}

std::string format_info(const DatasetInfo& info) {
  std::string out = fmt::format("{} at {}\nclasses: {}", info.format, info.root, info.num_classes);
  if (info.official_classes) out += fmt::format(" (official {})", *info.official_classes);
  out += "\n";
  for (const auto& s : info.splits) {
    out += fmt::format("{:>9}: {} images", s.name, s.images);
    if (s.official) out += fmt::format(" (official {})", *s.official);
    out += fmt::format(", per class min/median/max {}/{}/{}", s.per_class.min, s.per_class.median,
                       s.per_class.max);
    if (s.empty_classes) out += fmt::format(", {} empty classes", s.empty_classes);
    out += fmt::format(", {} with boxes, {} missing", s.with_boxes, s.missing);
    if (info.checked_images) out += fmt::format(", {} unreadable", s.unreadable);
    out += "\n";
    for (const auto& p : s.problems) out += "           " + p + "\n";
  }
  out += fmt::format("image size: width {}/{}/{}, height {}/{}/{} (min/median/max; {})\n",
                     info.width.min, info.width.median, info.width.max, info.height.min,
                     info.height.median, info.height.max, info.size_source);
  if (!info.checked_images) out += "unreadable files: not checked (--check-images decodes all)\n";
  if (info.matches_official)
    out += *info.matches_official ? "counts match the official ones\n"
                                  : "counts DIFFER from the official ones (incomplete or "
                                    "modified copy?)\n";
  return out;
}

}  // namespace finch::data
