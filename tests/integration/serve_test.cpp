// `finch serve` as a user runs it: a real process on an ephemeral loopback port, driven over
// HTTP, stopped with SIGTERM. Answers equal `finch predict`; every client mistake gets its
// 4xx and the server keeps serving.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <sstream>

#include "finch/io/image.h"
#include "test_support.h"
#include "tiny_run.h"

namespace fs = std::filesystem;
using finch::test::cli;
using finch::test::run_command;

namespace {

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// `finch serve ARGS --port 0` in a child process; the port is read from its startup line.
class ServerProcess {
 public:
  explicit ServerProcess(const std::string& args) {
    int out[2];
    if (pipe(out) != 0) throw std::runtime_error("pipe");
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      dup2(out[1], 2);
      close(out[0]);
      const std::string command = "exec " + cli() + " serve --port 0 --threads 1 " + args;
      execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    close(out[1]);
    output_ = fdopen(out[0], "r");
    char line[4096];
    while (fgets(line, sizeof line, output_)) {
      log_ += line;
      const std::string text(line);
      const auto at = text.find("listening on http://127.0.0.1:");
      if (at != std::string::npos) {
        port_ = std::stoi(text.substr(at + 30));
        break;
      }
    }
  }
  ~ServerProcess() {
    if (pid_ > 0 && exit_code_ < -1) stop();
    if (output_) fclose(output_);
  }
  int port() const { return port_; }
  const std::string& log() const { return log_; }
  /// SIGTERM, then the exit status (0 = a graceful stop).
  int stop() {
    kill(pid_, SIGTERM);
    char line[4096];
    while (fgets(line, sizeof line, output_)) log_ += line;
    int status = 0;
    waitpid(pid_, &status, 0);
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return exit_code_;
  }
  void signal(int sig) { kill(pid_, sig); }
  httplib::Client client(const std::string& token = "") const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(60, 0);
    if (!token.empty()) c.set_bearer_token_auth(token.c_str());
    return c;
  }

 private:
  pid_t pid_ = -1;
  FILE* output_ = nullptr;
  int port_ = -1;
  int exit_code_ = -2;
  std::string log_;
};

const std::string kServeRecipe = finch::test::tiny_recipe("epochs: 3, batch_size: 8, progress: none");

class ServeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new finch::test::TempDir("finch-serve");
    finch::test::make_pattern_imagefolder(path("data") / "train", 3, 12, 16, 1);
    finch::test::make_pattern_imagefolder(path("data") / "test", 3, 4, 16, 2);
    finch::test::write_text(path("recipe.yaml"), kServeRecipe);
    auto r = run_command(cli() + " train --config " + path("recipe.yaml").string() + " --out " +
                         path("run").string() + " --set data.root=" + path("data").string());
    ok_ = r.exit_code == 0;
    if (ok_)
      r = run_command(cli() + " gallery build --model " + model() +
                      " --dataset imagefolder --root " + path("data").string() +
                      " --split train --out " + path("g.safetensors").string());
    ok_ = ok_ && r.exit_code == 0;
    setup_log_ = new std::string(r.output);
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete setup_log_;
  }
  void SetUp() override { ASSERT_TRUE(ok_) << *setup_log_; }
  static fs::path path(const std::string& name) { return dir_->path() / name; }
  static std::string model() { return (dir_->path() / "run" / "best.safetensors").string(); }
  static fs::path image(int c, int i) {
    return dir_->path() / "data" / "test" / ("class" + std::to_string(c)) /
           ("img" + std::to_string(i) + ".png");
  }
  static finch::test::TempDir* dir_;
  static std::string* setup_log_;
  static bool ok_;
};

finch::test::TempDir* ServeTest::dir_ = nullptr;
std::string* ServeTest::setup_log_ = nullptr;
bool ServeTest::ok_ = false;

nlohmann::json body_json(const httplib::Result& r) {
  EXPECT_TRUE(r) << "no response";
  if (!r) return {};
  return nlohmann::json::parse(r->body, nullptr, false);
}

}  // namespace

