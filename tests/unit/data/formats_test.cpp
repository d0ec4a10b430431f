// The idx, imagefolder and csv formats on fixtures written in their exact on-disk layout.
#include "finch/data/formats.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <opencv2/imgcodecs.hpp>

#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/io/image.h"
#include "test_support.h"

namespace fs = std::filesystem;
using finch::data::open_dataset;
using finch::test::error_of;
using finch::test::write_text;

namespace {

std::vector<std::string> splits_of(const std::string& format, const fs::path& root,
                                   const YAML::Node& options = YAML::Node()) {
  return finch::data::dataset_format(format).splits(root, options);
}

// --- idx ---------------------------------------------------------------------------------

std::string idx_bytes(const std::vector<uint32_t>& shape, const std::vector<uint8_t>& data) {
  std::string out = {0, 0, 0x08, static_cast<char>(shape.size())};
  for (uint32_t d : shape)
    for (int shift : {24, 16, 8, 0}) out.push_back(static_cast<char>((d >> shift) & 0xFF));
  out.append(data.begin(), data.end());
  return out;
}

void write_idx(const fs::path& path, const std::vector<uint32_t>& shape,
               const std::vector<uint8_t>& data, bool gz) {
  std::string bytes = idx_bytes(shape, data);
  if (!gz) return finch::write_file_atomic(path, bytes);
  gzFile f = gzopen(path.c_str(), "wb");
  finch::test::require(f != nullptr, "gzopen " + path.string());
  gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
  finch::test::require(gzclose(f) == Z_OK, "gzclose " + path.string());
}

// n images of 3x4 where image i has pixel (y, x) = 10 * i + 4 * y + x.
void write_mnist_split(const fs::path& root, const std::string& prefix, uint32_t n,
                       std::vector<uint8_t> labels, bool gz) {
  std::vector<uint8_t> pixels;
  for (uint32_t i = 0; i < n; ++i)
    for (int p = 0; p < 12; ++p) pixels.push_back(static_cast<uint8_t>(10 * i + p));
  std::string ext = gz ? ".gz" : "";
  write_idx(root / (prefix + "-images-idx3-ubyte" + ext), {n, 3, 4}, pixels, gz);
  write_idx(root / (prefix + "-labels-idx1-ubyte" + ext), {static_cast<uint32_t>(labels.size())},
            labels, gz);
}

}  // namespace

TEST(IdxFormat, FashionLayoutGzippedAndPlain) {
  finch::test::TempDir dir;
  fs::path root = dir / "fashion-mnist";
  fs::create_directories(root);
  write_mnist_split(root, "train", 5, {0, 9, 3, 3, 1}, true);
  write_mnist_split(root, "t10k", 2, {7, 2}, false);
  EXPECT_EQ(splits_of("idx", root), (std::vector<std::string>{"train", "test"}));

  auto train = open_dataset("idx", root.string() + "/", "train");  // trailing slash too
  ASSERT_EQ(train->size(), 5u);
  EXPECT_EQ(train->class_names().size(), 10u);
  EXPECT_EQ(train->class_names()[0], "T-shirt/top");
  EXPECT_EQ(train->class_names()[9], "Ankle boot");
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{0, 9, 3, 3, 1}));
  cv::Mat img = train->load_rgb(2);
  ASSERT_EQ(img.type(), CV_8UC3);
  ASSERT_EQ(img.size(), cv::Size(4, 3));
  EXPECT_EQ(img.at<cv::Vec3b>(1, 2), cv::Vec3b(26, 26, 26));  // 10 * 2 + 4 * 1 + 2
  EXPECT_EQ(train->describe(3), (root / "train-images-idx3-ubyte.gz").string() + "#3");
  EXPECT_FALSE(train->box(0).has_value());

  auto test = open_dataset("idx", root, "test");
  EXPECT_EQ(test->labels(), (std::vector<int64_t>{7, 2}));
  EXPECT_CONTAINS(error_of([&] { open_dataset("idx", root, "val"); }), "val");
}

