// The standard fine-grained benchmark formats (cub, nabirds, aircraft, inat) on fixtures
// written in their exact on-disk layout (../shared/docs/datasets.md): tiny images and the
// annotation files as they ship, then bad variants of each.
#include <gtest/gtest.h>

#include <opencv2/imgcodecs.hpp>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/data/datasets/cub.h"
#include "finch/data/datasets/nabirds.h"
#include "finch/data/formats.h"
#include "finch/data/hierarchy.h"
#include "finch/data/info.h"
#include "test_support.h"

namespace fs = std::filesystem;
using finch::data::open_dataset;
using finch::test::error_of;
using finch::test::write_text;

namespace {

// A width x height BGR image of one grey value (written as PNG or JPEG by extension).
void write_image(const fs::path& path, int width, int height, int value) {
  fs::create_directories(path.parent_path());
  finch::test::require(
      cv::imwrite(path.string(), cv::Mat(height, width, CV_8UC3, cv::Scalar::all(value))),
      "cannot write " + path.string());
}

void expect_box(const std::optional<finch::data::Box>& box, float x, float y, float w, float h) {
  finch::test::require(box.has_value(), "expected a box");
  EXPECT_FLOAT_EQ(box->x, x);
  EXPECT_FLOAT_EQ(box->y, y);
  EXPECT_FLOAT_EQ(box->width, w);
  EXPECT_FLOAT_EQ(box->height, h);
}

// --- CUB-200-2011 -------------------------------------------------------------------------

// CUB_200_2011/ with 3 classes and 6 images (ids 1..6; 1, 3, 5, 6 train), boxes, 2 parts and
// 3 attributes; attributes.txt sits next to CUB_200_2011/, as in the official archive.
fs::path make_cub(const fs::path& dir) {
  const fs::path root = dir / "CUB_200_2011";
  const char* files[] = {"001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111.jpg",
                         "001.Black_footed_Albatross/Black_Footed_Albatross_0002_55.jpg",
                         "002.Laysan_Albatross/Laysan_Albatross_0001_545.jpg",
                         "002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg",
                         "003.Sooty_Albatross/Sooty_Albatross_0001_1071.jpg",
                         "003.Sooty_Albatross/Sooty_Albatross_0002_796395.jpg"};
  std::string images;
  for (int i = 0; i < 6; ++i) {
    images += std::to_string(i + 1) + " " + files[i] + "\n";
    write_image(root / "images" / files[i], 8, 6, 10 * (i + 1));
  }
  write_text(root / "images.txt", images);
  write_text(root / "image_class_labels.txt", "1 1\n2 1\n3 2\n4 2\n5 3\n6 3\n");
  write_text(root / "train_test_split.txt", "1 1\n2 0\n3 1\n4 0\n5 1\n6 1\n");
  write_text(root / "classes.txt",
             "1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n3 003.Sooty_Albatross\n");
  write_text(root / "bounding_boxes.txt",
             "1 60.0 27.0 325.0 304.0\n2 1.5 2.0 3.0 4.0\n3 0.0 0.0 8.0 6.0\n"
             "4 1.0 1.0 1.0 1.0\n5 2.0 1.0 4.0 3.0\n6 0.5 0.5 7.0 5.0\n");
  write_text(root / "parts/parts.txt", "1 back\n2 left eye\n");
  std::string locs;
  for (int i = 1; i <= 6; ++i) {  // part 2 listed first: locations come back sorted
    locs += std::to_string(i) + " 2 " + (i % 2 ? "3.0 4.0 1\n" : "0.0 0.0 0\n");
    locs += std::to_string(i) + " 1 " + std::to_string(i) + ".5 2.0 1\n";
  }
  write_text(root / "parts/part_locs.txt", locs);
  write_text(dir / "attributes.txt",
             "1 has_bill_shape::curved_(up_or_down)\n2 has_bill_shape::dagger\n"
             "3 has_wing_color::blue\n");
  std::string attrs;
  for (int i = 1; i <= 6; ++i)
    for (int a = 1; a <= 3; ++a)
      attrs += std::to_string(i) + " " + std::to_string(a) + " " + ((i + a) % 2 ? "1" : "0") +
               " 3 27.08" + (i == 2 && a == 2 ? " 0.0" : "") + "\n";  // one 6-field line
  write_text(root / "attributes/image_attribute_labels.txt", attrs);
  return root;
}

const finch::data::CubDataset& as_cub(const finch::data::DatasetPtr& ds) {
  auto cub = dynamic_cast<const finch::data::CubDataset*>(ds.get());
  if (!cub) throw std::runtime_error("not a CubDataset");
  return *cub;
}

}  // namespace

