// Open world through the `finch` executable: a model trained on 4 of 6 generated classes
// embeds, builds and grows a gallery, searches it, classifies the unseen classes by it, and
// is scored on retrieval (checked by a python3-torch recomputation) and few-shot episodes.
#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "finch/core/sha256.h"
#include "test_support.h"
#include "tiny_run.h"

namespace fs = std::filesystem;
using finch::test::cli;
using finch::test::run_command;

namespace {

const std::string kOpenWorldRecipe =
    finch::test::tiny_recipe("epochs: 4, batch_size: 8, progress: none", "  class_range: [0, 4]\n",
                             "schedule: {name: cosine}\n");

using finch::test::json_lines;

class OpenWorldTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    run_ = new finch::test::TrainedRun("finch-open-world", kOpenWorldRecipe, 6, 16, 10);
  }
  static void TearDownTestSuite() { delete run_; }
  static fs::path path(const std::string& name) { return run_->path(name); }
  static std::string model() { return run_->model(); }
  static std::string data() { return run_->data(); }
  void SetUp() override { ASSERT_EQ(run_->exit_code, 0) << run_->output; }
  static finch::test::TrainedRun* run_;
};

finch::test::TrainedRun* OpenWorldTest::run_ = nullptr;

}  // namespace

TEST_F(OpenWorldTest, EmbedWritesEmbeddingsLabelsAndPaths) {
  auto result =
      run_command(cli() + " embed --json --model " + model() + " --dataset imagefolder --root " +
                  data() + " --split test --out " + path("test_emb.safetensors").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = json_lines(result.output).back();
  EXPECT_EQ(j["images"], 60);
  EXPECT_EQ(j["dim"], 32);  // resnet20 width 8: 4 x 8 channels in the last stage
  EXPECT_EQ(j["model_sha256"], finch::sha256_file(model()));
  // Unlabelled image files, one of them corrupt: an error line, not a crash.
  finch::test::write_text(path("loose") / "broken.png", "not a png");
  fs::copy_file(path("data") / "test" / "class4" / "img0.png", path("loose") / "ok.png");
  result = run_command(cli() + " embed --model " + model() + " --out " +
                       path("loose.safetensors").string() + " " + path("loose").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "embedded 1 images");
  EXPECT_CONTAINS(result.output, "skipped " + (path("loose") / "broken.png").string());
  // Exactly one source.
  result = run_command(cli() + " embed --model " + model() + " --out x.safetensors");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "give exactly one image source");
}

TEST_F(OpenWorldTest, RetrievalMetricsMatchAPythonRecomputation) {
  const std::string emb = path("retrieval_emb.safetensors").string();
  auto result = run_command(cli() + " eval --protocol retrieval --json --model " + model() +
                            " --dataset imagefolder --root " + data() +
                            " --split test --save-embeddings " + emb);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = json_lines(result.output).back();
  EXPECT_EQ(j["retrieval"]["queries"], 60);
  // Better than a random ranking of 6 balanced classes (Recall@1 ~ 1/6).
  EXPECT_GT(j["retrieval"]["recall_at_k"]["1"].get<double>(), 0.4);
  finch::test::write_text(path("retrieval.json"), j.dump());
  auto check = finch::test::run_python_reference("retrieval_reference.py",
                                                 emb + " " + path("retrieval.json").string());
  EXPECT_CONTAINS(check, "retrieval reference: match");
}