TEST(IdxFormat, DigitNamesAndClassesFile) {
  finch::test::TempDir dir;
  fs::path root = dir / "mnist";
  fs::create_directories(root);
  write_mnist_split(root, "train", 2, {4, 5}, true);
  auto digits = open_dataset("idx", root, "train");
  EXPECT_EQ(digits->class_names()[4], "4");
  EXPECT_EQ(splits_of("idx", root), (std::vector<std::string>{"train"}));

  write_text(root / "classes.txt", "zero\none\ntwo\nthree\nfour\nfive\n");
  auto named = open_dataset("idx", root, "train");
  EXPECT_EQ(named->class_names().size(), 6u);
  EXPECT_EQ(named->class_names()[5], "five");

  write_text(root / "classes.txt", "a\nb\n");  // labels 4 and 5 no longer fit
  std::string message = error_of([&] { open_dataset("idx", root, "train"); });
  EXPECT_CONTAINS(message, "train-labels-idx1-ubyte.gz");
  EXPECT_CONTAINS(message, "sample 0");
}

TEST(IdxFormat, BadFilesAreReported) {
  finch::test::TempDir dir;
  write_mnist_split(dir.path(), "train", 3, {1, 2}, true);  // 3 images, 2 labels
  std::string message = error_of([&] { open_dataset("idx", dir.path(), "train"); });
  EXPECT_CONTAINS(message, "2 labels");
  EXPECT_CONTAINS(message, "3 images");

  write_mnist_split(dir.path(), "t10k", 2, {1, 10}, true);
  message = error_of([&] { open_dataset("idx", dir.path(), "test"); });
  EXPECT_CONTAINS(message, "t10k-labels-idx1-ubyte.gz");
  EXPECT_CONTAINS(message, "label 10 of sample 1");

  EXPECT_CONTAINS(error_of([&] { open_dataset("idx", dir / "nowhere", "train"); }), "nowhere");
  finch::test::TempDir empty;
  EXPECT_CONTAINS(error_of([&] { open_dataset("idx", empty.path(), "train"); }),
                  "train-images-idx3-ubyte");
}

// The real Fashion-MNIST test set (Debian package dataset-fashion-mnist, a build dependency):
// 10,000 images of 28x28, exactly 1,000 per class.
TEST(IdxFormat, RealFashionMnistTestSet) {
  auto test = open_dataset("idx", "/usr/share/datasets/fashion-mnist", "test");
  ASSERT_EQ(test->size(), 10000u);
  std::vector<int> per_class(10);
  for (int64_t label : test->labels()) ++per_class.at(label);
  EXPECT_EQ(per_class, std::vector<int>(10, 1000));
  EXPECT_EQ(test->load_rgb(0).size(), cv::Size(28, 28));
  EXPECT_EQ(test->class_names()[9], "Ankle boot");
}

// --- imagefolder -------------------------------------------------------------------------

namespace {

void write_png(const fs::path& path, int value) {
  fs::create_directories(path.parent_path());
  finch::io::write_image_rgb(path, cv::Mat(4, 6, CV_8UC3, cv::Scalar::all(value)));
}

}  // namespace