TEST(CubFormat, SplitsLabelsBoxesPartsAttributes) {
  finch::test::TempDir dir;
  const fs::path root = make_cub(dir.path());
  EXPECT_EQ(finch::data::dataset_format("cub").splits(root, YAML::Node()),
            (std::vector<std::string>{"train", "test"}));
  auto train = open_dataset("cub", root, "train");
  auto test = open_dataset("cub", root, "test");
  ASSERT_EQ(train->size(), 4u);
  ASSERT_EQ(test->size(), 2u);
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{0, 1, 2, 2}));  // class ids 1-based
  EXPECT_EQ(test->labels(), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(train->class_names(),
            (std::vector<std::string>{"001.Black_footed_Albatross", "002.Laysan_Albatross",
                                      "003.Sooty_Albatross"}));
  EXPECT_EQ(test->describe(0), (root / "images/001.Black_footed_Albatross/"
                                       "Black_Footed_Albatross_0002_55.jpg")
                                   .string());
  EXPECT_EQ(train->load_rgb(1).at<cv::Vec3b>(0, 0), cv::Vec3b(30, 30, 30));
  EXPECT_EQ(train->load_rgb(1).size(), cv::Size(8, 6));
  expect_box(train->box(0), 60, 27, 325, 304);  // as in the file: already 0-based pixels
  expect_box(test->box(0), 1.5f, 2, 3, 4);

  const auto& cub = as_cub(train);
  ASSERT_TRUE(cub.has_parts());
  EXPECT_EQ(cub.part_names(), (std::vector<std::string>{"back", "left eye"}));
  const auto& parts = cub.parts(0);  // image 1
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].part_id, 0);  // file id 1 -> 0
  EXPECT_FLOAT_EQ(parts[0].x, 1.5f);
  EXPECT_TRUE(parts[0].visible);
  EXPECT_EQ(parts[1].part_id, 1);
  EXPECT_FLOAT_EQ(parts[1].y, 4.0f);
  EXPECT_TRUE(parts[1].visible);
  EXPECT_FALSE(as_cub(test).parts(0)[1].visible);  // image 2

  ASSERT_TRUE(cub.has_attributes());
  ASSERT_EQ(cub.attribute_names().size(), 3u);
  EXPECT_EQ(cub.attribute_names()[1], "has_bill_shape::dagger");
  EXPECT_EQ(cub.attributes(0), (std::vector<uint8_t>{0, 1, 0}));           // image 1: (1 + a) % 2
  EXPECT_EQ(as_cub(test).attributes(0), (std::vector<uint8_t>{1, 0, 1}));  // image 2

  // The folder holding CUB_200_2011/ works as the root too.
  EXPECT_EQ(open_dataset("cub", dir.path(), "train")->size(), 4u);
  EXPECT_CONTAINS(error_of([&] { open_dataset("cub", root, "val"); }), "'val'");
}

TEST(CubFormat, MissingPartsAndAttributesOnlyDisableThem) {
  finch::test::TempDir dir;
  const fs::path root = make_cub(dir.path());
  fs::remove(root / "parts/part_locs.txt");
  fs::remove(dir.path() / "attributes.txt");  // values still there, names not
  auto ds = open_dataset("cub", root, "train");
  const auto& cub = as_cub(ds);
  EXPECT_FALSE(cub.has_parts());
  EXPECT_TRUE(cub.parts(0).empty());
  ASSERT_TRUE(cub.has_attributes());
  EXPECT_TRUE(cub.attribute_names().empty());
  EXPECT_EQ(cub.attributes(0).size(), 3u);

  fs::remove_all(root / "attributes");
  auto bare = open_dataset("cub", root, "test");
  EXPECT_FALSE(as_cub(bare).has_attributes());
  EXPECT_TRUE(as_cub(bare).attributes(0).empty());
  EXPECT_EQ(bare->size(), 2u);
}

