// Format "dogs": Stanford Dogs (120 classes, 12,000 train / 8,580 test) as it ships (root =
// the folder holding train_list.mat, test_list.mat, Images/ and Annotation/). Each list has
// `file_list` (cell of paths relative to Images/, e.g. n02085620-Chihuahua/n02085620_10074.jpg),
// `annotation_list` (cell of paths relative to Annotation/, no extension) and `labels`
// (1-based). Class index = label - 1, named after the breed folder of its images
// ("n02085620-Chihuahua" -> "Chihuahua"); the class list is read from both lists so that it is
// the same for both splits. Splits train, test.
// Boxes come from the annotation XML (ImageNet/VOC style, object/bndbox/{xmin,ymin,xmax,ymax},
// taken as 1-based inclusive pixels). An image with several dogs (all of the labelled breed)
// gets the union of their boxes, so a crop to the box keeps every dog. The XML is read when a
// box is asked for; a missing annotation file means no box for that image, not an error.
#include <algorithm>
#include <charconv>
#include <map>

#include "cub_style.h"
#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/io/mat.h"
#include "record_dataset.h"

namespace finch::data {

namespace {

namespace fs = std::filesystem;
using cub_style::file_exists;
using cub_style::require_file;

const char* const kDogsFormat = "dogs";

struct DogsList {
  fs::path file;
  std::vector<std::string> files, annotations;
  std::vector<int64_t> labels;  // 1-based, as stored
};

constexpr double kMaxLabel = 100000;

DogsList read_list(const fs::path& file) {
  require_file(file, kDogsFormat);
  io::MatFile mat(file);
  DogsList list;
  list.file = file;
  list.files = mat.read("file_list").strings();
  list.annotations = mat.read("annotation_list").strings();
  const io::MatVar labels = mat.read("labels");
  for (double v : labels.numbers()) {
    // Stanford Dogs has 120 breeds; the bound keeps damaged values (1e72, found by dogs_fuzz)
    // from overflowing the conversion below.
    if (v != std::floor(v) || v < 1 || v > kMaxLabel)
      throw Error(labels.context() + ": label " + number_text(v) +
                  " is not a 1-based class number (1.." + number_text(kMaxLabel) + ")");
    list.labels.push_back(static_cast<int64_t>(v));
  }
  if (list.files.size() != list.labels.size() || list.files.size() != list.annotations.size())
    throw Error(file.string() + ": file_list, annotation_list and labels must have one entry " +
                "per image; found " + std::to_string(list.files.size()) + ", " +
                std::to_string(list.annotations.size()) + " and " +
                std::to_string(list.labels.size()));
  if (list.files.empty()) throw Error(file.string() + ": file_list is empty");
  return list;
}

// "n02085620-Chihuahua/n02085620_10074.jpg" -> "Chihuahua" (the wnid and dash dropped).
std::string breed_of(const std::string& relative_path) {
  const std::string folder = fs::path(relative_path).begin()->string();
  const size_t dash = folder.find('-');
  return dash == std::string::npos ? folder : folder.substr(dash + 1);
}

// Class names ordered by label, from every list given; a label without images or with two
// different breed folders is an error.
std::vector<std::string> class_names(const std::vector<DogsList>& lists) {
  std::map<int64_t, std::pair<std::string, std::string>> by_label;  // label -> (breed, path)
  for (const auto& list : lists)
    for (size_t i = 0; i < list.files.size(); ++i) {
      const std::string breed = breed_of(list.files[i]);
      auto [it, added] = by_label.emplace(list.labels[i], std::make_pair(breed, list.files[i]));
      if (!added && it->second.first != breed)
        throw Error(list.file.string() + ": label " + std::to_string(list.labels[i]) +
                    " is given to images of two breed folders (" + it->second.second + " and " +
                    list.files[i] + ")");
    }
  std::vector<std::string> names;
  for (const auto& [label, entry] : by_label) {
    if (label != static_cast<int64_t>(names.size()) + 1)
      throw Error(lists.front().file.string() + ": no image has label " +
                  std::to_string(names.size() + 1) + " (labels must be 1.." +
                  std::to_string(by_label.rbegin()->first) + " with no empty class)");
    names.push_back(entry.first);
  }
  return names;
}

// The text between <tag> and </tag> from `from`, or npos in `pos` when absent.
std::string_view tag_text(std::string_view xml, const std::string& tag, size_t& pos) {
  const std::string open = "<" + tag + ">", close = "</" + tag + ">";
  const size_t start = xml.find(open, pos);
  if (start == std::string_view::npos) {
    pos = std::string_view::npos;
    return {};
  }
  const size_t end = xml.find(close, start + open.size());
  if (end == std::string_view::npos) {
    pos = std::string_view::npos;
    return {};
  }
  pos = end + close.size();
  return xml.substr(start + open.size(), end - start - open.size());
}

double xml_number(std::string_view element, const std::string& tag, const fs::path& file) {
  size_t pos = 0;
  std::string_view text = tag_text(element, tag, pos);
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n' || text.front() == '\t'))
    text.remove_prefix(1);
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (pos == std::string_view::npos || ec != std::errc())
    throw Error(file.string() + ": expected a number in <" + tag + "> of every object/bndbox");
  return value;
}

// The union of every object's bndbox; a small tag extractor, since the files are flat
// VOC-style XML and no XML library is among finch's dependencies.
std::optional<Box> read_xml_box(const fs::path& file) {
  const std::string xml = read_file(file);
  double x1 = 1e300, y1 = 1e300, x2 = -1e300, y2 = -1e300;
  bool any = false;
  for (size_t pos = 0;;) {
    std::string_view object = tag_text(xml, "object", pos);
    if (pos == std::string_view::npos) break;
    size_t inner = 0;
    std::string_view bndbox = tag_text(object, "bndbox", inner);
    if (inner == std::string_view::npos) continue;
    x1 = std::min(x1, xml_number(bndbox, "xmin", file));
    y1 = std::min(y1, xml_number(bndbox, "ymin", file));
    x2 = std::max(x2, xml_number(bndbox, "xmax", file));
    y2 = std::max(y2, xml_number(bndbox, "ymax", file));
    any = true;
  }
  if (!any) return std::nullopt;
  auto box = box_from_inclusive_corners(x1, y1, x2, y2);
  if (!box) throw Error(file.string() + ": bndbox needs xmin <= xmax and ymin <= ymax");
  return box;
}

class DogsDataset final : public RecordDataset {
 public:
  DogsDataset(std::vector<std::string> classes, std::vector<ImageRecord> records,
              std::vector<fs::path> annotations)
      : RecordDataset(std::move(classes), std::move(records)),
        annotations_(std::move(annotations)) {}