TEST_F(ServeTest, AnswersEqualPredictAndEveryFormOfUpload) {
  ServerProcess server("--model " + model() + " --gallery " + path("g.safetensors").string());
  ASSERT_GT(server.port(), 0) << server.log();
  EXPECT_CONTAINS(server.log(), "resnet20 + linear, 3 classes");
  auto client = server.client();
  const std::string png = read_bytes(image(1, 0));
  auto r = client.Post("/v1/predict?topk=3", png, "image/png");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto served = body_json(r);
  // The same image through `finch predict --json`.
  auto local = run_command(cli() + " predict --json --topk 3 --model " + model() + " " +
                           image(1, 0).string());
  ASSERT_EQ(local.exit_code, 0) << local.output;
  auto expected = nlohmann::json::parse(local.output.substr(0, local.output.find('\n')));
  ASSERT_EQ(served["topk"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(served["topk"][i]["class"], expected["topk"][i]["class"]);
    EXPECT_NEAR(served["topk"][i]["prob"].get<double>(), expected["topk"][i]["prob"].get<double>(),
                1e-6);
  }
  // Multipart with two files (one of them broken): a record each, the broken one an error.
  httplib::MultipartFormDataItems items{{"a", png, "a.png", "image/png"},
                                        {"b", "not an image", "b.png", "image/png"}};
  r = client.Post("/v1/predict", items);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  auto multi = body_json(r)["results"];
  ASSERT_EQ(multi.size(), 2u);
  EXPECT_EQ(multi[0]["topk"][0]["class"], expected["topk"][0]["class"]);
  EXPECT_TRUE(multi[1].contains("error"));
  // JSON with base64.
  std::string b64 = run_command("base64 -w0 " + image(1, 0).string()).output;
  r = client.Post("/v1/predict", nlohmann::json{{"image", b64}}.dump(), "application/json");
  ASSERT_TRUE(r);
  EXPECT_EQ(body_json(r)["topk"][0]["class"], expected["topk"][0]["class"]) << r->body;
  // Embedding: unit length; search: the gallery's neighbours, best first.
  auto e = body_json(client.Post("/v1/embed", png, "image/png"));
  double norm = 0;
  for (double v : e["embedding"]) norm += v * v;
  EXPECT_NEAR(norm, 1.0, 1e-4);
  auto s = body_json(client.Post("/v1/search?k=4", png, "image/png"));
  ASSERT_EQ(s["neighbours"].size(), 4u) << s;
  EXPECT_GE(s["neighbours"][0]["score"].get<double>(), s["neighbours"][3]["score"].get<double>());
  // Grad-CAM as a PNG, and as JSON with a box.
  r = client.Post("/v1/explain", png, "image/png");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "image/png");
  EXPECT_EQ(r->body.substr(1, 3), "PNG");
  auto x = body_json(client.Post("/v1/explain?format=json&class=class2", png, "image/png"));
  EXPECT_EQ(x["class"], "class2");
  EXPECT_TRUE(x["box"].contains("width"));
  // The box comes back in the uploaded image's pixels: a 48 x 32 upload of the 16 px image is
  // resized 3x / 2x smaller by the eval transforms, so the input box scales back by 3 and 2.
  {
    cv::Mat small = cv::imdecode(std::vector<uchar>(png.begin(), png.end()), cv::IMREAD_COLOR),
            wide;
    cv::resize(small, wide, cv::Size(48, 32), 0, 0, cv::INTER_NEAREST);
    std::vector<uchar> bytes;
    cv::imencode(".png", wide, bytes);
    auto w = body_json(client.Post("/v1/explain?format=json",
                                   std::string(bytes.begin(), bytes.end()), "image/png"));
    EXPECT_EQ(w["image_size"], nlohmann::json::array({48, 32}));
    EXPECT_EQ(w["input_size"], nlohmann::json::array({16, 16}));
    const auto& b = w["box"];
    const auto& ib = w["input_box"];
    EXPECT_NEAR(b["width"].get<double>(), 3 * ib["width"].get<double>(), 1e-3) << w.dump();
    EXPECT_NEAR(b["height"].get<double>(), 2 * ib["height"].get<double>(), 1e-3);
    EXPECT_NEAR(b["x"].get<double>(), 3 * ib["x"].get<double>(), 1e-3);
    EXPECT_LE(b["x"].get<double>() + b["width"].get<double>(), 48 + 1e-3);
    EXPECT_LE(b["y"].get<double>() + b["height"].get<double>(), 32 + 1e-3);
  }
  // Model, health, metrics, OpenAPI, the page.
  auto m = body_json(client.Get("/v1/model"));
  EXPECT_EQ(m["classes"].size(), 3u);
  EXPECT_EQ(m["gallery"]["items"], 36);
  EXPECT_EQ(client.Get("/healthz")->status, 200);
  EXPECT_EQ(client.Get("/readyz")->status, 200);
  EXPECT_FALSE(nlohmann::json::parse(client.Get("/v1/openapi.json")->body)["paths"].empty());
  EXPECT_CONTAINS(client.Get("/")->body, "<title>finch</title>");
  const std::string metrics = client.Get("/metrics")->body;
  EXPECT_CONTAINS(metrics, "finch_requests_total{endpoint=\"/v1/predict\",code=\"200\"} 3");
  EXPECT_CONTAINS(metrics, "finch_batch_size_bucket{le=\"+Inf\"}");
  EXPECT_CONTAINS(metrics, "finch_model_load_seconds");
  EXPECT_EQ(server.stop(), 0) << server.log();
  EXPECT_CONTAINS(server.log(), "stopped");
}

