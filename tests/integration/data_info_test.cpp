// `finch data info` end to end on a generated Oxford Flowers-102 copy (.mat files written with
// libmatio, as the official archive ships them).
#include <gtest/gtest.h>
#include <matio.h>

#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>

#include "test_support.h"

namespace fs = std::filesystem;
using finch::test::run_command;

namespace {

void write_numbers(mat_t* mat, const char* name, std::vector<double> values) {
  size_t dims[2] = {1, values.size()};
  matvar_t* v = Mat_VarCreate(name, MAT_C_DOUBLE, MAT_T_DOUBLE, 2, dims, values.data(), 0);
  finch::test::require(Mat_VarWrite(mat, v, MAT_COMPRESSION_ZLIB) == 0,
                       std::string("cannot write .mat variable ") + name);
  Mat_VarFree(v);
}

// 8 images of 3 classes: train ids 1-3, val 4-5, test 6-8; image 8 is missing.
void make_flowers(const fs::path& root) {
  fs::create_directories(root / "jpg");
  mat_t* labels = Mat_CreateVer((root / "imagelabels.mat").c_str(), nullptr, MAT_FT_MAT5);
  finch::test::require(labels != nullptr, "cannot create imagelabels.mat");
  write_numbers(labels, "labels", {1, 2, 3, 3, 1, 2, 2, 1});
  Mat_Close(labels);
  mat_t* setid = Mat_CreateVer((root / "setid.mat").c_str(), nullptr, MAT_FT_MAT5);
  finch::test::require(setid != nullptr, "cannot create setid.mat");
  write_numbers(setid, "trnid", {1, 2, 3});
  write_numbers(setid, "valid", {4, 5});
  write_numbers(setid, "tstid", {6, 7, 8});
  Mat_Close(setid);
  for (int id = 1; id <= 7; ++id)
    finch::test::require(cv::imwrite((root / "jpg" / cv::format("image_%05d.jpg", id)).string(),
                                     cv::Mat(10 + id, 20, CV_8UC3, cv::Scalar::all(9 * id))),
                         "cannot write a Flowers image");
}

}  // namespace

TEST(DataInfoCli, JsonReportsCountsSizesAndMissingFiles) {
  finch::test::TempDir dir("finch-data-info");
  make_flowers(dir.path());
  const std::string cli = finch::test::cli_path().string();
  auto result = run_command(cli + " data info --dataset flowers102 --root " + dir.path().string() +
                            " --json --check-images 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto j = nlohmann::json::parse(result.output);
  EXPECT_EQ(j["format"], "flowers102");
  EXPECT_EQ(j["num_classes"], 3);
  EXPECT_EQ(j["official_classes"], 102);
  ASSERT_EQ(j["splits"].size(), 3u);
  EXPECT_EQ(j["splits"][0]["name"], "train");
  EXPECT_EQ(j["splits"][0]["images"], 3);
  EXPECT_EQ(j["splits"][0]["official_images"], 1020);
  EXPECT_EQ(j["splits"][1]["images"], 2);
  EXPECT_EQ(j["splits"][1]["images_per_class"]["max"], 1);
  EXPECT_EQ(j["splits"][1]["empty_classes"], 1);  // val has no class-2 image
  EXPECT_EQ(j["splits"][2]["missing"], 1);
  EXPECT_EQ(j["splits"][2]["unreadable"], 0);
  EXPECT_EQ(j["image_size"]["measured"], 7);
  EXPECT_EQ(j["image_size"]["height"]["min"], 11);
  EXPECT_EQ(j["image_size"]["height"]["max"], 17);
  EXPECT_EQ(j["image_size"]["width"]["median"], 20);
  EXPECT_EQ(j["matches_official"], false);

  // The text report says the same; a bad root is one clear error line.
  auto text = run_command(cli + " data info -d flowers102 -r " + dir.path().string());
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_CONTAINS(text.output, "classes: 3 (official 102)");
  EXPECT_CONTAINS(text.output, "image_00008.jpg: file not found");
  auto bad = run_command(cli + " data info -d cars -r " + dir.path().string());
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_CONTAINS(bad.output, "finch: error: cars: no Stanford Cars annotations");
}

// A dataset root whose name is YAML syntax stays a path (it used to be read as null).
TEST(DataInfoCli, RootNamedLikeYamlStaysAPath) {
  finch::test::TempDir dir;
  const fs::path root = dir / "#weird";
  finch::test::make_pattern_imagefolder(root, 2, 3, 8);
  auto r = run_command("cd " + dir.path().string() + " && " + finch::test::cli_path().string() +
                       " data info --json --dataset imagefolder --root '#weird'");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_CONTAINS(r.output, "\"images\":6");
}