TEST(CubFormat, BadInputIsPrecise) {
  finch::test::TempDir dir;
  const fs::path root = make_cub(dir.path());
  auto err = [&] { return error_of([&] { open_dataset("cub", root, "train"); }); };

  write_text(root / "bounding_boxes.txt", "1 60.0 27.0 325.0 304.0\n2 1.5 2.0 three 4.0\n");
  std::string e = err();
  EXPECT_CONTAINS(e, (root / "bounding_boxes.txt").string() + ":2:");
  EXPECT_CONTAINS(e, "> 2 1.5 2.0 three 4.0");
  write_text(root / "bounding_boxes.txt", "1 60.0 27.0 325.0 304.0\n2 1 2 3 4\n3 0 0 8 6\n");
  e = err();  // image 4 listed in images.txt, absent here
  EXPECT_CONTAINS(e, "image id 4");
  EXPECT_CONTAINS(e, "images.txt");
  EXPECT_CONTAINS(e, "bounding_boxes.txt");
  fs::remove(root / "bounding_boxes.txt");
  EXPECT_CONTAINS(err(), "required file not found: " + (root / "bounding_boxes.txt").string());
  make_cub(dir.path());

  write_text(root / "image_class_labels.txt", "1 1\n2 1\n3 2\n4 2\n5 3\n6 4\n");
  e = err();
  EXPECT_CONTAINS(e, "image_class_labels.txt:6:");
  EXPECT_CONTAINS(e, "class id 4 is not listed in " + (root / "classes.txt").string());
  write_text(root / "image_class_labels.txt", "1 1\n2 1\n3 2\n4 2\n5 3\n6 3\n7 3\n");
  e = err();
  EXPECT_CONTAINS(e, "image_class_labels.txt:7:");
  EXPECT_CONTAINS(e, "image id 7 is not listed in " + (root / "images.txt").string());
  make_cub(dir.path());

  write_text(root / "train_test_split.txt", "1 1\n2 0\n3 1\n4 2\n5 1\n6 1\n");
  EXPECT_CONTAINS(err(), "train_test_split.txt:4:");
  make_cub(dir.path());
  write_text(root / "parts/part_locs.txt", "1 3 0 0 1\n");
  EXPECT_CONTAINS(err(), "part id 3 is not listed in");
  make_cub(dir.path());
  write_text(root / "attributes/image_attribute_labels.txt", "1 1 1 3\n");
  EXPECT_CONTAINS(err(), "image_attribute_labels.txt:1:");
  // An attributes.txt without a single attribute, and (without attributes.txt) an attribute
  // id that would size a vector per image: errors, not a crash or an out-of-memory.
  write_text(dir.path() / "attributes.txt", "\n\n");
  EXPECT_CONTAINS(err(), "attributes.txt lists no names");
  fs::remove(dir.path() / "attributes.txt");
  write_text(root / "attributes/image_attribute_labels.txt", "1 99999999999 1 3 2.5\n");
  e = err();
  EXPECT_CONTAINS(e, "image_attribute_labels.txt:1:");
  EXPECT_CONTAINS(e, "larger than 10000");
  make_cub(dir.path());
  write_text(root / "images.txt", "1 a.jpg\n1 b.jpg\n");
  EXPECT_CONTAINS(err(), "images.txt:2: image id 1 is listed twice");
  make_cub(dir.path());
  fs::remove(root / "images/003.Sooty_Albatross/Sooty_Albatross_0001_1071.jpg");
  auto ds = open_dataset("cub", root, "train");  // images are decoded lazily
  EXPECT_CONTAINS(error_of([&] { ds->load_rgb(2); }), "Sooty_Albatross_0001_1071.jpg");
}