TEST_F(ServeTest, ClientMistakesGetTheir4xxAndTheServerKeepsServing) {
  ServerProcess server("--model " + model() + " --max-body-mb 1 --max-pixels 1000000");
  ASSERT_GT(server.port(), 0) << server.log();
  auto client = server.client();
  const std::string png = read_bytes(image(0, 1));
  auto status = [&](const httplib::Result& r) { return r ? r->status : -1; };
  EXPECT_EQ(status(client.Post("/v1/predict", "hello", "text/plain")), 415);
  EXPECT_EQ(status(client.Post("/v1/predict", "not an image", "image/png")), 422);
  EXPECT_EQ(status(client.Post("/v1/predict", "", "image/jpeg")), 422);
  cv::Mat big(64, 64, CV_8UC3, cv::Scalar(1, 2, 3));
  std::vector<uchar> jpeg;
  cv::imencode(".jpg", big, jpeg);
  const std::string truncated(jpeg.begin(), jpeg.begin() + jpeg.size() / 2);
  auto r = client.Post("/v1/predict", truncated, "image/jpeg");
  EXPECT_EQ(status(r), 422);
  EXPECT_CONTAINS(r->body, "truncated JPEG");
  // A decompression bomb: a PNG header declaring 30000 x 30000 pixels.
  std::string bomb("\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x75\x30\0\0\x75\x30\x08\x02\0\0\0", 29);
  r = client.Post("/v1/predict", bomb, "image/png");
  EXPECT_EQ(status(r), 422);
  EXPECT_CONTAINS(r->body, "more than the limit of 1000000");
  EXPECT_EQ(status(client.Post("/v1/predict", std::string(2 << 20, 'x'), "image/png")), 413);
  // The same limit in `finch predict`: an error record, decided from the header alone.
  finch::test::write_text(path("bomb") / "bomb.png", bomb);
  auto local = run_command(cli() + " predict --json --max-pixels 1000000 --model " + model() + " " +
                           (path("bomb") / "bomb.png").string());
  EXPECT_EQ(local.exit_code, 0) << local.output;
  EXPECT_CONTAINS(local.output, "30000 x 30000 = 900000000 pixels, more than the limit");
  EXPECT_EQ(status(client.Post("/v1/predict?topk=abc", png, "image/png")), 400);
  EXPECT_EQ(status(client.Post("/v1/predict?topk=0", png, "image/png")), 400);
  EXPECT_EQ(status(client.Post("/v1/predict", "{\"image\": 3}", "application/json")), 400);
  EXPECT_EQ(status(client.Post("/v1/predict", "{nope", "application/json")), 400);
  EXPECT_EQ(status(client.Post("/v1/search", png, "image/png")), 404);  // no gallery
  EXPECT_EQ(status(client.Post("/v1/explain?class=nosuch", png, "image/png")), 400);
  EXPECT_EQ(status(client.Get("/v1/nothing")), 404);
  EXPECT_EQ(status(client.Post("/v1/admin/reload", "", "text/plain")), 403);  // no token
  // Bytes that are not UTF-8 in a file name or a Content-Type are quoted back replaced (the
  // JSON writer threw on them, a 500).
  r = client.Post("/v1/predict",
                  httplib::MultipartFormDataItems{{"f", png, "\xff\xfe.png", "image/png"}});
  EXPECT_EQ(status(r), 200);
  EXPECT_EQ(body_json(r)["results"][0].value("path", ""), "\xef\xbf\xbd\xef\xbf\xbd.png");
  EXPECT_EQ(status(client.Post("/v1/predict", png, "text/\xff")), 415);
  // Still serving, and no 5xx was counted.
  EXPECT_EQ(status(client.Post("/v1/predict", png, "image/png")), 200);
  EXPECT_EQ(client.Get("/metrics")->body.find("code=\"5"), std::string::npos);
  EXPECT_EQ(server.stop(), 0) << server.log();
}