TEST(ImageFolderFormat, SplitLayoutSharesClassIndices) {
  finch::test::TempDir dir;
  fs::path root = dir.path();
  write_png(root / "train/cat/b.png", 1);
  write_png(root / "train/cat/a.png", 2);
  write_png(root / "train/dog/x.jpg", 3);
  write_png(root / "train/dog/nested/y.png", 4);  // sub-folders are searched, like torchvision
  write_png(root / "train/eel/e.png", 5);         // only in train
  write_png(root / "val/dog/v.png", 6);
  write_png(root / "val/fox/f.png", 7);  // only in val
  write_png(root / "test/cat/t.png", 8);
  write_text(root / "train/cat/notes.txt", "not an image");
  write_text(root / "train/cat/.DS_Store", "x");
  write_png(root / "train/cat/.hidden.png", 9);
  write_png(root / "train/.ipynb_checkpoints/z.png", 9);  // hidden folder: not a class
  write_png(root / "val/cat/.ipynb_checkpoints/w.png", 9);

  EXPECT_EQ(splits_of("imagefolder", root), (std::vector<std::string>{"train", "val", "test"}));
  auto train = open_dataset("imagefolder", root, "train");
  EXPECT_EQ(train->class_names(), (std::vector<std::string>{"cat", "dog", "eel", "fox"}));
  ASSERT_EQ(train->size(), 5u);
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{0, 0, 1, 1, 2}));
  EXPECT_EQ(train->describe(0), (root / "train/cat/a.png").string());  // files sorted
  EXPECT_EQ(train->load_rgb(0).at<cv::Vec3b>(0, 0), cv::Vec3b(2, 2, 2));

  auto val = open_dataset("imagefolder", root, "val");
  EXPECT_EQ(val->class_names(), train->class_names());
  EXPECT_EQ(val->labels(), (std::vector<int64_t>{1, 3}));
  EXPECT_EQ(open_dataset("imagefolder", root, "test")->labels(), (std::vector<int64_t>{0}));
  EXPECT_CONTAINS(error_of([&] { open_dataset("imagefolder", root, "all"); }), "'all'");

  fs::create_directories(root / "val/gnu");  // a class with no image anywhere
  EXPECT_CONTAINS(error_of([&] { open_dataset("imagefolder", root, "train"); }), "gnu");
}

TEST(ImageFolderFormat, FlatLayoutAndLazyDecoding) {
  finch::test::TempDir dir;
  fs::path root = dir.path();
  write_png(root / "b_dog/1.png", 10);
  write_png(root / "a_cat/1.bmp", 20);
  finch::write_file_atomic(root / "a_cat/2.jpg", "corrupt bytes");  // found, decoded lazily
  write_text(root / "README.txt", "files at the root are ignored");

  EXPECT_EQ(splits_of("imagefolder", root), (std::vector<std::string>{"train"}));
  for (const char* split : {"train", "all"}) {
    auto ds = open_dataset("imagefolder", root, split);
    EXPECT_EQ(ds->class_names(), (std::vector<std::string>{"a_cat", "b_dog"}));
    ASSERT_EQ(ds->size(), 3u);
    EXPECT_EQ(ds->labels(), (std::vector<int64_t>{0, 0, 1}));
    EXPECT_EQ(ds->load_rgb(0).at<cv::Vec3b>(3, 5), cv::Vec3b(20, 20, 20));
    EXPECT_CONTAINS(error_of([&] { ds->load_rgb(1); }), (root / "a_cat/2.jpg").string());
  }
  EXPECT_CONTAINS(error_of([&] { open_dataset("imagefolder", root, "test"); }), "test");

  fs::create_directories(root / "c_empty");
  EXPECT_CONTAINS(error_of([&] { open_dataset("imagefolder", root, "train"); }), "c_empty");
  finch::test::TempDir empty;
  EXPECT_CONTAINS(error_of([&] { open_dataset("imagefolder", empty.path(), "train"); }),
                  "no class folders");
}

// --- csv ---------------------------------------------------------------------------------