// --- NABirds ------------------------------------------------------------------------------

namespace {

// nabirds/ with UUID image ids, class ids that are taxonomy nodes (0 root, 1 and 2 groups,
// 295 / 296 / 700 leaves that label images, 3 a leaf nobody uses) and hierarchy.txt.
fs::path make_nabirds(const fs::path& dir) {
  const fs::path root = dir / "nabirds";
  const std::vector<std::string> ids = {
      "0000139e-21dc-4d0c-bfe1-4cae3c85c829", "0000d9fc-4e02-4c06-a0af-a55cfb16b12b",
      "00019306-9d83-4334-b255-a447742edce3", "0001afd4-99a1-4a67-b940-d419413e23b3"};
  std::string images, labels, split, boxes, locs;
  const int class_of[] = {700, 295, 296, 700};
  for (size_t i = 0; i < ids.size(); ++i) {
    std::string rel = "0" + std::to_string(class_of[i]) + "/" + ids[i] + ".jpg";
    images += ids[i] + " " + rel + "\n";
    write_image(root / "images" / rel, 6, 4, 40 + static_cast<int>(i));
    labels += ids[i] + " " + std::to_string(class_of[i]) + "\n";
    split += ids[i] + (i < 3 ? " 1\n" : " 0\n");
    boxes += ids[i] + " 1 2 3 " + std::to_string(i + 1) + "\n";
    locs += ids[i] + " 0 1 1 1\n" + ids[i] + " 1 0 0 0\n";
  }
  write_text(root / "images.txt", images);
  write_text(root / "image_class_labels.txt", labels);
  write_text(root / "train_test_split.txt", split);
  write_text(root / "bounding_boxes.txt", boxes);
  write_text(root / "classes.txt",
             "0 Birds\n1 Perching Birds\n2 Seabirds\n3 Unused Leaf\n"
             "295 Black-footed Albatross\n296 Laysan Albatross\n700 House Sparrow (Male)\n");
  write_text(root / "hierarchy.txt", "1 0\n2 0\n3 1\n295 2\n296 2\n700 1\n");
  write_text(root / "sizes.txt", "0 1\n");
  write_text(root / "parts/parts.txt", "0 bill\n1 crown\n");
  write_text(root / "parts/part_locs.txt", locs);
  return root;
}

}  // namespace

TEST(NABirdsFormat, RemapsClassIdsAndKeepsParents) {
  finch::test::TempDir dir;
  const fs::path root = make_nabirds(dir.path());
  auto train = open_dataset("nabirds", root, "train");
  auto test = open_dataset("nabirds", root, "test");
  ASSERT_EQ(train->size(), 3u);
  ASSERT_EQ(test->size(), 1u);
  // Only the ids that label images, sorted: 295 -> 0, 296 -> 1, 700 -> 2.
  EXPECT_EQ(train->class_names(),
            (std::vector<std::string>{"Black-footed Albatross", "Laysan Albatross",
                                      "House Sparrow (Male)"}));
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{2, 0, 1}));
  EXPECT_EQ(test->labels(), (std::vector<int64_t>{2}));
  EXPECT_EQ(test->class_names(), train->class_names());
  const auto* nab = dynamic_cast<const finch::data::NABirdsDataset*>(train.get());
  ASSERT_NE(nab, nullptr);
  EXPECT_EQ(nab->original_class_id(0), 295);
  EXPECT_EQ(nab->original_class_id(2), 700);
  EXPECT_EQ(nab->parent_of(0), 2);
  EXPECT_EQ(nab->parent_of(2), 1);
  expect_box(train->box(1), 1, 2, 3, 2);
  EXPECT_EQ(train->load_rgb(1).at<cv::Vec3b>(0, 0)[0], 41);  // JPEG of a flat grey
  ASSERT_TRUE(nab->has_parts());
  EXPECT_EQ(nab->part_names(), (std::vector<std::string>{"bill", "crown"}));
  ASSERT_EQ(nab->parts(0).size(), 2u);
  EXPECT_TRUE(nab->parts(0)[0].visible);
  EXPECT_FALSE(nab->parts(0)[1].visible);
}

