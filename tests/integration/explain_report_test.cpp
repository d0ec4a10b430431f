// `finch explain`, `localize`, the eval additions and `report` end to end on a tiny trained run.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <sstream>

#include "finch/core/atomic_file.h"
#include "test_support.h"
#include "tiny_run.h"

namespace fs = std::filesystem;
using finch::test::cli;
using finch::test::json_lines;
using finch::test::run_command;

namespace {

const char* kExplainRecipe = R"(seed: 1
threads: 1
data:
  format: imagefolder
  workers: 1
  val_fraction: 0.2
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
  train_transforms: []
  eval_transforms: [{type: resize, size: [16, 16]}]
model: {backbone: resnet20, width: 4, input_size: 16}
train: {epochs: 4, batch_size: 8, progress: none}
optim: {name: adam, lr: 0.005, weight_decay: 0.0}
schedule: {name: cosine}
)";

class ExplainReportTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    run_ = new finch::test::TrainedRun("finch-explain", kExplainRecipe, 3, 16, 6);
  }
  static void TearDownTestSuite() { delete run_; }
  static fs::path path(const std::string& name) { return run_->path(name); }
  static std::string model() { return run_->model(); }
  static finch::test::TrainedRun* run_;
};

finch::test::TrainedRun* ExplainReportTest::run_ = nullptr;

}  // namespace

TEST_F(ExplainReportTest, ExplainWritesHeatmapsAndNpy) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  auto result = run_command(cli() + " explain --json --raw --model " + model() + " --out " +
                            path("cams").string() + " --target class2 " +
                            path("data/test/class1/img0.png").string() + " " +
                            path("data/test/class2/img1.png").string());
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto records = json_lines(result.output);
  ASSERT_EQ(records.size(), 2u) << result.output;
  EXPECT_EQ(records[0]["target"], "class2");
  EXPECT_EQ(records[0]["method"], "gradcam");
  EXPECT_TRUE(fs::exists(records[0]["heatmap"].get<std::string>()));
  // resnet20 at 16 px: the last stage is 4 x 4; NPY v1.0, header padded to 64 bytes.
  const std::string npy = finch::read_file(records[1]["raw"].get<std::string>());
  ASSERT_GT(npy.size(), 10u);
  EXPECT_EQ(npy.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  const size_t header = static_cast<uint8_t>(npy[8]) | (static_cast<uint8_t>(npy[9]) << 8);
  EXPECT_EQ((10 + header) % 64, 0u);
  EXPECT_CONTAINS(npy.substr(10, header),
                  "'descr': '<f4', 'fortran_order': False, 'shape': (4, 4)");
  EXPECT_EQ(npy.size(), 10 + header + 16 * sizeof(float));

  auto attention = run_command(cli() + " explain --method attention --model " + model() +
                               " --out " + path("cams").string() + " " +
                               path("data/test/class1/img0.png").string() + " 2>&1");
  EXPECT_NE(attention.exit_code, 0);
  EXPECT_CONTAINS(attention.output, "no attention maps");
  auto bad_target = run_command(cli() + " explain --target nope --model " + model() + " --out " +
                                path("cams").string() + " " +
                                path("data/test/class1/img0.png").string() + " 2>&1");
  EXPECT_NE(bad_target.exit_code, 0);
  EXPECT_CONTAINS(bad_target.output, "unknown class 'nope'");
}

TEST_F(ExplainReportTest, EvalCalibrationTtaEmbeddingsAndConfusedExamples) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  const std::string base = cli() + " eval --model " + model() + " --dataset imagefolder --root " +
                           path("data").string() + " --split test";
  auto result = run_command(base + " --json --tta flip --confused-examples 2 --reliability " +
                            path("rel.png").string() + " --save-embeddings " +
                            path("emb.safetensors").string() + " --tsne " +
                            path("map.svg").string() + " 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = nlohmann::json::parse(result.output);
  EXPECT_EQ(j["num_samples"], 18);
  EXPECT_EQ(j["tta"], "flip");
  EXPECT_GE(j["ece"].get<double>(), 0.0);
  EXPECT_LE(j["ece"].get<double>(), 1.0);
  EXPECT_EQ(j["calibration"].size(), 15u);
  int64_t binned = 0;
  for (const auto& b : j["calibration"]) binned += b["count"].get<int64_t>();
  EXPECT_EQ(binned, 18);
  ASSERT_TRUE(j.contains("confused_examples"));
  for (const auto& pair : j["confused_examples"]) {
    EXPECT_LE(pair["examples"].size(), 2u);
    for (const auto& p : pair["examples"]) EXPECT_TRUE(fs::exists(p.get<std::string>())) << p;
  }
  EXPECT_TRUE(fs::exists(path("rel.png")));
  EXPECT_GT(fs::file_size(path("emb.safetensors")), 18u * 16 * 4);
  EXPECT_CONTAINS(finch::read_file(path("map.svg")), "<circle");

  auto text = run_command(base + " --tta five-crop 2>/dev/null");
  ASSERT_EQ(text.exit_code, 0) << text.output;
  EXPECT_CONTAINS(text.output, "expected calibration error");
  EXPECT_CONTAINS(text.output, "per-class accuracy, worst first");
  EXPECT_CONTAINS(text.output, "five-crop (5 views)");
  auto bad = run_command(base + " --tta rotate 2>&1");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_CONTAINS(bad.output, "unknown --tta");
}

