// Format "inat": iNaturalist (2017-2021) COCO-style JSON. Split S is read from `S.json` in
// the root (2021: train.json, val.json, train_mini.json), else from `S<4 digits>.json`
// (2017/2018: train2017.json, val2018.json); two candidates of the second kind are an error
// asking for the exact name. images[].file_name is relative to the root; each image's
// label is the category_id of its annotation (matched by image_id); class indices are
// 0..N-1 over all categories of the file sorted by id, so splits of one release agree.
// An annotation's `bbox` ([x, y, w, h], pixels) becomes the box when present.
#include <algorithm>
#include <cctype>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <unordered_map>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/io/image.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

// "train" + 4 digits: a release-year suffix.
bool is_year_file(const std::string& stem, const std::string& split) {
  if (stem.size() != split.size() + 4 || stem.compare(0, split.size(), split) != 0) return false;
  return std::all_of(stem.begin() + split.size(), stem.end(),
                     [](unsigned char c) { return std::isdigit(c) != 0; });
}

fs::path find_split_file(const fs::path& root, const std::string& split) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw Error("inat dataset root not found: " + root.string());
  if (fs::is_regular_file(root / (split + ".json"), ec)) return root / (split + ".json");
  std::vector<fs::path> found;
  for (const auto& entry : fs::directory_iterator(root))
    if (entry.path().extension() == ".json" && is_year_file(entry.path().stem().string(), split))
      found.push_back(entry.path());
  std::sort(found.begin(), found.end());
  if (found.size() == 1) return found[0];
  if (found.empty())
    throw Error("inat: no " + split + ".json or " + split + "20XX.json in " + root.string());
  throw Error("inat: several files for split '" + split + "' in " + root.string() + " (" +
              found[0].filename().string() + ", " + found[1].filename().string() +
              "); pass the file's name without .json as the split");
}

std::vector<std::string> inat_splits(const fs::path& root, const YAML::Node&) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) throw Error("inat dataset root not found: " + root.string());
  std::set<std::string> names;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (entry.path().extension() != ".json") continue;
    std::string stem = entry.path().stem().string();
    if (stem.size() > 4 && is_year_file(stem, stem.substr(0, stem.size() - 4)))
      stem.resize(stem.size() - 4);
    names.insert(stem);
  }
  std::vector<std::string> splits;
  for (const char* usual : {"train", "val", "test"})
    if (names.erase(usual)) splits.push_back(usual);
  splits.insert(splits.end(), names.begin(), names.end());
  if (splits.empty()) throw Error("inat: no *.json annotation file in " + root.string());
  return splits;
}

class INatDataset final : public Dataset {
 public:
  INatDataset(std::vector<std::string> classes, std::vector<fs::path> paths,
              std::vector<int64_t> labels, std::vector<std::optional<Box>> boxes)
      : classes_(std::move(classes)),
        paths_(std::move(paths)),
        labels_(std::move(labels)),
        boxes_(std::move(boxes)) {}
  size_t size() const override { return paths_.size(); }
  int64_t label(size_t i) const override { return labels_.at(i); }
  cv::Mat load_rgb(size_t i) const override { return io::read_image_rgb(paths_.at(i)); }
  std::string describe(size_t i) const override { return paths_.at(i).string(); }
  std::optional<std::filesystem::path> file(size_t i) const override { return paths_.at(i); }
  std::optional<Box> box(size_t i) const override { return boxes_.at(i); }
  const std::vector<std::string>& class_names() const override { return classes_; }

 private:
  std::vector<std::string> classes_;
  std::vector<fs::path> paths_;
  std::vector<int64_t> labels_;
  std::vector<std::optional<Box>> boxes_;
};

// Field `key` of `array[i]` as T; throws naming the file and the element.
template <typename T>
T field(const json& item, const char* array, size_t i, const char* key, const std::string& file) {
  const std::string where = file + ": " + array + "[" + std::to_string(i) + "]";
  if (!item.is_object()) throw Error(where + " is not an object");
  auto it = item.find(key);
  if (it == item.end()) throw Error(where + " has no \"" + key + "\"");
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw Error(where + "." + key + " has the wrong type: " + it->dump());
  }
}

