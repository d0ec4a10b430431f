#pragma once
// Internal: readers for the whitespace-separated id files that CUB-200-2011 and NABirds
// share (images.txt, image_class_labels.txt, train_test_split.txt, classes.txt,
// bounding_boxes.txt, parts/). Image ids are kept as strings: CUB numbers its images,
// NABirds names them with UUIDs.
#include <climits>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "finch/data/datasets/cub.h"

namespace finch::data::cub_style {

namespace fs = std::filesystem;

/// One non-blank line of an annotation file, split at runs of spaces/tabs.
struct Line {
  const std::string* file = nullptr;  // path, for messages
  size_t number = 0;                  // 1-based
  std::string_view text;              // without the line break
  std::vector<std::string_view> fields;

  /// Throws finch::line_error for this line.
  [[noreturn]] void fail(const std::string& message) const;
  /// Fails unless the line has between `min` and `max` fields.
  void expect_fields(size_t min, size_t max, const char* layout) const;
  int64_t integer(size_t k, const char* what) const;
  float real(size_t k, const char* what) const;
  /// The text after the first field and the whitespace following it (names with spaces).
  std::string rest() const;
};

/// Calls `visit` for every non-blank line of `file` (CR and a UTF-8 BOM tolerated). Throws
/// finch::Error naming the path when the file is missing.
void for_each_line(const fs::path& file, const std::function<void(const Line&)>& visit);

/// Throws "<format>: required file not found: PATH" unless `file` is a regular file.
void require_file(const fs::path& file, const std::string& format);
bool file_exists(const fs::path& file);

/// images.txt: `<image_id> <relative path>`, in file order.
struct ImageList {
  std::string file;
  std::vector<std::string> ids;
  std::vector<fs::path> paths;                    // root/images/<relative path>
  std::unordered_map<std::string, size_t> index;  // id -> position
};
ImageList read_image_list(const fs::path& root);

/// Reads a file of per-image lines whose first field is an image id; `visit(line, image)`
/// gets the image's position. Unknown ids are errors naming both files; with
/// `once_per_image`, a repeated id is an error and so is an image the file misses.
void for_each_image_line(const fs::path& file, const ImageList& images, bool once_per_image,
                         const std::function<void(const Line&, size_t)>& visit);

/// `<image_id> <integer>` for every image (image_class_labels.txt, train_test_split.txt),
/// in images.txt order; a value outside [lo, hi] is a line error.
std::vector<int64_t> read_image_integers(const fs::path& file, const ImageList& images,
                                         const char* what, int64_t lo = INT64_MIN,
                                         int64_t hi = INT64_MAX);

/// image_class_labels.txt: the class id of every image, each one listed in `classes`
/// (read from `classes_file`); an unknown id is a line error naming both files.
std::vector<int64_t> read_class_ids(const fs::path& file, const ImageList& images,
                                    const std::map<int64_t, std::string>& classes,
                                    const fs::path& classes_file);

/// bounding_boxes.txt: `<image_id> <x> <y> <width> <height>` for every image.
std::vector<Box> read_boxes(const fs::path& file, const ImageList& images);

/// `<id> <name with spaces>` (classes.txt, parts.txt, attributes.txt), sorted by id.
std::map<int64_t, std::string> read_id_names(const fs::path& file);

/// The parts/ folder when both parts.txt and part_locs.txt exist: names (sorted by id) and
/// per-image locations with part_id = rank of the file id. Returns false (and fills nothing)
/// when either file is missing.
bool read_parts(const fs::path& root, const ImageList& images, std::vector<std::string>& names,
                std::vector<std::vector<PartLocation>>& locations);

/// The two official splits from train_test_split.txt's flags.
std::vector<std::string> official_splits();
/// Positions of the images of `split` ("train": flag 1, "test": flag 0).
std::vector<size_t> split_positions(const std::vector<int64_t>& is_training,
                                    const std::string& split, const std::string& format);

}  // namespace finch::data::cub_style
