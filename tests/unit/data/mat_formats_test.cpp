// The MATLAB-annotated benchmarks (cars in both layouts, dogs, flowers102), the box crop and
// `data info`, on fixtures written in their exact on-disk layout (../shared/docs/datasets.md):
// the .mat files are written with libmatio itself (v5, compressed v5 and v7.3/HDF5), the XML
// boxes and tiny images by the test; then bad variants of each.
#include <gtest/gtest.h>
#include <matio.h>
#include <zlib.h>

#include <array>
#include <functional>
#include <opencv2/imgcodecs.hpp>

#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/data/box_crop.h"
#include "finch/data/formats.h"
#include "finch/data/from_config.h"
#include "finch/data/info.h"
#include "finch/io/mat.h"
#include "test_support.h"

namespace fs = std::filesystem;
using finch::data::open_dataset;
using finch::test::error_of;
using finch::test::write_text;

namespace {

// --- writing .mat files with libmatio --------------------------------------------------------

using VarPtr = matvar_t*;  // ownership passes to the enclosing struct/cell or to write_mat

VarPtr mat_number(double v, matio_classes cls = MAT_C_DOUBLE) {
  size_t dims[2] = {1, 1};
  switch (cls) {
    case MAT_C_UINT8: {
      uint8_t x = static_cast<uint8_t>(v);
      return Mat_VarCreate(nullptr, cls, MAT_T_UINT8, 2, dims, &x, 0);
    }
    case MAT_C_UINT16: {
      uint16_t x = static_cast<uint16_t>(v);
      return Mat_VarCreate(nullptr, cls, MAT_T_UINT16, 2, dims, &x, 0);
    }
    default:
      return Mat_VarCreate(nullptr, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, &v, 0);
  }
}

VarPtr mat_numbers(const char* name, std::vector<double> v, bool column = false) {
  size_t dims[2] = {column ? v.size() : 1, column ? 1 : v.size()};
  return Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, v.data(), 0);
}

VarPtr mat_text(const std::string& s) {
  size_t dims[2] = {1, s.size()};
  return Mat_VarCreate(nullptr, MAT_C_CHAR, MAT_T_UTF8, 2, dims, const_cast<char*>(s.data()), 0);
}

VarPtr mat_cell(const char* name, const std::vector<std::string>& items, bool column = false) {
  size_t dims[2] = {column ? items.size() : 1, column ? 1 : items.size()};
  VarPtr cell = Mat_VarCreate(name, MAT_C_CELL, MAT_T_CELL, 2, dims, nullptr, 0);
  for (size_t i = 0; i < items.size(); ++i)
    Mat_VarSetCell(cell, static_cast<int>(i), mat_text(items[i]));
  return cell;
}

// A 1xN struct array; element i's fields come from make(i, field name).
VarPtr mat_struct(const char* name, const std::vector<std::string>& fields, size_t n,
                  const std::function<VarPtr(size_t, const std::string&)>& make) {
  std::vector<const char*> names;
  for (const auto& f : fields) names.push_back(f.c_str());
  names.push_back(nullptr);
  size_t dims[2] = {1, n};
  VarPtr s = Mat_VarCreateStruct2(name, 2, dims, names.data());
  for (size_t i = 0; i < n; ++i)
    for (const auto& f : fields) Mat_VarSetStructFieldByName(s, f.c_str(), i, make(i, f));
  return s;
}

void write_mat(const fs::path& path, std::vector<VarPtr> vars, mat_ft version = MAT_FT_MAT5,
               matio_compression compression = MAT_COMPRESSION_NONE) {
  fs::create_directories(path.parent_path());
  mat_t* mat = Mat_CreateVer(path.c_str(), nullptr, version);
  finch::test::require(mat != nullptr,
                       "libmatio cannot create " + path.string() + " (v7.3 needs HDF5 support)");
  for (VarPtr v : vars) {
    EXPECT_EQ(Mat_VarWrite(mat, v, compression), 0) << v->name;
    Mat_VarFree(v);
  }
  Mat_Close(mat);
}

// A width x height BGR image of one grey value.
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

// --- Stanford Cars ---------------------------------------------------------------------------

const std::vector<std::string> kCarClasses = {"AM General Hummer SUV 2000", "Acura RL Sedan 2012",
                                              "Audi TT RS Coupe 2012"};

struct CarAnno {
  std::string fname;
  double x1, y1, x2, y2;
  int cls;
  int test = 0;  // combined layout only
};

VarPtr car_annotations(const std::vector<CarAnno>& annos, bool combined,
                       const std::string& class_field = "class") {
  std::vector<std::string> fields = {"bbox_x1",   "bbox_y1",
                                     "bbox_x2",   "bbox_y2",
                                     class_field, combined ? "relative_im_path" : "fname"};
  if (combined) fields.push_back("test");
  // Field classes as the official files have them: small integers (uint8/uint16), text.
  return mat_struct("annotations", fields, annos.size(), [&](size_t i, const std::string& f) {
    const CarAnno& a = annos[i];
    if (f == "bbox_x1") return mat_number(a.x1, MAT_C_UINT16);
    if (f == "bbox_y1") return mat_number(a.y1, MAT_C_UINT16);
    if (f == "bbox_x2") return mat_number(a.x2, MAT_C_UINT16);
    if (f == "bbox_y2") return mat_number(a.y2, MAT_C_UINT16);
    if (f == "test") return mat_number(a.test, MAT_C_UINT8);
    if (f == "fname" || f == "relative_im_path") return mat_text(a.fname);
    return mat_number(a.cls, MAT_C_UINT8);
  });
}