TEST_F(ServeTest, TokensGuardEverythingButHealthAndReloadKeepsAGoodModel) {
  finch::test::write_text(path("token"), "0123456789abcdef0123\n");
  const fs::path served = path("served.safetensors");
  fs::copy_file(model(), served, fs::copy_options::overwrite_existing);
  ServerProcess server("--model " + served.string() + " --token-file " + path("token").string());
  ASSERT_GT(server.port(), 0) << server.log();
  const std::string png = read_bytes(image(2, 0));
  EXPECT_EQ(server.client().Post("/v1/predict", png, "image/png")->status, 401);
  EXPECT_EQ(server.client().Get("/healthz")->status, 200);
  auto authed = server.client("0123456789abcdef0123");
  EXPECT_EQ(authed.Post("/v1/predict", png, "image/png")->status, 200);
  EXPECT_EQ(authed.Post("/v1/admin/reload", "", "text/plain")->status, 200);
  // A broken file is refused and the old model keeps serving.
  finch::test::write_text(served, "broken");
  auto refused = authed.Post("/v1/admin/reload", "", "text/plain");
  EXPECT_EQ(refused->status, 409);
  EXPECT_CONTAINS(refused->body, "the old model keeps serving");
  EXPECT_EQ(authed.Post("/v1/predict", png, "image/png")->status, 200);
  // SIGHUP reloads the (restored) file.
  fs::copy_file(model(), served, fs::copy_options::overwrite_existing);
  // The watcher thread takes signals in order and reloads before it sees the SIGTERM of
  // stop(), so the log line is there by the time the process exits.
  server.signal(SIGHUP);
  EXPECT_EQ(authed.Post("/v1/predict", png, "image/png")->status, 200);
  EXPECT_EQ(server.stop(), 0) << server.log();
  EXPECT_CONTAINS(server.log(), "model reloaded");

  // Any other address needs a token.
  auto open = run_command(cli() + " serve --host 0.0.0.0 --port 0 --model " + model());
  EXPECT_NE(open.exit_code, 0);
  EXPECT_CONTAINS(open.output, "give --token-file");
}

// The web page in a real browser (Debian's chromium + chromedriver + python3-selenium): it
// shows finch predict's top-1 for an uploaded photo and talks to nobody but the server.
TEST_F(ServeTest, WebPageInHeadlessChromiumShowsPredictsAnswer) {
  ServerProcess server("--model " + model() + " --gallery " + path("g.safetensors").string());
  ASSERT_GT(server.port(), 0) << server.log();
  auto local = run_command(cli() + " predict --json --topk 1 --model " + model() + " " +
                           image(2, 1).string());
  ASSERT_EQ(local.exit_code, 0) << local.output;
  const std::string expected =
      nlohmann::json::parse(local.output.substr(0, local.output.find('\n')))["topk"][0]["class"];
  const fs::path out = fs::current_path() / "test-output";
  fs::create_directories(out);
  auto page =
      run_command("/usr/bin/python3 " +
                  (finch::test::source_dir() / "tests" / "browser" / "serve_page.py").string() +
                  " http://127.0.0.1:" + std::to_string(server.port()) + "/ " +
                  image(2, 1).string() + " " + expected + " " + (out / "serve_page.png").string());
  EXPECT_EQ(page.exit_code, 0)
      << "needs chromium, chromium-driver and python3-selenium (scripts/install-deps.sh):\n"
      << page.output;
  EXPECT_CONTAINS(page.output, "page check: ok");
  EXPECT_TRUE(fs::exists(out / "serve_page.png"));
  EXPECT_EQ(server.stop(), 0) << server.log();
}