TEST(NABirdsFormat, BadInputIsPrecise) {
  finch::test::TempDir dir;
  const fs::path root = make_nabirds(dir.path());
  auto err = [&] { return error_of([&] { open_dataset("nabirds", root, "train"); }); };
  write_text(root / "hierarchy.txt", "1 0\n2\n");
  EXPECT_CONTAINS(err(), "hierarchy.txt:2:");
  write_text(root / "hierarchy.txt", "1 0\n2 9\n");
  EXPECT_CONTAINS(err(), "class id 9 is not listed in " + (root / "classes.txt").string());
  fs::remove(root / "hierarchy.txt");
  EXPECT_CONTAINS(err(), (root / "hierarchy.txt").string());
  make_nabirds(dir.path());
  write_text(root / "image_class_labels.txt", "0000139e-21dc-4d0c-bfe1-4cae3c85c829 701\n");
  EXPECT_CONTAINS(err(), "class id 701 is not listed in");
  make_nabirds(dir.path());
  write_text(root / "train_test_split.txt", "0000139e-21dc-4d0c-bfe1-4cae3c85c829 1\n");
  std::string e = err();
  EXPECT_CONTAINS(e, "image id 0000d9fc-4e02-4c06-a0af-a55cfb16b12b is listed in");
  EXPECT_CONTAINS(e, "train_test_split.txt");
}

// --- FGVC-Aircraft ------------------------------------------------------------------------

namespace {

// fgvc-aircraft-2013b/data with 4 images of 30 x 40 pixels (rows 20.. are the "banner").
fs::path make_aircraft(const fs::path& dir) {
  const fs::path root = dir / "fgvc-aircraft-2013b" / "data";
  const std::vector<std::string> ids = {"0034309", "0034958", "0037511", "1025794"};
  for (size_t i = 0; i < ids.size(); ++i) {
    cv::Mat img(40, 30, CV_8UC3, cv::Scalar::all(200));
    img.rowRange(20, 40).setTo(cv::Scalar::all(0));  // the banner
    fs::create_directories(root / "images");
    cv::imwrite((root / "images" / (ids[i] + ".jpg")).string(), img);
  }
  write_text(root / "variants.txt", "707-320\nBoeing 737-700\nA300B4\n");
  write_text(root / "families.txt", "Boeing 707\nBoeing 737\nA300\n");
  write_text(root / "manufacturers.txt", "Airbus\nBoeing\n");
  write_text(root / "images_train.txt", "0034309\n0034958\n");
  write_text(root / "images_val.txt", "0037511\n");
  write_text(root / "images_trainval.txt", "0034309\n0034958\n0037511\n");
  write_text(root / "images_test.txt", "1025794\n");
  write_text(root / "images_variant_train.txt", "0034309 707-320\n0034958 Boeing 737-700\n");
  write_text(root / "images_variant_val.txt", "0037511 A300B4\n");
  write_text(root / "images_variant_trainval.txt",
             "0034309 707-320\n0034958 Boeing 737-700\n0037511 A300B4\n");
  write_text(root / "images_variant_test.txt", "1025794 Boeing 737-700\n");
  write_text(root / "images_family_train.txt", "0034309 Boeing 707\n0034958 Boeing 737\n");
  write_text(root / "images_manufacturer_train.txt", "0034309 Boeing\n0034958 Boeing\n");
  write_text(root / "images_box.txt",
             "0034309 2 3 11 35\n0034958 1 1 30 40\n0037511 5 25 10 30\n1025794 1 1 5 5\n");
  return root;
}

YAML::Node aircraft_options(const std::string& yaml) { return YAML::Load(yaml); }

}  // namespace

