// `finch data doctor` end to end on a small csv dataset with planted problems: what it flags,
// what clean.csv keeps, that the dataset folder is untouched, fold models trained by --cv
// (which exercise data.exclude), --model, the page in a real browser, and the clear errors.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "finch/core/atomic_file.h"
#include "test_support.h"
#include "tiny_run.h"

namespace fs = std::filesystem;
using finch::test::json_lines;
using finch::test::cli;
using finch::test::run_command;

namespace {

// Every file under `root` with its size and content hash: the dataset folder's fingerprint.
std::map<std::string, std::string> listing(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : fs::recursive_directory_iterator(root))
    if (e.is_regular_file())
      out[e.path().lexically_relative(root).string()] =
          std::to_string(e.file_size()) + ":" +
          std::to_string(std::hash<std::string>{}(finch::read_file(e.path())));
  return out;
}

std::vector<std::string> csv_lines(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class DoctorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new finch::test::TempDir("finch-doctor");
    const fs::path data = root();
    finch::test::make_pattern_imagefolder(data / "img" / "train", 3, 12, 16, 1);
    finch::test::make_pattern_imagefolder(data / "img" / "test", 3, 4, 16, 2);
    std::string manifest = "path,label,split\n";
    for (const char* split : {"train", "test"})
      for (int c = 0; c < 3; ++c)
        for (const auto& e :
             fs::directory_iterator(data / "img" / split / ("class" + std::to_string(c))))
          manifest += e.path().lexically_relative(data).string() + ",class" + std::to_string(c) +
                      "," + split + "\n";
    // Planted: a test image copied into train (a leak), an empty file, and a train image of
    // class2 copied under class1's label (conflicting labels).
    const fs::path test0 = *fs::directory_iterator(data / "img" / "test" / "class0");
    fs::copy_file(test0, data / "img" / "train" / "leak.png");
    manifest += "img/train/leak.png,class0,train\n";
    finch::test::write_text(data / "img" / "train" / "empty.png", "");
    manifest += "img/train/empty.png,class1,train\n";
    const fs::path train2 = *fs::directory_iterator(data / "img" / "train" / "class2");
    fs::copy_file(train2, data / "img" / "train" / "conflict.png");
    manifest += "img/train/conflict.png,class1,train\n";
    finch::test::write_text(data / "data.csv", manifest);
    leaked_ = new std::string(test0.lexically_relative(data).string());
    finch::test::write_text(dir_->path() / "recipe.yaml",
                            finch::test::tiny_recipe("epochs: 2, batch_size: 8, progress: none",
                                                     "  csv_file: data.csv\n"));
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete leaked_;
  }
  static fs::path root() { return dir_->path() / "data"; }
  static fs::path path(const std::string& name) { return dir_->path() / name; }
  static std::string base() {
    return cli() + " data doctor --dataset csv --root " + root().string() +
           " --set data.csv_file=data.csv --progress none";
  }
  static finch::test::TempDir* dir_;
  static std::string* leaked_;
};

finch::test::TempDir* DoctorTest::dir_ = nullptr;
std::string* DoctorTest::leaked_ = nullptr;

}  // namespace

