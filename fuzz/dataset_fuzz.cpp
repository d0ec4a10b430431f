// libFuzzer target for the annotation readers of one dataset format, chosen at build time
// with FINCH_FUZZ_FORMAT (one executable per format: cub_fuzz, nabirds_fuzz, ...). The input
// holds the format's annotation files in the order of its layout below, cut at
// kFileSeparator; they are written to a scratch root and read the way `finch data info`
// reads a downloaded dataset. Any input must either load or throw finch::Error, and what
// loads must keep the Dataset contract (every label in [0, num_classes)).
#include <cstdlib>
#include <string>
#include <vector>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/data/formats.h"
#include "finch/data/hierarchy.h"
#include "finch/data/info.h"
#include "finch/eval/zeroshot.h"
#include "fuzz_files.h"

#ifndef FINCH_FUZZ_FORMAT
#error "compile with -DFINCH_FUZZ_FORMAT=\"cub\" (or another format)"
#endif

namespace {

// The files each format reads, relative to its root. Images are not written (the readers
// only check that they exist; image decoding has its own target), except Aircraft's three,
// whose headers its boxes need. fuzz/make_seed_corpus.py writes its seeds in this order.
const std::vector<std::string>& layout(const std::string& format) {
  static const std::vector<std::string> none;
  static const std::vector<std::pair<std::string, std::vector<std::string>>> kLayouts = {
      {"cub",
       {"images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt",
        "bounding_boxes.txt", "parts/parts.txt", "parts/part_locs.txt", "attributes/attributes.txt",
        "attributes/image_attribute_labels.txt",
        "attributes/class_attribute_labels_continuous.txt"}},
      {"nabirds",
       {"images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt",
        "bounding_boxes.txt", "hierarchy.txt", "parts/parts.txt", "parts/part_locs.txt"}},
      {"aircraft",
       {"variants.txt", "families.txt", "manufacturers.txt", "images_train.txt",
        "images_variant_train.txt", "images_family_train.txt", "images_manufacturer_train.txt",
        "images_test.txt", "images_variant_test.txt", "images_box.txt",
        // Its boxes are clipped to the image, so box() reads the image header.
        "images/0034309.jpg", "images/0034958.jpg", "images/0037511.jpg"}},
      {"inat", {"train.json", "val.json"}},
      {"csv", {"manifest.csv", "attributes.csv", "hierarchy.csv"}},
      {"cars",
       {"devkit/cars_meta.mat", "devkit/cars_train_annos.mat",
        "devkit/cars_test_annos_withlabels.mat", "cars_annos.mat"}},
      {"flowers102", {"imagelabels.mat", "setid.mat"}},
      {"dogs", {"train_list.mat", "test_list.mat", "Annotation/n02085620-Chihuahua/n02085620_1"}},
  };
  for (const auto& [name, files] : kLayouts)
    if (name == format) return files;
  return none;
}

// Reads everything `finch data info` (and the hierarchy / attribute readers) would.
void read_dataset(const std::string& format, const finch::fuzz::fs::path& root) {
  finch::Config config = finch::Config::defaults();
  config.set_string("data.format", format);
  config.set_string("data.root", root.string());
  if (format == "csv") config.set_string("data.csv_file", "manifest.csv");
  finch::data::InfoOptions options;
  options.size_sample = 0;
  options.progress = finch::ProgressStyle::kNone;
  const finch::data::DatasetInfo info = finch::data::dataset_info(config, options);
  (void)finch::data::to_json(info).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);

  const auto dataset =
      finch::data::open_dataset(format, root, info.splits.front().name, config.node("data"));
  const int64_t classes = static_cast<int64_t>(dataset->num_classes());
  for (size_t i = 0; i < dataset->size(); ++i) {
    const int64_t label = dataset->label(i);
    if (label < 0 || label >= classes) std::abort();  // the Dataset contract
    (void)dataset->describe(i);
  }
  if (auto hierarchy = finch::data::dataset_hierarchy(config, dataset->class_names())) {
    if (hierarchy->ancestors.size() != dataset->num_classes()) std::abort();
    for (const auto& chain : hierarchy->ancestors)
      if (chain.size() != hierarchy->levels.size()) std::abort();
  }

  if (format == "cub") (void)finch::eval::read_cub_attributes(root);
  if (format == "csv") {
    (void)finch::eval::read_attribute_csv(root / "attributes.csv");
    (void)finch::data::read_hierarchy_csv(root / "hierarchy.csv", dataset->class_names());
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static finch::fuzz::ScratchRoot scratch;
  const std::vector<std::string>& files = layout(FINCH_FUZZ_FORMAT);
  if (files.empty()) std::abort();  // a format without a layout: a build mistake
  scratch.reset(files, finch::fuzz::split_files(data, size, files.size()));
  try {
    read_dataset(FINCH_FUZZ_FORMAT, scratch.root());
  } catch (const finch::Error&) {
  }
  return 0;
}