TEST_F(OpenWorldTest, FewShotOnUnseenClassesAndItsErrors) {
  const std::string base = cli() + " eval --protocol fewshot --json --model " + model() +
                           " --dataset imagefolder --root " + data() + " --split test";
  auto result = run_command(base + " --ways 2 --shots 1,3 --queries 5 --episodes 40 " +
                            "--option class_range=[3,6]");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = json_lines(result.output).back();
  ASSERT_EQ(j["fewshot"]["results"].size(), 2u);
  EXPECT_EQ(j["fewshot"]["results"][1]["shots"], 3);
  EXPECT_GT(j["fewshot"]["results"][1]["accuracy"].get<double>(), 0.5);  // 2-way chance
  // The same seed gives the same episodes.
  EXPECT_EQ(json_lines(run_command(base + " --ways 2 --shots 1,3 --queries 5 --episodes 40 " +
                                   "--option class_range=[3,6]")
                           .output)
                .back()["fewshot"],
            j["fewshot"]);
  result = run_command(base + " --ways 7 --shots 1 --queries 2 --episodes 5");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "--ways 7 is larger than the 6 classes");
  result = run_command(base + " --ways 2 --shots 8 --queries 5 --episodes 5");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "fewer than --shots 8 + --queries 5");
}

TEST_F(OpenWorldTest, GalleryBuildAddSearchAndPredictUnseenClasses) {
  const std::string g = path("g.safetensors").string();
  // Known classes from a dataset split, then the two unseen ones from class folders.
  auto result = run_command(cli() + " gallery build --json --model " + model() +
                            " --dataset imagefolder --root " + data() +
                            " --split train --option class_range=[0,4] --out " + g);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(json_lines(result.output).back()["items"], 64);
  fs::create_directories(path("new"));
  for (const char* c : {"class4", "class5"}) fs::copy(path("data") / "train" / c, path("new") / c);
  result = run_command(cli() + " gallery add " + g + " --json --model " + model() + " --images " +
                       path("new").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto info = json_lines(result.output).back();
  EXPECT_EQ(info["items"], 96);
  EXPECT_EQ(info["classes"], 6);
  EXPECT_EQ(info["per_class"]["class5"], 16);

  // predict --gallery answers with the gallery's classes, also those the model never saw.
  result = run_command(cli() + " predict --json --topk 2 --model " + model() + " --gallery " + g +
                       " " + (path("data") / "test").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto records = json_lines(result.output);
  ASSERT_EQ(records.size(), 60u);
  int correct = 0, unseen_predicted = 0;
  for (const auto& r : records) {
    const std::string truth = fs::path(r["path"].get<std::string>()).parent_path().filename();
    const std::string top = r["topk"][0]["class"];
    correct += top == truth;
    unseen_predicted += top == "class4" || top == "class5";
    EXPECT_TRUE(r["topk"][0].contains("score"));
    EXPECT_GE(r["topk"][0]["prob"].get<double>(), r["topk"][1]["prob"].get<double>());
  }
  EXPECT_GT(correct, 20);  // chance: 10 of 60
  EXPECT_GT(unseen_predicted, 0);
  result = run_command(cli() + " predict --json --knn 5 --model " + model() + " --gallery " + g +
                       " " + (path("data") / "test" / "class1").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(json_lines(result.output).size(), 10u);

  // search: k neighbours with path, class and score, best first; FAISS prints its recall.
  const std::string query = (path("data") / "test" / "class2" / "img0.png").string();
  result = run_command(cli() + " search --json --k 5 --gallery " + g + " --model " + model() + " " +
                       query);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto hits = json_lines(result.output).front()["neighbours"];
  ASSERT_EQ(hits.size(), 5u);
  EXPECT_GE(hits[0]["score"].get<double>(), hits[4]["score"].get<double>());
  EXPECT_TRUE(hits[0].contains("path"));
  result = run_command(cli() + " search --index hnsw --k 5 --gallery " + g + " --model " + model() +
                       " " + query);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "HNSW32,Flat: recall@5 against exact search");

  // A gallery refuses a model it was not built with.
  fs::copy_file(model(), path("other.safetensors"));
  std::ofstream(path("other.safetensors"), std::ios::app) << " ";  // same weights, other bytes
  result = run_command(cli() + " search --gallery " + g + " --model " +
                       path("other.safetensors").string() + " " + query);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "built with another model");
}

TEST_F(OpenWorldTest, Bf16AndRangeCheckedCounts) {
  auto result = run_command(cli() + " eval --json --dtype bf16 --model " + model() +
                            " --dataset imagefolder --root " + data() +
                            " --split test --option class_range=[0,4]");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = json_lines(result.output).back();
  EXPECT_EQ(j["dtype"], "bf16");
  EXPECT_GT(j["top1"].get<double>(), 0.5);  // 4 classes: chance 0.25
  result = run_command(cli() + " predict --json --dtype bf16 --model " + model() + " " +
                       (path("data") / "test" / "class0").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(json_lines(result.output).size(), 10u);
  // --max-pixels (data.max_pixels): an image whose header declares more is skipped and
  // reported, the others evaluated.
  fs::copy(path("data"), path("big"), fs::copy_options::recursive);
  cv::imwrite((path("big") / "test" / "class0" / "huge.png").string(),
              cv::Mat(64, 64, CV_8UC3, cv::Scalar(1, 2, 3)));
  result = run_command(cli() + " eval --json --max-pixels 1000 --model " + model() +
                       " --dataset imagefolder --root " + path("big").string() +
                       " --split test --option class_range=[0,4]");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_EQ(json_lines(result.output).back()["skipped"], 1);
  EXPECT_EQ(json_lines(result.output).back()["num_samples"], 40);

  const std::string m = " --model " + model() + " ";
  const std::string images = (path("data") / "test" / "class0").string();
  for (const std::string bad :
       {" predict --batch-size 0" + m + images, " predict --topk 0" + m + images,
        " predict --threads -1" + m + images,
        " eval --batch-size 0 --dataset imagefolder --root " + data() + m,
        " search --k 0 --gallery " + model() + m + images,
        " embed --batch-size 0 --out x.safetensors" + m + images}) {
    SCOPED_TRACE(bad);
    result = run_command(cli() + bad);
    EXPECT_NE(result.exit_code, 0);
    EXPECT_CONTAINS(result.output, "not in range");
  }
}

// The model knows class0-3; class4 and class5 of the test split are the unknowns.
TEST_F(OpenWorldTest, OpenSetScoresMatchScikitLearnAndCalibratedRejection) {
  const std::string base = cli() + " eval --open-set --json --model " + model() +
                           " --dataset imagefolder --root " + data() + " --split test";
  const std::string csv = path("open_set_scores.csv").string();
  const std::string calibrated = path("calibrated.safetensors").string();
  const std::string model_sha = finch::sha256_file(model());
  auto result = run_command(base + " --unknown-classes class4:class5 --export-scores " + csv);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "'class4:class5' is not a class of the dataset");
  result = run_command(base + " --unknown-classes 4:6 --score-knn 3 --export-scores " + csv +
                       " --calibrate-tpr 0.9 --calibrated-out " + calibrated +
                       " --rejection-plot " + path("rejection.png").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto j = json_lines(result.output).back();
  EXPECT_EQ(j["known"]["images"], 40);
  EXPECT_EQ(j["unknown"]["images"], 20);
  EXPECT_EQ(j["unknown"]["classes"], (nlohmann::json{"class4", "class5"}));
  for (const char* score : {"msp", "maxlogit", "energy", "knn"}) {
    ASSERT_TRUE(j["scores"].contains(score)) << j.dump();
    const double auroc = j["scores"][score]["auroc"];
    EXPECT_GE(auroc, 0.0);
    EXPECT_LE(auroc, 1.0);
  }
  EXPECT_EQ(j["knn"]["k"], 3);
  finch::test::write_text(path("open_set.json"), j.dump());
  const std::string check = finch::test::run_python_reference(
      "open_set_reference.py", csv + " " + path("open_set.json").string());
  EXPECT_CONTAINS(check, "open-set reference: match (4 scores, 60 images)");
  EXPECT_TRUE(cv::imread(path("rejection.png").string()).cols > 0);

  // The calibrated copy carries thresholds chosen on the validation carve; the original is
  // untouched. predict --reject uses them and marks images below as unknown.
  EXPECT_EQ(finch::sha256_file(model()), model_sha);
  EXPECT_NE(finch::sha256_file(calibrated), model_sha);
  EXPECT_EQ(j["calibration"]["written_to"], calibrated);
  const double threshold = j["calibration"]["thresholds"]["maxlogit"];
  result = run_command(cli() + " predict --json --reject maxlogit --model " + calibrated + " " +
                       (path("data") / "test").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto records = json_lines(result.output);
  ASSERT_EQ(records.size(), 60u);
  for (const auto& r : records) {
    ASSERT_TRUE(r.contains("unknown")) << r.dump();
    EXPECT_EQ(r["unknown"].get<bool>(), r["score"].get<double>() < threshold) << r.dump();
    EXPECT_EQ(r["topk"].size(), 4u);  // --topk 5 of the model's 4 classes
  }
  // An explicit threshold above every score rejects everything.
  result = run_command(cli() + " predict --json --reject energy:1e9 --model " + model() + " " +
                       (path("data") / "test" / "class0").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  for (const auto& r : json_lines(result.output)) EXPECT_TRUE(r["unknown"].get<bool>());
  // The uncalibrated model has no stored threshold; knn needs a gallery.
  result = run_command(cli() + " predict --reject msp --model " + model() + " " +
                       (path("data") / "test" / "class0").string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "no calibrated threshold for 'msp'");
  result = run_command(cli() + " predict --reject knn:0.5 --model " + model() + " " +
                       (path("data") / "test" / "class0").string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "give --gallery G");
}

TEST_F(OpenWorldTest, OpenSetRefusesOverlappingOrMissingUnknowns) {
  const std::string base = cli() + " eval --open-set --model " + model() +
                           " --dataset imagefolder --root " + data() + " --split test";
  auto result = run_command(base + " --unknown-classes class5,class1");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "'class1' is one of the model's classes");
  result = run_command(base);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "exactly one of --unknown-classes LIST and --unknown-root DIR");
  // A second root whose classes are all new is the unknown set.
  for (const char* split : {"train", "test"}) {
    finch::test::make_pattern_imagefolder(path("other") / split, 2, 3, 16, 5);
    fs::rename(path("other") / split / "class0", path("other") / split / "novelA");
    fs::rename(path("other") / split / "class1", path("other") / split / "novelB");
  }
  result = run_command(base + " --json --score-knn 0 --unknown-root " + path("other").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto j = json_lines(result.output).back();
  EXPECT_EQ(j["unknown"]["images"], 6);
  EXPECT_FALSE(j["scores"].contains("knn"));
  EXPECT_EQ(j["scores"].size(), 3u);
}

TEST_F(OpenWorldTest, EvalReportsAccuracyAtEveryLevelOfAHierarchyCsv) {
  finch::test::write_text(path("hierarchy.csv"),
                          "class,parent\nclass0,low\nclass1,low\nclass2,high\nclass3,high\n");
  const std::string base = cli() + " eval --model " + model() + " --dataset imagefolder --root " +
                           data() + " --split test --option class_range=[0,4] --hierarchy ";
  auto result = run_command(base + path("hierarchy.csv").string() + " --json");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto h = json_lines(result.output).back()["hierarchy"];
  EXPECT_EQ(h["levels"], (nlohmann::json{"class", "parent"}));
  EXPECT_DOUBLE_EQ(h["accuracy"]["class"].get<double>(),
                   json_lines(result.output).back()["top1"].get<double>());
  EXPECT_GE(h["accuracy"]["parent"].get<double>(), h["accuracy"]["class"].get<double>());
  EXPECT_EQ(h["by_parent"].size(), 2u);
  result = run_command(base + path("hierarchy.csv").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "top-1 at parent");
  finch::test::write_text(path("bad_hierarchy.csv"), "class0,low\nclass1\n");
  result = run_command(base + path("bad_hierarchy.csv").string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "bad_hierarchy.csv:2");
}

// Generated classes: class c is a bright square at position c; attributes say where.
TEST_F(OpenWorldTest, ZeroShotFromAnAttributeTableAndItsErrors) {
  std::string csv = "class,p0,p1,p2,p3,p4,p5\n";
  for (int c = 0; c < 6; ++c) {
    csv += "class" + std::to_string(c);
    for (int a = 0; a < 6; ++a) csv += a == c ? ",1" : ",0";
    csv += "\n";
  }
  finch::test::write_text(path("attributes.csv"), csv);
  const std::string base = cli() + " eval --protocol zeroshot --model " + model() +
                           " --dataset imagefolder --root " + data() + " --split test";
  auto result = run_command(base + " --json --attributes " + path("attributes.csv").string() +
                            " --unseen-classes 4:6");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const auto j = json_lines(result.output).back();
  EXPECT_EQ(j["unseen_classes"], (nlohmann::json{"class4", "class5"}));
  EXPECT_EQ(j["unseen_test_images"], 20);
  EXPECT_EQ(j["chance"], 0.5);
  for (const char* key : {"seen", "unseen", "h"}) {
    EXPECT_GE(j["gzsl"][key].get<double>(), 0.0);
    EXPECT_LE(j["gzsl"][key].get<double>(), 1.0);
  }
  EXPECT_EQ(j["hyperparameters"]["method"], "eszsl");
  // The model saw class3: it cannot be an unseen class.
  result = run_command(base + " --attributes " + path("attributes.csv").string() +
                       " --unseen-classes class3,class4");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "trained on the unseen class 'class3'");
  finch::test::write_text(path("short.csv"), "class,p0\nclass0,1\nclass1,0\n");
  result =
      run_command(base + " --attributes " + path("short.csv").string() + " --unseen-classes 4:6");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "no row for the dataset's class 'class2'");
}

// Xian et al.'s proposed split as the xlsa17 archive ships it (att_splits.mat + res101.mat,
// written by scipy.io.savemat): attributes and unseen classes both come from the file.
TEST_F(OpenWorldTest, ZeroShotFromXianSplitMatFiles) {
  const std::string classes = "class0,class1,class2,class3,class4,class5";
  finch::test::run_python_reference("xian_split_writer.py",
                                    path("xlsa").string() + " " + classes + " class4,class5");
  const std::string base = cli() + " eval --protocol zeroshot --model " + model() +
                           " --dataset imagefolder --root " + data() + " --split test";
  const std::string mat = path("xlsa/att_splits.mat").string();
  auto result = run_command(base + " --json --attributes " + mat);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = json_lines(result.output).back();
  EXPECT_EQ(j["unseen_classes"], (nlohmann::json{"class4", "class5"}));
  EXPECT_EQ(j["attributes"]["count"], 6);
  EXPECT_EQ(j["attributes"]["source"], mat + " (att)");
  EXPECT_TRUE(j["gzsl_calibrated"].contains("stacking"));
  // The same figures as the CSV of the same attributes (att is attributes x classes).
  std::string csv = "class,a1,a2,a3,a4,a5,a6\n";
  for (int c = 0; c < 6; ++c) {
    csv += "class" + std::to_string(c);
    for (int a = 0; a < 6; ++a) csv += "," + std::to_string((a == c ? 1.0 : 0.0) + 0.25 * a);
    csv += "\n";
  }
  finch::test::write_text(path("xlsa.csv"), csv);
  result = run_command(base + " --json --attributes " + path("xlsa.csv").string() +
                       " --unseen-classes " + mat);
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_DOUBLE_EQ(json_lines(result.output).back()["zsl_top1"].get<double>(),
                   j["zsl_top1"].get<double>());

  // Without res101.mat the unseen classes cannot be known; an unseen class in trainval_loc.
  fs::rename(path("xlsa/res101.mat"), path("res101.mat"));
  result = run_command(base + " --attributes " + mat);
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "res101.mat, which is not next to it");
  finch::test::run_python_reference(
      "xian_split_writer.py", path("bad").string() + " " + classes + " class4,class5 --overlap");
  result = run_command(base + " --attributes " + path("bad/att_splits.mat").string());
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "has images in both trainval_loc and test_unseen_loc");
}