// Devkit layout: meta and train annotations under devkit/, the labelled test annotations at
// the root (where the separately released file usually lands). Compressed v5, like MATLAB's.
fs::path make_cars_devkit(const fs::path& root) {
  write_mat(root / "devkit/cars_meta.mat", {mat_cell("class_names", kCarClasses)}, MAT_FT_MAT5,
            MAT_COMPRESSION_ZLIB);
  write_mat(root / "devkit/cars_train_annos.mat",
            {car_annotations({{"00001.jpg", 2, 3, 11, 7, 1},
                              {"00002.jpg", 1, 1, 20, 10, 2},
                              {"00003.jpg", 5, 2, 6, 4, 3},
                              {"00004.jpg", 1, 1, 4, 4, 3}},
                             false)},
            MAT_FT_MAT5, MAT_COMPRESSION_ZLIB);
  write_mat(
      root / "cars_test_annos_withlabels.mat",
      {car_annotations({{"00001.jpg", 1, 1, 10, 10, 2}, {"00002.jpg", 3, 3, 8, 8, 1}}, false)},
      MAT_FT_MAT5, MAT_COMPRESSION_ZLIB);
  for (int i = 1; i <= 4; ++i)
    write_image(root / "cars_train" / cv::format("%05d.jpg", i), 20, 10, 40 * i);
  for (int i = 1; i <= 2; ++i)
    write_image(root / "cars_test" / cv::format("%05d.jpg", i), 20, 10, 30 * i);
  return root;
}

// Combined layout, written as MATLAB v7.3 (HDF5) to prove that path through libmatio.
fs::path make_cars_combined(const fs::path& root) {
  std::vector<CarAnno> annos;
  for (int i = 1; i <= 5; ++i)
    annos.push_back(
        {cv::format("car_ims/%06d.jpg", i), 1.0 * i, 2, 10.0 + i, 9, 1 + i % 2, i >= 4 ? 1 : 0});
  write_mat(root / "cars_annos.mat",
            {car_annotations(annos, true), mat_cell("class_names", {"Audi R8", "BMW M3"})},
            MAT_FT_MAT73);
  for (int i = 1; i <= 5; ++i)
    write_image(root / cv::format("car_ims/%06d.jpg", i), 24, 12, 20 * i);
  return root;
}

}  // namespace

TEST(MatFile, ReadsNumbersTextCellsAndStructsInV5AndV73) {
  finch::test::TempDir dir;
  for (mat_ft version : {MAT_FT_MAT5, MAT_FT_MAT73}) {
    const fs::path file = dir / (version == MAT_FT_MAT5 ? "v5.mat" : "v73.mat");
    write_mat(file,
              {mat_numbers("labels", {3, 1, 2}, true), mat_cell("names", {"a b", "c"}),
               car_annotations({{"x.jpg", 1, 2, 3, 4, 2}}, false)},
              version);
    finch::io::MatFile mat(file);
    EXPECT_TRUE(mat.has("labels"));
    EXPECT_FALSE(mat.has("lables"));
    EXPECT_EQ(mat.read("labels").numbers(), (std::vector<double>{3, 1, 2}));
    EXPECT_EQ(mat.read("names").strings(), (std::vector<std::string>{"a b", "c"}));
    finch::io::MatVar annos = mat.read("annotations");
    ASSERT_EQ(annos.size(), 1u);
    EXPECT_EQ(annos.field(0, "fname").text(), "x.jpg");
    EXPECT_EQ(annos.field(0, "class").number(), 2.0);    // uint8
    EXPECT_EQ(annos.field(0, "bbox_y2").number(), 4.0);  // uint16
    // Errors name the file, the variable (and field) and what was expected.
    const std::string missing = error_of([&] { mat.read("lables"); });
    EXPECT_CONTAINS(missing, file.string());
    EXPECT_CONTAINS(missing, "'lables' not found");
    EXPECT_CONTAINS(missing, "labels");
    const std::string not_cell = error_of([&] { mat.read("labels").strings(); });
    EXPECT_CONTAINS(not_cell, "'labels': expected a cell array of strings, found a 3x1 double");
    EXPECT_CONTAINS(error_of([&] { annos.field(0, "fname").number(); }),
                    "field 'fname': expected one number");
    const std::string fields = error_of([&] { annos.require_fields({"fname", "label"}); });
    EXPECT_CONTAINS(fields, "'annotations': struct has no field label");
  }
  EXPECT_CONTAINS(error_of([&] { finch::io::MatFile(dir / "none.mat"); }), "none.mat");
  write_text(dir / "page.mat", "<html>404 Not Found</html>\n");
  EXPECT_CONTAINS(error_of([&] { finch::io::MatFile(dir / "page.mat"); }),
                  "not a readable MATLAB .mat file");
}

// --- hand-built level-5 files: what libmatio would not write ------------------------------