TEST_F(ExplainReportTest, LocalizeNeedsBoxesAndScoresThem) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  auto no_boxes = run_command(cli() + " localize --model " + model() +
                              " --dataset imagefolder --root " + path("data").string() + " 2>&1");
  EXPECT_NE(no_boxes.exit_code, 0);
  EXPECT_CONTAINS(no_boxes.output, "no object boxes");
  // The test images as a CSV with each class's square (4 x 4, +-1 px jitter) as the box.
  std::string csv = "path,label,split,x,y,w,h\n";
  for (int c = 0; c < 3; ++c) {
    const int cx = (c % 2 == 0) ? (c + 1) * 16 / 4 : 16 - (c + 1) * 16 / 4;
    const int cy = (c + 1) * 16 / 4;
    for (int i = 0; i < 6; ++i)
      csv += "test/class" + std::to_string(c) + "/img" + std::to_string(i) + ".png,class" +
             std::to_string(c) + ",test," + std::to_string(cx - 2) + "," + std::to_string(cy - 2) +
             ",4,4\n";
  }
  finch::test::write_text(path("data/boxes.csv"), csv);
  auto result = run_command(cli() + " localize --json --model " + model() +
                            " --dataset csv --root " + path("data").string() +
                            " --option csv_file=boxes.csv --threshold 0.5 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  auto j = nlohmann::json::parse(result.output);
  EXPECT_EQ(j["images"], 18);
  EXPECT_EQ(j["explained_class"], "label");
  EXPECT_GE(j["corloc"].get<double>(), 0.0);
  EXPECT_LE(j["corloc"].get<double>(), 1.0);
  EXPECT_GT(j["mean_iou"].get<double>(), 0.0);
  EXPECT_LE(j["mean_iou"].get<double>(), 1.0);
}

TEST_F(ExplainReportTest, ReportIsOneSelfContainedPage) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  auto result = run_command(cli() + " report " + path("run").string() + " 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_CONTAINS(result.output, "report.html");
  const std::string html = finch::read_file(path("run/report.html"));
  for (const char* part : {"<svg", "data:image/png;base64,", "Training", "Per-class accuracy",
                           "Confusion matrix", "Reliability", "Grad-CAM gallery", "Embedding map",
                           "class2", "finch", "expected calibration error"})
    EXPECT_CONTAINS(html, part);
  // No external resource: no src/href to a URL, no script.
  EXPECT_FALSE(std::regex_search(html, std::regex(R"((src|href)\s*=\s*["']?(https?:)?//)")));
  EXPECT_EQ(html.find("<script"), std::string::npos);
  // One learning-rate polyline with one point per epoch.
  EXPECT_CONTAINS(html, "learning rate");
  // imagefolder has no taxonomy: no section for it.
  EXPECT_EQ(html.find("Mistakes by"), std::string::npos);
}

TEST_F(ExplainReportTest, ReportGroupsTheConfusionMatrixByParent) {
  ASSERT_EQ(run_->exit_code, 0) << run_->output;
  finch::test::write_text(path("taxonomy.csv"),
                          "class,parent\nclass0,low\nclass1,low\nclass2,high\n");
  auto result = run_command(cli() + " report " + path("run").string() + " --hierarchy " +
                            path("taxonomy.csv").string() + " --out " +
                            path("grouped.html").string() + " 2>/dev/null");
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const std::string html = finch::read_file(path("grouped.html"));
  EXPECT_CONTAINS(html, "Mistakes by parent");
  EXPECT_CONTAINS(html, "grouped by parent");
  EXPECT_CONTAINS(html, "Confusion between each parent");
  // One row per parent with its class count; the images add up to the test split's 18.
  const std::regex row(R"(<tr><td>(low|high)</td><td>(\d+)</td><td>(\d+)</td>)");
  int images = 0;
  std::map<std::string, int> classes;
  for (auto it = std::sregex_iterator(html.begin(), html.end(), row); it != std::sregex_iterator();
       ++it) {
    classes[(*it)[1]] = std::stoi((*it)[2]);
    images += std::stoi((*it)[3]);
  }
  EXPECT_EQ(classes, (std::map<std::string, int>{{"high", 1}, {"low", 2}}));
  EXPECT_EQ(images, 18);
  // Two groups: one separator line in the class matrix.
  EXPECT_CONTAINS(html, "class=\"group\"");
  // A CSV that misses a class is refused with its name.
  finch::test::write_text(path("partial.csv"), "class0,low\nclass1,low\n");
  result = run_command(cli() + " report " + path("run").string() + " --hierarchy " +
                       path("partial.csv").string() + " --out " + path("partial.html").string() +
                       " 2>&1");
  EXPECT_NE(result.exit_code, 0);
  EXPECT_CONTAINS(result.output, "class2");
}
