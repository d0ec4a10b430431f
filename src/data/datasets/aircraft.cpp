// Format "aircraft": FGVC-Aircraft 2013b as it ships (root = fgvc-aircraft-2013b/data, or
// fgvc-aircraft-2013b/ holding data/). Options in the `data` section:
//   level: variant | family | manufacturer (default variant): which label files and class
//          list (variants.txt / families.txt / manufacturers.txt, in file order) are used;
//   crop_banner: true (default): remove the 20-pixel copyright banner at the bottom of
//          every image, as the official README asks (torchvision, MMPretrain and the usual
//          FGVC repos keep it, so their models can read the banner instead of the plane).
// Splits train, val, trainval, test (images_<split>.txt, one id per line). Boxes come from
// images_box.txt (`<id> xmin ymin xmax ymax`, 1-based inclusive pixels) as 0-based x, y,
// width, height, clipped to the cropped image.
#include <algorithm>
#include <map>
#include <unordered_map>

#include "cub_style.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/io/image.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;
using cub_style::file_exists;
using cub_style::for_each_line;
using cub_style::Line;
using cub_style::require_file;

const char* const kAircraftFormat = "aircraft";
constexpr int kBannerRows = 20;
const std::vector<std::string> kSplits = {"train", "val", "trainval", "test"};

fs::path resolve_root(const fs::path& root) {
  if (!file_exists(root / "variants.txt") && file_exists(root / "data" / "variants.txt"))
    return root / "data";
  return root;
}

struct Options {
  std::string level = "variant";
  std::string classes_file = "variants.txt";
  bool crop_banner = true;
};

Options read_options(const YAML::Node& node) {
  Options o;
  if (!node.IsMap()) return o;
  try {
    if (node["level"]) o.level = node["level"].as<std::string>();
    if (node["crop_banner"]) o.crop_banner = node["crop_banner"].as<bool>();
  } catch (const YAML::Exception&) {
    throw Error("aircraft: data.level must be a word and data.crop_banner true or false");
  }
  static const std::map<std::string, std::string> kLists = {{"variant", "variants.txt"},
                                                            {"family", "families.txt"},
                                                            {"manufacturer", "manufacturers.txt"}};
  auto it = kLists.find(o.level);
  if (it == kLists.end())
    throw Error("aircraft: unknown data.level '" + o.level +
                "' (levels: variant, family, manufacturer)");
  o.classes_file = it->second;
  return o;
}

class AircraftDataset final : public Dataset {
 public:
  AircraftDataset(std::vector<std::string> classes, std::vector<fs::path> paths,
                  std::vector<int64_t> labels, std::vector<Box> boxes, bool crop_banner)
      : classes_(std::move(classes)),
        paths_(std::move(paths)),
        labels_(std::move(labels)),
        boxes_(std::move(boxes)),
        crop_banner_(crop_banner) {}

  size_t size() const override { return paths_.size(); }
  int64_t label(size_t i) const override { return labels_.at(i); }
  std::string describe(size_t i) const override { return paths_.at(i).string(); }
  std::optional<std::filesystem::path> file(size_t i) const override { return paths_.at(i); }
  const std::vector<std::string>& class_names() const override { return classes_; }

  cv::Mat load_rgb(size_t i) const override {
    cv::Mat rgb = io::read_image_rgb(paths_.at(i));
    if (!crop_banner_) return rgb;
    if (rgb.rows <= kBannerRows)
      throw Error(paths_[i].string() + ": image is " + std::to_string(rgb.rows) +
                  " pixels high, too short to remove the 20-pixel copyright banner " +
                  "(data.crop_banner: false keeps it)");
    return rgb.rowRange(0, rgb.rows - kBannerRows).clone();
  }

  // With the banner cropped, the box is clipped to the remaining image, which needs the
  // image size: read from the file header (a full decode only for unusual files).
  std::optional<Box> box(size_t i) const override {
    Box b = boxes_.at(i);
    if (!crop_banner_) return b;
    std::optional<cv::Size> size = io::read_image_size(paths_[i]);
    if (!size) size = io::read_image_rgb(paths_[i]).size();
    const float right = std::min<float>(b.x + b.width, static_cast<float>(size->width));
    const float bottom =
        std::min<float>(b.y + b.height, static_cast<float>(size->height - kBannerRows));
    b.x = std::max(0.f, b.x);
    b.y = std::max(0.f, b.y);
    if (right <= b.x || bottom <= b.y) return std::nullopt;  // all of it in the banner
    b.width = right - b.x;
    b.height = bottom - b.y;
    return b;
  }

 private:
  std::vector<std::string> classes_;
  std::vector<fs::path> paths_;
  std::vector<int64_t> labels_;
  std::vector<Box> boxes_;
  bool crop_banner_;
};