// A level-5 file assembled word by word (little-endian), for damage libmatio never writes.
struct Level5Bytes {
  std::string bytes;
  Level5Bytes() {
    bytes = "MATLAB 5.0 MAT-file, hand-built by finch's tests";
    bytes.resize(116, ' ');                 // descriptive text
    bytes += std::string(8, '\0');          // subsystem data offset
    bytes += std::string("\x00\x01IM", 4);  // version 0x0100, little-endian
  }
  Level5Bytes& u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) bytes += static_cast<char>((v >> (8 * i)) & 0xFF);
    return *this;
  }
  Level5Bytes& raw(const std::string& b) {
    bytes += b;
    return *this;
  }
  // The opening of a miMATRIX body: array flags (class), 2-D dimensions, a small-element name.
  Level5Bytes& matrix_head(uint32_t cls, uint32_t rows, uint32_t cols, char name) {
    u32(6).u32(8).u32(cls).u32(0);                                         // array flags
    u32(5).u32(8).u32(rows).u32(cols);                                     // dimensions
    u32((1u << 16) | 1).raw(std::string(1, name) + std::string(3, '\0'));  // name
    return *this;
  }
  fs::path write(const fs::path& file) const {
    write_text(file, bytes);
    return file;
  }
};

// A variable that declares a 100000 x 100000 double matrix but holds one value: refused from
// its headers when the file opens, before libmatio would allocate 80 GB for it.
TEST(MatFile, RefusesAVariableLargerThanTheFileCanHold) {
  finch::test::TempDir dir("finch-mat-hostile");
  Level5Bytes mat;
  mat.u32(14).u32(56).matrix_head(6, 100000, 100000, 'x').u32(9).u32(8).raw(std::string(8, '\0'));
  const fs::path file = mat.write(dir.path() / "hostile.mat");
  const std::string error = error_of([&] { finch::io::MatFile{file}; });
  EXPECT_CONTAINS(error, file.string() + ": variable 'x', byte 176");
  EXPECT_CONTAINS(error, "10000000000 elements declared but the data holds 8 bytes");
}

// A 1 x 8 char variable whose UTF-16 data element holds one character (cars_fuzz): text()
// read 16 bytes from matio's 2-byte buffer; now the damage is named when the file opens.
TEST(MatFile, RefusesAStringShorterThanItsDimensions) {
  finch::test::TempDir dir("finch-mat-short");
  Level5Bytes mat;
  mat.u32(14).u32(48).matrix_head(4, 1, 8, 's').u32((2u << 16) | 17).raw(std::string("A\0\0\0", 4));
  const fs::path file = mat.write(dir.path() / "short.mat");
  EXPECT_CONTAINS(error_of([&] { finch::io::MatFile{file}; }),
                  "variable 's', byte 176: 8 elements declared but the data holds 2 bytes");
}

std::string deflate(const std::string& bytes) {
  uLongf size = compressBound(bytes.size());
  std::string out(size, '\0');
  EXPECT_EQ(compress(reinterpret_cast<Bytef*>(out.data()), &size,
                     reinterpret_cast<const Bytef*>(bytes.data()), bytes.size()),
            Z_OK);
  out.resize(size);
  return out;
}