  std::optional<Box> box(size_t i) const override {
    const fs::path& file = annotations_.at(i);
    if (!file_exists(file)) return std::nullopt;
    return read_xml_box(file);
  }

 private:
  std::vector<fs::path> annotations_;
};

fs::path list_file(const fs::path& root, const std::string& split) {
  return root / (split + "_list.mat");
}

std::vector<std::string> dogs_splits(const fs::path& root, const YAML::Node&) {
  std::vector<std::string> splits;
  for (const char* s : {"train", "test"})
    if (file_exists(list_file(root, s))) splits.push_back(s);
  if (splits.empty())
    throw Error(std::string(kDogsFormat) + ": no train_list.mat or test_list.mat in " + root.string() +
                " (expected the Stanford Dogs folder with Images/ and " + "Annotation/)");
  return splits;
}

DatasetPtr open_dogs(const fs::path& root, const std::string& split, const YAML::Node&) {
  if (split != "train" && split != "test")
    throw Error(std::string(kDogsFormat) + " has no split '" + split + "' (splits: train, test)");
  DogsList list = read_list(list_file(root, split));
  std::vector<DogsList> all;
  const std::string other = split == "train" ? "test" : "train";
  if (file_exists(list_file(root, other))) all.push_back(read_list(list_file(root, other)));
  all.insert(all.begin(), list);
  std::vector<std::string> classes = class_names(all);

  std::vector<ImageRecord> records;
  std::vector<fs::path> annotations;
  for (size_t i = 0; i < list.files.size(); ++i) {
    ImageRecord r;
    r.path = root / "Images" / fs::path(list.files[i]);
    r.label = list.labels[i] - 1;
    records.push_back(std::move(r));
    annotations.push_back(root / "Annotation" / fs::path(list.annotations[i]));
  }
  return std::make_shared<DogsDataset>(std::move(classes), std::move(records),
                                       std::move(annotations));
}

}  // namespace

FINCH_REGISTER_DATASET_FORMAT(DatasetFormat{
    "dogs", "Stanford Dogs (train_list.mat, test_list.mat, Images/, Annotation/)", dogs_splits,
    open_dogs});

}  // namespace finch::data