TEST(AircraftFormat, SplitsLevelsBannerAndBoxes) {
  finch::test::TempDir dir;
  const fs::path root = make_aircraft(dir.path());
  EXPECT_EQ(finch::data::dataset_format("aircraft").splits(root, YAML::Node()),
            (std::vector<std::string>{"train", "val", "trainval", "test"}));
  auto train = open_dataset("aircraft", root, "train");
  EXPECT_EQ(train->class_names(),
            (std::vector<std::string>{"707-320", "Boeing 737-700", "A300B4"}));
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{0, 1}));
  EXPECT_EQ(open_dataset("aircraft", root, "val")->labels(), (std::vector<int64_t>{2}));
  EXPECT_EQ(open_dataset("aircraft", root, "trainval")->size(), 3u);
  EXPECT_EQ(open_dataset("aircraft", root, "test")->labels(), (std::vector<int64_t>{1}));
  EXPECT_EQ(train->describe(0), (root / "images/0034309.jpg").string());

  // Banner removed: 30 x 20 left, none of the dark banner rows.
  cv::Mat img = train->load_rgb(0);
  EXPECT_EQ(img.size(), cv::Size(30, 20));
  EXPECT_GT(img.at<cv::Vec3b>(19, 15)[0], 150);
  // 1-based inclusive (2, 3)-(11, 35) -> x 1, y 2, w 10, h 33, clipped to 20 rows: h 18.
  expect_box(train->box(0), 1, 2, 10, 18);
  expect_box(train->box(1), 0, 0, 30, 20);
  EXPECT_FALSE(open_dataset("aircraft", root, "val")->box(0).has_value());  // all in banner

  auto kept = open_dataset("aircraft", root, "train", aircraft_options("crop_banner: false"));
  EXPECT_EQ(kept->load_rgb(0).size(), cv::Size(30, 40));
  expect_box(kept->box(0), 1, 2, 10, 33);

  auto family = open_dataset("aircraft", root, "train", aircraft_options("level: family"));
  EXPECT_EQ(family->class_names(), (std::vector<std::string>{"Boeing 707", "Boeing 737", "A300"}));
  EXPECT_EQ(family->labels(), (std::vector<int64_t>{0, 1}));
  auto maker = open_dataset("aircraft", root, "train", aircraft_options("level: manufacturer"));
  EXPECT_EQ(maker->labels(), (std::vector<int64_t>{1, 1}));
  // fgvc-aircraft-2013b/ (the folder holding data/) works as the root too.
  EXPECT_EQ(open_dataset("aircraft", root.parent_path(), "test")->size(), 1u);
}

// Aircraft's boxes need the image's size; `data info` on a copy with missing images must
// report them as missing instead of failing on the first one (found while writing
// aircraft_fuzz's seed).
TEST(AircraftFormat, InfoReportsMissingImagesInsteadOfFailing) {
  finch::test::TempDir dir;
  const fs::path root = make_aircraft(dir.path());
  fs::remove(root / "images" / "0034958.jpg");
  finch::Config config = finch::Config::defaults();
  config.set_string("data.format", "aircraft");
  config.set_string("data.root", root.string());
  finch::data::InfoOptions options;
  options.progress = finch::ProgressStyle::kNone;
  const finch::data::DatasetInfo info = finch::data::dataset_info(config, options);
  ASSERT_EQ(info.splits.front().name, "train");
  EXPECT_EQ(info.splits.front().missing, 1u);
  EXPECT_EQ(info.splits.front().with_boxes, 1u);
  ASSERT_EQ(info.splits.front().problems.size(), 1u);
  EXPECT_CONTAINS(info.splits.front().problems[0], "0034958.jpg: file not found");
}