// Every size libmatio would allocate from (found by cars_fuzz, flowers102_fuzz and dogs_fuzz:
// Mat_GetDir asking for 1.4-1.8 GB while listing a 2 KB file's variables) is checked against
// the bytes that hold it before libmatio opens the file; each damage gets a message naming
// the file, the variable and the byte.
TEST(MatFile, RefusesDamagedStructureBeforeLibmatioAllocates) {
  finch::test::TempDir dir("finch-mat-damaged");
  struct Case {
    const char* name;
    Level5Bytes mat;
    const char* expected;
  };
  std::vector<Case> cases;
  {
    Level5Bytes m;
    m.u32(14).u32(0x7FFFFFF0).matrix_head(6, 1, 1, 'a');
    cases.push_back(
        {"element", m, "byte 128: a data element declares 2147483632 bytes where 40 remain"});
  }
  {
    Level5Bytes m;  // a compressed variable whose matrix claims 4 GB inflated
    std::string inner;
    for (uint32_t v : {14u, 0xF0000000u})
      for (int i = 0; i < 4; ++i) inner += static_cast<char>((v >> (8 * i)) & 0xFF);
    const std::string z = deflate(inner + std::string(64, '\0'));
    m.u32(15).u32(static_cast<uint32_t>(z.size())).raw(z);
    cases.push_back({"bomb", m, "declares 4026531840 bytes inflated"});
  }
  {
    Level5Bytes m;  // 10^8 cells, none present
    m.u32(14).u32(40).matrix_head(1, 1, 100000000, 'c');
    cases.push_back(
        {"cells", m, "variable 'c', byte 176: 100000000 cells declared where 0 bytes remain"});
  }
  {
    Level5Bytes m;  // a struct whose field names come in slots of 0 bytes
    m.u32(14)
        .u32(64)
        .matrix_head(2, 1, 1, 's')
        .u32((4u << 16) | 5)
        .u32(0)
        .u32(1)
        .u32(8)
        .raw(std::string("fname\0\0\0", 8));
    cases.push_back({"fields", m, "variable 's', byte 184: 8 bytes of field names in slots of 0"});
  }
  {
    Level5Bytes m;  // 40 cells, each the only element of the one before
    const int depth = 40;
    std::vector<uint32_t> sizes(depth + 1, 0);
    for (int d = depth - 1; d >= 0; --d) sizes[d] = 40 + 8 + sizes[d + 1];
    for (int d = 0; d < depth; ++d) m.u32(14).u32(sizes[d]).matrix_head(1, 1, 1, 'n');
    m.u32(14).u32(0);
    cases.push_back({"nested", m, "cells or structs nested more than 32 deep"});
  }
  {
    Level5Bytes m;  // a sparse matrix: no dataset has one
    m.u32(14).u32(40).matrix_head(5, 1, 1, 'p');
    cases.push_back({"sparse", m, "variable 'p', byte 136: array class 5"});
  }
  {
    Level5Bytes m;  // a tag cut off at the end of the file
    m.u32(14).u32(44).matrix_head(6, 1, 1, 'd').u32(9);
    cases.push_back({"cut", m, "byte 176: a data element's tag is cut off (4 bytes left)"});
  }
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const fs::path file = c.mat.write(dir.path() / (std::string(c.name) + ".mat"));
    const std::string error = error_of([&] { finch::io::MatFile{file}; });
    EXPECT_CONTAINS(error, file.string() + ": ");
    EXPECT_CONTAINS(error, c.expected);
    EXPECT_CONTAINS(error, "a damaged .mat file");
  }
  // Level 4, a big-endian marker with the wrong version, and a v7.3 header without HDF5.
  Level5Bytes v4;
  v4.bytes.replace(124, 4, std::string("\x00\x00\x00\x00", 4));
  EXPECT_CONTAINS(error_of([&] { finch::io::MatFile{v4.write(dir.path() / "v4.mat")}; }),
                  "not a readable MATLAB .mat file");
  Level5Bytes v73;
  v73.bytes.replace(124, 2, std::string("\x00\x02", 2));
  EXPECT_CONTAINS(error_of([&] { finch::io::MatFile{v73.write(dir.path() / "v73.mat")}; }),
                  "a MATLAB v7.3 header without the HDF5 file after it");
}

TEST(CarsFormat, DevkitLayout) {
  finch::test::TempDir dir;
  const fs::path root = make_cars_devkit(dir.path());
  EXPECT_EQ(finch::data::dataset_format("cars").splits(root, YAML::Node()),
            (std::vector<std::string>{"train", "test"}));
  auto train = open_dataset("cars", root, "train");
  auto test = open_dataset("cars", root, "test");
  ASSERT_EQ(train->size(), 4u);
  ASSERT_EQ(test->size(), 2u);
  EXPECT_EQ(train->class_names(), kCarClasses);
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{0, 1, 2, 2}));  // class is 1-based
  EXPECT_EQ(test->labels(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(train->describe(1), (root / "cars_train/00002.jpg").string());
  EXPECT_EQ(test->describe(0), (root / "cars_test/00001.jpg").string());
  EXPECT_EQ(train->load_rgb(2).size(), cv::Size(20, 10));
  // 1-based inclusive corners (2, 3)-(11, 7) -> 0-based x 1, y 2, 10 x 5 pixels.
  expect_box(train->box(0), 1, 2, 10, 5);
  expect_box(train->box(1), 0, 0, 20, 10);  // the whole 20x10 image
  expect_box(test->box(1), 2, 2, 6, 6);

  // Without the separately released labelled test file, only train is offered.
  fs::remove(root / "cars_test_annos_withlabels.mat");
  EXPECT_EQ(finch::data::dataset_format("cars").splits(root, YAML::Node()),
            (std::vector<std::string>{"train"}));
  EXPECT_CONTAINS(error_of([&] { open_dataset("cars", root, "test"); }),
                  "cars_test_annos_withlabels.mat");
}

TEST(CarsFormat, CombinedLayoutFromV73File) {
  finch::test::TempDir dir;
  const fs::path root = make_cars_combined(dir.path());
  auto train = open_dataset("cars", root, "train");
  auto test = open_dataset("cars", root, "test");
  ASSERT_EQ(train->size(), 3u);  // test flag 0: images 1..3
  ASSERT_EQ(test->size(), 2u);
  EXPECT_EQ(train->class_names(), (std::vector<std::string>{"Audi R8", "BMW M3"}));
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{1, 0, 1}));  // 1 + i % 2, 1-based
  EXPECT_EQ(test->describe(1), (root / "car_ims/000005.jpg").string());
  EXPECT_EQ(test->load_rgb(1).at<cv::Vec3b>(0, 0), cv::Vec3b(100, 100, 100));
  expect_box(train->box(2), 2, 1, 11, 8);  // (3, 2)-(13, 9)
}