std::vector<std::string> aircraft_splits(const fs::path& given_root, const YAML::Node&) {
  const fs::path root = resolve_root(given_root);
  std::vector<std::string> splits;
  for (const auto& s : kSplits)
    if (file_exists(root / ("images_" + s + ".txt"))) splits.push_back(s);
  if (splits.empty())
    throw Error("aircraft: no images_{train,val,trainval,test}.txt in " + root.string() +
                " (expected fgvc-aircraft-2013b/data)");
  return splits;
}

DatasetPtr open_aircraft(const fs::path& given_root, const std::string& split,
                         const YAML::Node& node) {
  const fs::path root = resolve_root(given_root);
  const Options options = read_options(node);
  if (std::find(kSplits.begin(), kSplits.end(), split) == kSplits.end())
    throw Error("aircraft has no split '" + split + "' (splits: train, val, trainval, test)");
  const fs::path ids_file = root / ("images_" + split + ".txt");
  const fs::path labels_file = root / ("images_" + options.level + "_" + split + ".txt");
  const fs::path classes_file = root / options.classes_file;
  const fs::path boxes_file = root / "images_box.txt";
  for (const auto& f : {ids_file, labels_file, classes_file, boxes_file}) require_file(f, kAircraftFormat);

  std::vector<std::string> classes;
  std::unordered_map<std::string, int64_t> class_index;
  for_each_line(classes_file, [&](const Line& line) {
    std::string name(line.text);
    name = name.substr(0, name.find_last_not_of(" \t") + 1);
    if (!class_index.emplace(name, classes.size()).second)
      line.fail("class '" + name + "' is listed twice");
    classes.push_back(std::move(name));
  });

  std::vector<std::string> ids;
  std::unordered_map<std::string, size_t> position;
  for_each_line(ids_file, [&](const Line& line) {
    line.expect_fields(1, 1, "<image id>");
    std::string id(line.fields[0]);
    if (!position.emplace(id, ids.size()).second) line.fail("image id " + id + " is listed twice");
    ids.push_back(std::move(id));
  });
  if (ids.empty()) throw Error(ids_file.string() + " lists no images");

  auto read_per_image = [&](const fs::path& file,
                            const std::function<void(const Line&, size_t)>& visit,
                            bool others_allowed) {
    std::vector<bool> seen(ids.size(), false);
    for_each_line(file, [&](const Line& line) {
      auto it = position.find(std::string(line.fields[0]));
      if (it == position.end()) {
        if (others_allowed) return;  // images_box.txt covers every split
        line.fail("image id " + std::string(line.fields[0]) + " is not listed in " +
                  ids_file.string());
      }
      if (seen[it->second]) line.fail("image id " + ids[it->second] + " is listed twice");
      seen[it->second] = true;
      visit(line, it->second);
    });
    for (size_t i = 0; i < ids.size(); ++i)
      if (!seen[i])
        throw Error("image id " + ids[i] + " is listed in " + ids_file.string() +
                    " but missing from " + file.string());
  };

  std::vector<int64_t> labels(ids.size());
  read_per_image(
      labels_file,
      [&](const Line& line, size_t pos) {
        // Labels hold spaces ("Boeing 737-700", "DHC-8-100"): split on the first space only.
        line.expect_fields(2, SIZE_MAX, "<image id> <label>");
        std::string label = line.rest();
        auto it = class_index.find(label);
        if (it == class_index.end())
          line.fail("label '" + label + "' is not listed in " + classes_file.string());
        labels[pos] = it->second;
      },
      false);

  std::vector<Box> boxes(ids.size());
  read_per_image(
      boxes_file,
      [&](const Line& line, size_t pos) {
        line.expect_fields(5, 5, "<image id> <xmin> <ymin> <xmax> <ymax>");
        float x0 = line.real(1, "xmin"), y0 = line.real(2, "ymin");
        float x1 = line.real(3, "xmax"), y1 = line.real(4, "ymax");
        if (x1 < x0 || y1 < y0 || x0 < 1 || y0 < 1)
          line.fail("expected 1 <= xmin <= xmax and 1 <= ymin <= ymax");
        boxes[pos] = Box{x0 - 1, y0 - 1, x1 - x0 + 1, y1 - y0 + 1};
      },
      true);

  std::vector<fs::path> paths;
  for (const auto& id : ids) paths.push_back(root / "images" / (id + ".jpg"));
  return std::make_shared<AircraftDataset>(std::move(classes), std::move(paths), std::move(labels),
                                           std::move(boxes), options.crop_banner);
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{
    "aircraft",
    "FGVC-Aircraft 2013b (fgvc-aircraft-2013b/data; data.level, data.crop_banner)",
    aircraft_splits,
    open_aircraft,
    {{"data", R"(level: variant      # aircraft format: label level, variant | family | manufacturer
crop_banner: true   # aircraft format: remove the 20-pixel copyright banner at the bottom)"}}});

}  // namespace finch::data