TEST(AircraftFormat, BadInputIsPrecise) {
  finch::test::TempDir dir;
  const fs::path root = make_aircraft(dir.path());
  auto err = [&](const std::string& split = "train", const std::string& yaml = "{}") {
    return error_of([&] { open_dataset("aircraft", root, split, aircraft_options(yaml)); });
  };
  EXPECT_CONTAINS(err("train", "level: model"), "unknown data.level 'model'");
  EXPECT_CONTAINS(err("all"), "'all'");
  EXPECT_CONTAINS(err("val", "level: family"),
                  "required file not found: " + (root / "images_family_val.txt").string());

  write_text(root / "images_variant_train.txt", "0034309 707-320\n0034958 Boeing 747-400\n");
  std::string e = err();
  EXPECT_CONTAINS(e, "images_variant_train.txt:2: label 'Boeing 747-400' is not listed in " +
                         (root / "variants.txt").string());
  EXPECT_CONTAINS(e, "> 0034958 Boeing 747-400");
  write_text(root / "images_variant_train.txt", "0034309 707-320\n");
  e = err();
  EXPECT_CONTAINS(e, "image id 0034958 is listed in " + (root / "images_train.txt").string());
  EXPECT_CONTAINS(e, "missing from " + (root / "images_variant_train.txt").string());
  write_text(root / "images_variant_train.txt",
             "0034309 707-320\n0034958 Boeing 737-700\n0037511 A300B4\n");
  EXPECT_CONTAINS(err(), "image id 0037511 is not listed in");
  make_aircraft(dir.path());
  write_text(root / "images_box.txt", "0034309 2 3 11\n");
  EXPECT_CONTAINS(err(), "images_box.txt:1:");
  write_text(root / "images_box.txt", "0034309 12 3 11 35\n");
  EXPECT_CONTAINS(err(), "xmin <= xmax");
  make_aircraft(dir.path());
  fs::remove(root / "images/0034309.jpg");
  auto ds = open_dataset("aircraft", root, "train");
  EXPECT_CONTAINS(error_of([&] { ds->load_rgb(0); }), "0034309.jpg");
}

// --- iNaturalist --------------------------------------------------------------------------

namespace {

// 2017-style root: train2017.json and val2017.json with categories 5, 2, 9 (unsorted in the
// file) and images under train_val_images/.
fs::path make_inat(const fs::path& dir) {
  const fs::path root = dir / "inat";
  for (const char* rel :
       {"train_val_images/Aves/Corvus corax/a.jpg", "train_val_images/Plantae/Acer rubrum/b.jpg",
        "train_val_images/Aves/Pica pica/c.jpg"})
    write_image(root / rel, 5, 3, 90);
  const std::string categories =
      R"("categories": [{"id": 5, "name": "Pica pica", "supercategory": "Aves"},
                        {"id": 2, "name": "Corvus corax", "supercategory": "Aves"},
                        {"id": 9, "name": "Acer rubrum", "supercategory": "Plantae"}])";
  write_text(root / "train2017.json",
             R"({"info": {"year": 2017}, "images": [
                 {"id": 10, "file_name": "train_val_images/Aves/Corvus corax/a.jpg", "width": 5, "height": 3},
                 {"id": 11, "file_name": "train_val_images/Plantae/Acer rubrum/b.jpg", "width": 5, "height": 3}],
               "annotations": [{"id": 1, "image_id": 11, "category_id": 9},
                               {"id": 2, "image_id": 10, "category_id": 2, "bbox": [1, 0.5, 3, 2]}],
               )" +
                 categories + "}");
  write_text(root / "val2017.json",
             R"({"images": [{"id": 20, "file_name": "train_val_images/Aves/Pica pica/c.jpg"}],
                 "annotations": [{"id": 3, "image_id": 20, "category_id": 5}], )" +
                 categories + "}");
  return root;
}

}  // namespace