TEST(CarsFormat, BadInputIsPrecise) {
  finch::test::TempDir dir;
  // Neither layout: the message describes both.
  const std::string none = error_of([&] { open_dataset("cars", dir.path(), "train"); });
  EXPECT_CONTAINS(none, "cars_meta.mat");
  EXPECT_CONTAINS(none, "cars_annos.mat");
  EXPECT_CONTAINS(error_of([&] { finch::data::dataset_format("cars").splits(dir.path(), {}); }),
                  "car_ims/");

  const fs::path root = make_cars_devkit(dir / "devkit_copy");
  EXPECT_CONTAINS(error_of([&] { open_dataset("cars", root, "val"); }), "'val'");
  // A class outside the class list names both.
  write_mat(root / "devkit/cars_train_annos.mat",
            {car_annotations({{"00001.jpg", 2, 3, 11, 7, 4}}, false)});
  std::string bad_class = error_of([&] { open_dataset("cars", root, "train"); });
  EXPECT_CONTAINS(bad_class, "cars_train_annos.mat");
  EXPECT_CONTAINS(bad_class, "class 4 is outside 1..3");
  EXPECT_CONTAINS(bad_class, "cars_meta.mat");
  // Wrong field names: the file, variable and expected field.
  write_mat(root / "devkit/cars_train_annos.mat",
            {car_annotations({{"00001.jpg", 2, 3, 11, 7, 1}}, false, "label")});
  std::string bad_field = error_of([&] { open_dataset("cars", root, "train"); });
  EXPECT_CONTAINS(bad_field,
                  "cars_train_annos.mat: variable 'annotations': struct has no field class");
  // Corners in the wrong order.
  write_mat(root / "devkit/cars_train_annos.mat",
            {car_annotations({{"00001.jpg", 12, 3, 11, 7, 1}}, false)});
  EXPECT_CONTAINS(error_of([&] { open_dataset("cars", root, "train"); }), "bbox_x1 <= bbox_x2");
  // No class names.
  write_mat(root / "devkit/cars_meta.mat", {mat_cell("classes", kCarClasses)});
  EXPECT_CONTAINS(error_of([&] { open_dataset("cars", root, "train"); }),
                  "variable 'class_names' not found");
  // A missing image fails when loaded, naming the file.
  const fs::path combined = make_cars_combined(dir / "combined");
  fs::remove(combined / "car_ims/000002.jpg");
  auto train = open_dataset("cars", combined, "train");
  EXPECT_CONTAINS(error_of([&] { train->load_rgb(1); }), "car_ims/000002.jpg");
}

// --- Stanford Dogs ---------------------------------------------------------------------------

namespace {

std::string dog_xml(const std::vector<std::array<int, 4>>& boxes) {
  std::string xml =
      "<annotation>\n\t<folder>02085620</folder>\n\t<size>\n\t\t<width>20</width>"
      "\n\t\t<height>10</height>\n\t</size>\n";
  for (const auto& b : boxes)
    xml += cv::format(
        "\t<object>\n\t\t<name>dog</name>\n\t\t<bndbox>\n\t\t\t<xmin>%d</xmin>\n\t\t\t<ymin>%d"
        "</ymin>\n\t\t\t<xmax>%d</xmax>\n\t\t\t<ymax>%d</ymax>\n\t\t</bndbox>\n\t</object>\n",
        b[0], b[1], b[2], b[3]);
  return xml + "</annotation>\n";
}

void write_dog_list(const fs::path& file, const std::vector<std::string>& files,
                    const std::vector<double>& labels) {
  std::vector<std::string> annotations;
  for (const auto& f : files) annotations.push_back(fs::path(f).replace_extension().string());
  write_mat(file,
            {mat_cell("file_list", files, true), mat_cell("annotation_list", annotations, true),
             mat_numbers("labels", labels, true)});
}

const char* const kChihuahua = "n02085620-Chihuahua";
const char* const kSpaniel = "n02085782-Japanese_spaniel";

// 2 breeds; train 3 images, test 2; XML for all but one image, one with two dogs.
fs::path make_dogs(const fs::path& root) {
  const std::vector<std::string> train = {std::string(kChihuahua) + "/n02085620_10074.jpg",
                                          std::string(kSpaniel) + "/n02085782_1.jpg",
                                          std::string(kChihuahua) + "/n02085620_2.jpg"};
  const std::vector<std::string> test = {std::string(kSpaniel) + "/n02085782_7.jpg",
                                         std::string(kChihuahua) + "/n02085620_9.jpg"};
  write_dog_list(root / "train_list.mat", train, {1, 2, 1});
  write_dog_list(root / "test_list.mat", test, {2, 1});
  int v = 10;
  for (const auto& f : train) write_image(root / "Images" / f, 20, 10, v += 10);
  for (const auto& f : test) write_image(root / "Images" / f, 20, 10, v += 10);
  auto xml = [&](const std::string& f) {
    return root / "Annotation" / fs::path(f).replace_extension();
  };
  write_text(xml(train[0]), dog_xml({{2, 3, 10, 8}}));
  write_text(xml(train[1]), dog_xml({{2, 3, 5, 6}, {4, 1, 10, 7}}));  // two dogs: union
  // train[2] has no annotation file.
  write_text(xml(test[0]), dog_xml({{1, 1, 20, 10}}));
  write_text(xml(test[1]), dog_xml({{5, 5, 6, 6}}));
  return root;
}

}  // namespace