TEST_F(DoctorTest, FlagsPlantedProblemsWritesCleanManifestAndTouchesNothing) {
  const auto before = listing(root());
  auto result = run_command(base() + " --out " + path("report").string() + " --json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto j = json_lines(result.output).back();
  EXPECT_EQ(j["dataset"]["images"], 51);
  EXPECT_EQ(j["counts"]["zero_byte"], 1);
  EXPECT_EQ(j["counts"]["leak"], 1);
  EXPECT_EQ(j["counts"]["conflicting_labels"], 2);  // both copies: which label is right?
  EXPECT_EQ(before, listing(root())) << "the doctor changed the dataset folder";

  // flagged.csv: the leak names the test image it copies; the empty file is its own reason.
  std::map<std::string, std::vector<std::string>> flagged;  // path -> rows
  for (const auto& line : csv_lines(path("report/flagged.csv"))) {
    flagged[line.substr(0, line.find(','))].push_back(line);
  }
  ASSERT_EQ(flagged["img/train/leak.png"].size(), 1u);
  EXPECT_CONTAINS(flagged["img/train/leak.png"][0], ",leak," + *leaked_ + ",");
  EXPECT_CONTAINS(flagged["img/train/leak.png"][0], ",dropped");
  EXPECT_CONTAINS(flagged["img/train/empty.png"].at(0), ",zero_byte,");
  EXPECT_CONTAINS(flagged["img/train/conflict.png"].at(0), ",conflicting_labels,");

  // clean.csv: a csv-format manifest of everything else, readable from the report folder.
  const auto clean = csv_lines(path("report/clean.csv"));
  EXPECT_EQ(clean.front(), "path,label,split");
  EXPECT_EQ(clean.size(), 1u + 51 - j["images_dropped"].get<size_t>());
  std::string all;
  for (const auto& line : clean) all += line + "\n";
  for (const char* gone : {"leak.png", "empty.png", "conflict.png"})
    EXPECT_EQ(all.find(gone), std::string::npos) << gone;
  EXPECT_CONTAINS(all, (root() / *leaked_).string());  // the test copy stays
  result = run_command(cli() + " data info --dataset csv --root " + path("report").string() +
                       " --set data.csv_file=clean.csv --json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(json_lines(result.output).back()["splits"][0]["images"].get<size_t>() +
                json_lines(result.output).back()["splits"][1]["images"].get<size_t>(),
            clean.size() - 1);

  // The page, in headless Chromium: every thumbnail decodes, the sections are there, and it
  // asks for nothing over the network.
  result =
      run_command("/usr/bin/python3 " +
                  (finch::test::source_dir() / "tests" / "browser" / "doctor_page.py").string() +
                  " " + path("report/doctor.html").string() + " leak,zero_byte,conflicting_labels");
  EXPECT_EQ(result.exit_code, 0)
      << "needs chromium, chromium-driver and python3-selenium (scripts/install-deps.sh):\n"
      << result.output;
  EXPECT_CONTAINS(result.output, "page check: ok");
}

TEST_F(DoctorTest, CrossValidatedLabelIssuesAndModelSignals) {
  auto result = run_command(base() + " --config " + path("recipe.yaml").string() +
                            " --cv 2 --out " + path("cv").string() + " --json 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto j = json_lines(result.output).back();
  ASSERT_TRUE(j.contains("label_issues")) << j.dump();
  EXPECT_CONTAINS(j["label_issues"]["probabilities"].get<std::string>(), "2-fold cross-validation");
  // Every readable image got an out-of-sample probability (the empty file is not readable).
  EXPECT_EQ(j["label_issues"]["images_scored"], 50);
  EXPECT_EQ(j["label_issues"]["noise_matrix"].size(), 3u);
  // Each fold model trained without its held-out images (data.exclude): its train + val
  // counts are everything else.
  for (int fold = 0; fold < 2; ++fold) {
    const fs::path dir = path("cv") / "cv" / ("fold_" + std::to_string(fold));
    const size_t held_out = csv_lines(dir / "held_out.csv").size() - 1;
    const auto config = finch::read_file(dir / "run" / "config.yaml");
    EXPECT_CONTAINS(config, "held_out.csv");
    EXPECT_GT(held_out, 20u);
    EXPECT_TRUE(fs::exists(dir / "fold.done"));
  }
  // A rerun reuses the finished folds (nothing is trained twice).
  result = run_command(base() + " --config " + path("recipe.yaml").string() + " --cv 2 --out " +
                       path("cv").string() + " 2>&1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(result.output.find("cv: training"), std::string::npos) << result.output;

  // --model: a model of the dataset's classes gives probabilities and embeddings.
  const std::string model = (path("cv") / "cv" / "fold_0" / "run" / "best.safetensors").string();
  result = run_command(base() + " --model " + model + " --out " + path("model").string() +
                       " --json --set doctor.outlier_share=0.1");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto m = json_lines(result.output).back();
  EXPECT_EQ(m["counts"]["outlier"], 5);  // ceil(0.1 * 50 readable images)
  EXPECT_TRUE(m["bias"].contains("accuracy_by_class"));
  EXPECT_CONTAINS(m["label_issues"]["probabilities"].get<std::string>(), "model ");

  // A model whose classes differ from the dataset's.
  result = run_command(base() + " --model " + model + " --out " + path("model2").string() +
                       " --set 'data.classes=[class0, class1]' 2>&1");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "the model " + model + " has the class 'class2'");
}

TEST_F(DoctorTest, ClearErrorsForBadOptions) {
  // The report folder may not be inside the dataset.
  auto result = run_command(base() + " --out " + (root() / "report").string() + " 2>&1");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "inside the dataset folder");
  EXPECT_FALSE(fs::exists(root() / "report"));
  // --cv with more folds than images of a class; --cv without a recipe.
  result = run_command(base() + " --config " + path("recipe.yaml").string() + " --cv 30 --out " +
                       path("cv30").string() + " 2>&1");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "--cv 30 needs at least 30 readable images of every class");
  result = run_command(base() + " --cv 3 --out " + path("cv3").string() + " 2>&1");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "needs --config RECIPE");
  // A groups file naming images that are not in the dataset: the first few are listed.
  finch::test::write_text(path("groups.csv"),
                          "path,camera\nimg/train/leak.png,a\nnope/1.png,b\nnope/2.png,b\n");
  result = run_command(base() + " --groups " + path("groups.csv").string() + " --out " +
                       path("g").string() + " 2>&1");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "names 2 images that are not in the dataset");
  EXPECT_CONTAINS(result.output, "nope/1.png (line 3)");
  // A good groups file: images per group.
  finch::test::write_text(path("groups.csv"),
                          "path,camera\nimg/train/leak.png,a\nimg/train/conflict.png,b\n");
  result = run_command(base() + " --groups " + path("groups.csv").string() + " --out " +
                       path("g").string() + " --json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(json_lines(result.output).back()["groups"]["camera"]["groups"].size(), 2u);
  // A threshold out of range, an unknown reason to drop.
  result =
      run_command(base() + " --out " + path("x").string() + " --set doctor.phash_distance=99 2>&1");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "doctor.phash_distance must be in [0, 32]");
  result = run_command(base() + " --out " + path("x").string() +
                       " --set 'doctor.drop=[blurry, smudged]' 2>&1");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "unknown reason 'smudged'");
}