TEST(CsvFormat, HeaderSplitsBoxesAndQuotes) {
  finch::test::TempDir dir;
  fs::path root = dir.path();
  write_png(root / "imgs/a.png", 1);
  write_png(root / "imgs/b,c.png", 2);
  write_png(root / "imgs/d.png", 3);
  write_png(root / "e.png", 4);
  write_text(root / "manifest.csv",
             "path,label,split,x,y,w,h\r\n"
             "imgs/a.png,cat,train,1,2,3,4\r\n"
             "\"imgs/b,c.png\",\"say \"\"hi\"\"\",train,0.5,0,2,2\r\n"
             "\r\n"
             "imgs/d.png, 10 ,val,,,,\r\n"
             "e.png,2,train,0,0,1,1\r\n");
  EXPECT_EQ(splits_of("csv", root), (std::vector<std::string>{"train", "val"}));

  auto train = open_dataset("csv", root, "train");
  // Labels are names, sorted as strings ("10" < "2" < "cat" < "say ...").
  EXPECT_EQ(train->class_names(), (std::vector<std::string>{"10", "2", "cat", "say \"hi\""}));
  ASSERT_EQ(train->size(), 3u);
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{2, 3, 1}));
  EXPECT_EQ(train->describe(1), (root / "imgs/b,c.png").string());
  EXPECT_EQ(train->load_rgb(1).at<cv::Vec3b>(0, 0), cv::Vec3b(2, 2, 2));
  ASSERT_TRUE(train->box(0).has_value());
  EXPECT_EQ(train->box(0)->x, 1.f);
  EXPECT_EQ(train->box(0)->height, 4.f);
  EXPECT_EQ(train->box(1)->x, 0.5f);

  auto val = open_dataset("csv", root, "val");
  EXPECT_EQ(val->class_names(), train->class_names());
  EXPECT_EQ(val->labels(), (std::vector<int64_t>{0}));
  EXPECT_FALSE(val->box(0).has_value());  // empty box fields: no box
  EXPECT_CONTAINS(error_of([&] { open_dataset("csv", root, "test"); }), "splits: train, val");
}

TEST(CsvFormat, NoHeaderAndChoosingTheManifest) {
  finch::test::TempDir dir;
  fs::path root = dir.path();
  write_png(root / "a.png", 1);
  write_text(root / "one.csv", "a.png,x\na.png,y\n");
  auto ds = open_dataset("csv", root, "train");
  EXPECT_EQ(ds->size(), 2u);
  EXPECT_EQ(splits_of("csv", root), (std::vector<std::string>{"train"}));

  write_text(root / "two.csv", "a.png,x,test\n");
  EXPECT_CONTAINS(error_of([&] { open_dataset("csv", root, "train"); }), "csv_file");
  YAML::Node options = YAML::Load("{csv_file: two.csv, root: ignored}");
  EXPECT_EQ(open_dataset("csv", root, "test", options)->size(), 1u);
  EXPECT_EQ(open_dataset("csv", root / "one.csv", "train")->size(), 2u);  // root names the CSV

  finch::test::TempDir empty;
  EXPECT_CONTAINS(error_of([&] { open_dataset("csv", empty.path(), "train"); }), "no *.csv");
}

TEST(CsvFormat, BadLinesReportFileAndLine) {
  finch::test::TempDir dir;
  const fs::path csv = dir / "data.csv";
  struct Case {
    std::string text, expect;
  };
  std::vector<Case> cases = {
      {"a.png,cat\nb.png,dog,train\n", ":2: expected 2 fields, found 3"},
      {"a.png,cat\nb.png,dog,1,2,3\n", ":2: expected 2 fields"},
      {"a.png,cat,1,2\n", ":1: expected path,label"},
      {"a.png,cat\n,dog\n", ":2: empty path"},
      {"a.png,\n", ":1: empty label"},
      {"path,label,x,y,w,h\na.png,cat,1,2,three,4\n", ":2: box w is not a number: 'three'"},
      {"path,label,x,y,w,h\na.png,cat,1,2,0,4\n", ":2: box width and height must be positive"},
      {"a.png,cat\n\"b.png,dog\n", ":2: unterminated quoted field"},
      {"path,label,colour\n", ":1: unknown column 'colour'"},
      {"path,split\n", ":1: the header has no 'label' column"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.text);
    write_text(csv, c.text);
    std::string message = error_of([&] { open_dataset("csv", dir.path(), "train"); });
    EXPECT_CONTAINS(message, csv.string() + c.expect);
  }
  write_text(csv, "path,label\n");
  EXPECT_CONTAINS(error_of([&] { open_dataset("csv", dir.path(), "train"); }), "lists no images");
}