TEST(DogsFormat, ListsBreedsAndXmlBoxes) {
  finch::test::TempDir dir;
  const fs::path root = make_dogs(dir.path());
  EXPECT_EQ(finch::data::dataset_format("dogs").splits(root, YAML::Node()),
            (std::vector<std::string>{"train", "test"}));
  auto train = open_dataset("dogs", root, "train");
  auto test = open_dataset("dogs", root, "test");
  ASSERT_EQ(train->size(), 3u);
  ASSERT_EQ(test->size(), 2u);
  EXPECT_EQ(train->class_names(), (std::vector<std::string>{"Chihuahua", "Japanese_spaniel"}));
  EXPECT_EQ(test->class_names(), train->class_names());
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{0, 1, 0}));
  EXPECT_EQ(test->labels(), (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(train->describe(0), (root / "Images" / kChihuahua / "n02085620_10074.jpg").string());
  EXPECT_EQ(test->load_rgb(0).at<cv::Vec3b>(0, 0), cv::Vec3b(50, 50, 50));
  expect_box(train->box(0), 1, 2, 9, 6);    // (2, 3)-(10, 8), 1-based inclusive
  expect_box(train->box(1), 1, 0, 9, 7);    // union of (2, 3)-(5, 6) and (4, 1)-(10, 7)
  EXPECT_FALSE(train->box(2).has_value());  // no XML: no box, no error
  expect_box(test->box(0), 0, 0, 20, 10);
}

TEST(DogsFormat, BadInputIsPrecise) {
  finch::test::TempDir dir;
  EXPECT_CONTAINS(error_of([&] { finch::data::dataset_format("dogs").splits(dir.path(), {}); }),
                  "train_list.mat");
  EXPECT_CONTAINS(error_of([&] { open_dataset("dogs", dir.path(), "train"); }),
                  "required file not found: " + (dir / "train_list.mat").string());
  const fs::path root = make_dogs(dir / "dogs");
  EXPECT_CONTAINS(error_of([&] { open_dataset("dogs", root, "val"); }), "'val'");
  // A malformed box names the XML file.
  const fs::path xml = root / "Annotation" / kChihuahua / "n02085620_10074";
  write_text(xml, "<annotation><object><bndbox><xmin>two</xmin></bndbox></object></annotation>");
  auto train = open_dataset("dogs", root, "train");
  std::string bad_xml = error_of([&] { train->box(0); });
  EXPECT_CONTAINS(bad_xml, xml.string());
  EXPECT_CONTAINS(bad_xml, "<xmin>");
  // An empty class (label 3 on no image of either list).
  write_dog_list(root / "test_list.mat", {std::string(kSpaniel) + "/n02085782_7.jpg"}, {4});
  EXPECT_CONTAINS(error_of([&] { open_dataset("dogs", root, "train"); }), "no image has label 3");
  // Label 0 is not 1-based.
  write_dog_list(root / "test_list.mat", {std::string(kSpaniel) + "/n02085782_7.jpg"}, {0});
  EXPECT_CONTAINS(error_of([&] { open_dataset("dogs", root, "train"); }), "label 0");
  // A label far beyond any class count (dogs_fuzz: 1.77e72 overflowed the conversion).
  write_dog_list(root / "test_list.mat", {std::string(kSpaniel) + "/n02085782_7.jpg"}, {1.77e72});
  EXPECT_CONTAINS(error_of([&] { open_dataset("dogs", root, "train"); }),
                  "label 1.77e+72 is not a 1-based class number (1..100000)");
  // One label for two breed folders.
  write_dog_list(root / "test_list.mat", {std::string(kSpaniel) + "/n02085782_7.jpg"}, {1});
  EXPECT_CONTAINS(error_of([&] { open_dataset("dogs", root, "train"); }), "two breed folders");
  // A list without labels.
  write_mat(root / "test_list.mat",
            {mat_cell("file_list", {"a/b.jpg"}, true), mat_cell("annotation_list", {"a/b"}, true)});
  std::string no_labels = error_of([&] { open_dataset("dogs", root, "test"); });
  EXPECT_CONTAINS(no_labels, "test_list.mat: variable 'labels' not found");
}

// --- Oxford Flowers-102 ----------------------------------------------------------------------

namespace {

// Six images whose labels all differ from their neighbours' in imagelabels.mat, so reading
// labels[id] instead of labels[id - 1] (the vision#5766 off-by-one) gives other classes.
const std::vector<double> kFlowerLabels = {3, 1, 2, 3, 2, 1};

fs::path make_flowers(const fs::path& root, const std::vector<double>& labels = kFlowerLabels) {
  write_mat(root / "imagelabels.mat", {mat_numbers("labels", labels)});
  write_mat(root / "setid.mat", {mat_numbers("trnid", {2, 5}), mat_numbers("valid", {1, 6}),
                                 mat_numbers("tstid", {4, 3})});
  for (size_t id = 1; id <= labels.size(); ++id)
    write_image(root / "jpg" / cv::format("image_%05d.jpg", static_cast<int>(id)), 12, 8,
                static_cast<int>(20 * id));
  return root;
}

}  // namespace

TEST(Flowers102Format, LabelsIndexedByImageIdMinusOne) {
  finch::test::TempDir dir;
  const fs::path root = make_flowers(dir.path());
  EXPECT_EQ(finch::data::dataset_format("flowers102").splits(root, YAML::Node()),
            (std::vector<std::string>{"train", "val", "test"}));
  auto train = open_dataset("flowers102", root, "train");
  auto val = open_dataset("flowers102", root, "val");
  auto test = open_dataset("flowers102", root, "test");
  // Image id n: class labels[n - 1] - 1. Off by one, train would be {1, 0} (labels[2], [5]).
  EXPECT_EQ(train->labels(), (std::vector<int64_t>{0, 1}));  // ids 2, 5 -> labels 1, 2
  EXPECT_EQ(val->labels(), (std::vector<int64_t>{2, 0}));    // ids 1, 6 -> labels 3, 1
  EXPECT_EQ(test->labels(), (std::vector<int64_t>{2, 1}));   // ids 4, 3 -> labels 3, 2
  EXPECT_EQ(train->class_names(),
            (std::vector<std::string>{"class_001", "class_002", "class_003"}));
  // The image file is the one of the id (grey value 20 * id), not a neighbour's.
  EXPECT_EQ(train->describe(1), (root / "jpg/image_00005.jpg").string());
  EXPECT_EQ(train->load_rgb(1).at<cv::Vec3b>(0, 0), cv::Vec3b(100, 100, 100));
  EXPECT_EQ(test->load_rgb(0).at<cv::Vec3b>(0, 0), cv::Vec3b(80, 80, 80));
  EXPECT_FALSE(train->box(0).has_value());
}

TEST(Flowers102Format, BadInputIsPrecise) {
  finch::test::TempDir dir;
  EXPECT_CONTAINS(error_of([&] { open_dataset("flowers102", dir.path(), "train"); }),
                  "required file not found: " + (dir / "imagelabels.mat").string());
  const fs::path root = make_flowers(dir / "ok");
  EXPECT_CONTAINS(error_of([&] { open_dataset("flowers102", root, "trainval"); }),
                  "(splits: train, val, test)");
  // A label outside 1..102.
  const fs::path big = make_flowers(dir / "big", {1, 2, 103, 1, 2, 1});
  std::string big_label = error_of([&] { open_dataset("flowers102", big, "train"); });
  EXPECT_CONTAINS(big_label, "imagelabels.mat: variable 'labels': label 103 of image id 3");
  EXPECT_CONTAINS(big_label, "1..102");
  // An empty class.
  const fs::path gap = make_flowers(dir / "gap", {1, 3, 3, 1, 3, 1});
  EXPECT_CONTAINS(error_of([&] { open_dataset("flowers102", gap, "train"); }),
                  "no image has label 2");
  // An image id with no label.
  write_mat(root / "setid.mat",
            {mat_numbers("trnid", {2, 7}), mat_numbers("valid", {1}), mat_numbers("tstid", {3})});
  std::string bad_id = error_of([&] { open_dataset("flowers102", root, "train"); });
  EXPECT_CONTAINS(bad_id, "setid.mat: variable 'trnid': image id 7 is outside 1..6");
  // Wrong variable names name the file, the expected variable and what is there.
  write_mat(root / "setid.mat",
            {mat_numbers("trainid", {2}), mat_numbers("valid", {1}), mat_numbers("tstid", {3})});
  std::string wrong = error_of([&] { open_dataset("flowers102", root, "train"); });
  EXPECT_CONTAINS(wrong, "setid.mat: variable 'trnid' not found");
  EXPECT_CONTAINS(wrong, "trainid");
}

// --- crop_to_box -----------------------------------------------------------------------------

namespace {

// 20x10 images whose pixel (x, y) has red = x and green = y; sample 1 has no box.
class BoxedDataset final : public finch::data::Dataset {
 public:
  size_t size() const override { return 2; }
  int64_t label(size_t i) const override { return 0; }
  cv::Mat load_rgb(size_t) const override {
    cv::Mat m(10, 20, CV_8UC3);
    for (int y = 0; y < m.rows; ++y)
      for (int x = 0; x < m.cols; ++x) m.at<cv::Vec3b>(y, x) = cv::Vec3b(x, y, 0);
    return m;
  }
  std::string describe(size_t i) const override { return "boxed#" + std::to_string(i); }
  std::optional<finch::data::Box> box(size_t i) const override {
    if (i == 1) return std::nullopt;
    return finch::data::Box{2, 3, 4, 5};
  }
  const std::vector<std::string>& class_names() const override { return names_; }

 private:
  std::vector<std::string> names_{"only"};
};

}  // namespace

TEST(BoxCrop, CropsToTheEnlargedClippedBox) {
  using finch::data::box_crop_rect;
  EXPECT_EQ(box_crop_rect({2, 3, 4, 5}, 0, {20, 10}), cv::Rect(2, 3, 4, 5));
  // margin 0.5: 2 pixels left/right, 2.5 up/down, rounded outwards, clipped at 0 and 10.
  EXPECT_EQ(box_crop_rect({2, 3, 4, 5}, 0.5f, {20, 10}), cv::Rect(0, 0, 8, 10));
  EXPECT_EQ(box_crop_rect({1.5f, 2.5f, 2, 2}, 0, {20, 10}), cv::Rect(1, 2, 3, 3));
  EXPECT_TRUE(box_crop_rect({30, 3, 4, 5}, 0, {20, 10}).empty());

  auto base = std::make_shared<BoxedDataset>();
  finch::data::BoxCropDataset crop(base, 0.0f, "boxed");
  cv::Mat m = crop.load_rgb(0);
  ASSERT_EQ(m.size(), cv::Size(4, 5));
  EXPECT_EQ(m.at<cv::Vec3b>(0, 0), cv::Vec3b(2, 3, 0));  // the box's top-left pixel
  EXPECT_EQ(m.at<cv::Vec3b>(4, 3), cv::Vec3b(5, 7, 0));
  expect_box(crop.box(0), 0, 0, 4, 5);
  std::string no_box = error_of([&] { crop.load_rgb(1); });
  EXPECT_CONTAINS(no_box, "boxed#1: no object box");
  EXPECT_CONTAINS(no_box, "data.crop_to_box");

  finch::data::BoxCropDataset wide(base, 0.25f, "boxed");
  EXPECT_EQ(wide.load_rgb(0).size(), cv::Size(6, 9));  // (1, 1)-(7, 10)
  expect_box(wide.box(0), 1, 2, 4, 5);
  EXPECT_CONTAINS(error_of([&] { finch::data::BoxCropDataset(base, -1.f, "boxed"); }),
                  "data.box_margin");
}

TEST(BoxCrop, AppliedFromConfigToEverySplitAndRefusedWithoutBoxes) {
  finch::test::TempDir dir;
  const fs::path cars = make_cars_devkit(dir / "cars");
  finch::Config config = finch::Config::defaults();
  config.set("data.format", "cars");
  config.set("data.root", cars.string());
  config.set("data.crop_to_box", "true");
  config.set("data.val_fraction", "0.0");
  auto data = finch::data::open_train_val(config);
  EXPECT_EQ(data.train->load_rgb(0).size(), cv::Size(10, 5));  // box (2, 3)-(11, 7)
  EXPECT_EQ(finch::data::open_split(config, "test")->load_rgb(1).size(), cv::Size(6, 6));
  config.set("data.box_margin", "0.5");
  // 5 and 2.5 pixels more per side, clipped at the image's left, top and bottom.
  EXPECT_EQ(finch::data::open_split(config, "train")->load_rgb(0).size(), cv::Size(16, 10));

  const fs::path flowers = make_flowers(dir / "flowers");
  config.set("data.format", "flowers102");
  config.set("data.root", flowers.string());
  std::string no_boxes = error_of([&] { finch::data::open_train_val(config); });
  EXPECT_CONTAINS(no_boxes, "flowers102 at " + flowers.string());
  EXPECT_CONTAINS(no_boxes, "has no object boxes");
}

// --- data info -------------------------------------------------------------------------------

TEST(DataInfo, CountsSizesMissingFilesAndOfficialCounts) {
  finch::test::TempDir dir;
  const fs::path root = make_dogs(dir / "dogs");
  fs::remove(root / "Images" / kSpaniel / "n02085782_7.jpg");  // test[0]
  finch::Config config = finch::Config::defaults();
  config.set("data.format", "dogs");
  config.set("data.root", root.string());
  finch::data::InfoOptions options;
  options.progress = finch::ProgressStyle::kNone;
  finch::data::DatasetInfo info = finch::data::dataset_info(config, options);
  EXPECT_EQ(info.num_classes, 2u);
  EXPECT_EQ(info.official_classes, 120u);
  ASSERT_EQ(info.splits.size(), 2u);
  EXPECT_EQ(info.splits[0].name, "train");
  EXPECT_EQ(info.splits[0].images, 3u);
  EXPECT_EQ(info.splits[0].per_class.min, 1);
  EXPECT_EQ(info.splits[0].per_class.max, 2);
  EXPECT_EQ(info.splits[0].with_boxes, 2u);
  EXPECT_EQ(info.splits[0].official, 12000u);
  EXPECT_EQ(info.splits[1].missing, 1u);
  ASSERT_EQ(info.splits[1].problems.size(), 1u);
  EXPECT_CONTAINS(info.splits[1].problems[0], "n02085782_7.jpg: file not found");
  EXPECT_EQ(info.sized, 4u);  // every present image, from its header
  EXPECT_EQ(info.width.max, 20);
  EXPECT_EQ(info.height.median, 10);
  ASSERT_TRUE(info.matches_official.has_value());
  EXPECT_FALSE(*info.matches_official);

  // --check-images decodes all and reports a corrupt file.
  write_text(root / "Images" / kChihuahua / "n02085620_2.jpg", "not a jpeg");
  options.check_images = true;
  info = finch::data::dataset_info(config, options);
  EXPECT_EQ(info.splits[0].unreadable, 1u);
  EXPECT_EQ(info.sized, 3u);
  const nlohmann::json j = finch::data::to_json(info);
  EXPECT_EQ(j["splits"][0]["unreadable"], 1);
  EXPECT_EQ(j["splits"][1]["missing"], 1);
  EXPECT_EQ(j["matches_official"], false);
  EXPECT_CONTAINS(finch::data::format_info(info), "DIFFER from the official");
}