TEST(INatFormat, SplitFilesLabelsAndCategoryOrder) {
  finch::test::TempDir dir;
  const fs::path root = make_inat(dir.path());
  EXPECT_EQ(finch::data::dataset_format("inat").splits(root, YAML::Node()),
            (std::vector<std::string>{"train", "val"}));
  auto train = open_dataset("inat", root, "train");  // train2017.json
  EXPECT_EQ(train->class_names(),
            (std::vector<std::string>{"Corvus corax", "Pica pica", "Acer rubrum"}));  // by id
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{0, 2}));
  EXPECT_EQ(train->describe(0), (root / "train_val_images/Aves/Corvus corax/a.jpg").string());
  EXPECT_EQ(train->load_rgb(1).size(), cv::Size(5, 3));
  expect_box(train->box(0), 1, 0.5f, 3, 2);
  EXPECT_FALSE(train->box(1).has_value());
  auto val = open_dataset("inat", root, "val");
  EXPECT_EQ(val->labels(), (std::vector<int64_t>{1}));
  EXPECT_EQ(val->class_names(), train->class_names());
  // The 2017 taxonomy: one level, the supercategory.
  finch::Config config = finch::Config::defaults();
  config.set_string("data.format", "inat");
  config.set_string("data.root", root.string());
  const auto h = finch::data::dataset_hierarchy(config, train->class_names());
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->levels, std::vector<std::string>{"supercategory"});
  EXPECT_EQ(h->ancestors[2], std::vector<std::string>{"Plantae"});
  // 2021 style: the ranks every category has, nearest first (the supercategory left out).
  const fs::path root21 = dir.path() / "inat21";
  write_text(root21 / "val.json", R"({"images": [], "annotations": [], "categories": [
      {"id": 0, "name": "Corvus corax", "genus": "Corvus", "family": "Corvidae", "kingdom": "Animalia", "supercategory": "Birds"},
      {"id": 1, "name": "Pica pica", "genus": "Pica", "family": "Corvidae", "kingdom": "Animalia", "supercategory": "Birds"},
      {"id": 2, "name": "Acer rubrum", "genus": "Acer", "family": "Sapindaceae", "kingdom": "Plantae", "supercategory": "Plants"}]})");
  config.set_string("data.root", root21.string());
  const auto h21 = finch::data::dataset_hierarchy(config, {"Pica pica", "Acer rubrum"});
  ASSERT_TRUE(h21.has_value());
  EXPECT_EQ(h21->levels, (std::vector<std::string>{"genus", "family", "kingdom"}));
  EXPECT_EQ(h21->ancestors[0], (std::vector<std::string>{"Pica", "Corvidae", "Animalia"}));

  // 2021 style: the exact name wins.
  fs::copy_file(root / "val2017.json", root / "val.json");
  EXPECT_EQ(open_dataset("inat", root, "val")->size(), 1u);
  fs::copy_file(root / "train2017.json", root / "train2018.json");
  EXPECT_CONTAINS(error_of([&] { open_dataset("inat", root, "train"); }), "several files");
  EXPECT_EQ(open_dataset("inat", root, "train2018")->size(), 2u);
}

TEST(INatFormat, BadInputIsPrecise) {
  finch::test::TempDir dir;
  const fs::path root = make_inat(dir.path());
  auto err = [&] { return error_of([&] { open_dataset("inat", root, "val"); }); };
  const fs::path file = root / "val2017.json";
  auto write_val = [&](const std::string& images, const std::string& annotations) {
    write_text(file, R"({"images": )" + images + R"(, "annotations": )" + annotations +
                         R"(, "categories": [{"id": 5, "name": "Pica pica"}]})");
  };
  write_val(R"([{"id": 20, "file_name": "c.jpg"}])", R"([{"image_id": 20, "category_id": 6}])");
  EXPECT_CONTAINS(err(), file.string() + ": annotations[0]: category_id 6 is not in");
  write_val(R"([{"id": 20, "file_name": "c.jpg"}])", R"([{"image_id": 21, "category_id": 5}])");
  EXPECT_CONTAINS(err(), "image_id 21 is not in \"images\"");
  write_val(R"([{"id": 20, "file_name": "c.jpg"}, {"id": 22, "file_name": "d.jpg"}])",
            R"([{"image_id": 20, "category_id": 5}])");
  EXPECT_CONTAINS(err(), "image id 22");
  write_val(R"([{"id": 20}])", "[]");
  EXPECT_CONTAINS(err(), "images[0] has no \"file_name\"");
  write_text(file, "{\"images\": [");
  EXPECT_CONTAINS(err(), "not valid JSON");
  // A number JSON cannot hold threw out_of_range past the reader (inat_fuzz).
  write_val(R"([{"id": 1e999, "file_name": "c.jpg"}])", "[]");
  EXPECT_CONTAINS(err(), "not valid JSON");
  fs::remove(file);
  EXPECT_CONTAINS(err(), "no val.json or val20XX.json in " + root.string());
}