const json& array_of(const json& doc, const char* key, const std::string& file) {
  auto it = doc.find(key);
  if (it == doc.end() || !it->is_array())
    throw Error(file + ": no \"" + key + "\" array (expected COCO-style iNaturalist JSON)");
  return *it;
}

DatasetPtr open_inat(const fs::path& root, const std::string& split, const YAML::Node&) {
  const fs::path path = find_split_file(root, split);
  const std::string file = path.string();
  json doc;
  try {
    doc = json::parse(read_file(path));
  } catch (const json::exception& e) {  // parse errors, and numbers beyond range (1e999)
    throw Error(file + ": not valid JSON: " + e.what());
  }
  if (!doc.is_object()) throw Error(file + ": expected a JSON object at the top");

  const json& categories = array_of(doc, "categories", file);
  std::map<int64_t, std::string> by_id;
  for (size_t i = 0; i < categories.size(); ++i) {
    int64_t id = field<int64_t>(categories[i], "categories", i, "id", file);
    if (!by_id.emplace(id, field<std::string>(categories[i], "categories", i, "name", file)).second)
      throw Error(file + ": categories[" + std::to_string(i) + "]: category id " +
                  std::to_string(id) + " is listed twice");
  }
  if (by_id.empty()) throw Error(file + ": \"categories\" is empty");
  std::unordered_map<int64_t, int64_t> index_of;
  std::vector<std::string> classes;
  for (auto& [id, name] : by_id) {
    index_of[id] = static_cast<int64_t>(classes.size());
    classes.push_back(std::move(name));
  }

  const json& images = array_of(doc, "images", file);
  std::unordered_map<int64_t, size_t> position;
  std::vector<fs::path> paths;
  std::vector<int64_t> ids;
  for (size_t i = 0; i < images.size(); ++i) {
    int64_t id = field<int64_t>(images[i], "images", i, "id", file);
    if (!position.emplace(id, paths.size()).second)
      throw Error(file + ": images[" + std::to_string(i) + "]: image id " + std::to_string(id) +
                  " is listed twice");
    paths.push_back(root / fs::path(field<std::string>(images[i], "images", i, "file_name", file)));
    ids.push_back(id);
  }
  if (paths.empty()) throw Error(file + ": \"images\" is empty");

  const json& annotations = array_of(doc, "annotations", file);
  std::vector<int64_t> labels(paths.size(), -1);
  std::vector<std::optional<Box>> boxes(paths.size());
  for (size_t i = 0; i < annotations.size(); ++i) {
    const json& a = annotations[i];
    const std::string where = file + ": annotations[" + std::to_string(i) + "]";
    int64_t image = field<int64_t>(a, "annotations", i, "image_id", file);
    int64_t category = field<int64_t>(a, "annotations", i, "category_id", file);
    auto pos = position.find(image);
    if (pos == position.end())
      throw Error(where + ": image_id " + std::to_string(image) + " is not in \"images\"");
    auto cls = index_of.find(category);
    if (cls == index_of.end())
      throw Error(where + ": category_id " + std::to_string(category) +
                  " is not in \"categories\"");
    int64_t& label = labels[pos->second];
    if (label >= 0 && label != cls->second)
      throw Error(where + ": image " + std::to_string(image) + " has two different categories");
    label = cls->second;
    auto bbox = a.find("bbox");
    if (bbox != a.end() && bbox->is_array() && bbox->size() == 4 &&
        std::all_of(bbox->begin(), bbox->end(), [](const json& v) { return v.is_number(); })) {
      Box b{(*bbox)[0].get<float>(), (*bbox)[1].get<float>(), (*bbox)[2].get<float>(),
            (*bbox)[3].get<float>()};
      if (b.width > 0 && b.height > 0) boxes[pos->second] = b;
    }
  }
  for (size_t i = 0; i < labels.size(); ++i)
    if (labels[i] < 0)
      throw Error(file + ": image id " + std::to_string(ids[i]) + " (" + paths[i].string() +
                  ") has no annotation (an unlabelled test file cannot be opened as a split)");
  return std::make_shared<INatDataset>(std::move(classes), std::move(paths), std::move(labels),
                                       std::move(boxes));
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{
    "inat", "iNaturalist COCO-style JSON (root/<split>.json or <split>20XX.json)", inat_splits,
    open_inat});

}  // namespace finch::data
