// libFuzzer target for the HTTP side of `finch serve`. The input's first byte picks a server
// without or with a bearer token ("fuzz-token"); the rest is what a client sends on one
// connection, up to 8 requests. cpp-httplib parses them (request line, headers, chunked or
// compressed bodies, multipart) and finch answers with the same policy as `finch serve`
// (body limit, token, JSON errors: src/serve/http_layer.h) and the same request reading
// (images from raw, multipart and JSON base64 bodies, query parameters, decoding with a pixel
// limit); a stand-in replaces the model, which never sees bytes a client sent. Any answer is
// fine except a crash, a 500 (an internal error is never the client's fault) or an answer
// whose JSON body does not parse.
#include <httplib.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "../src/serve/http_layer.h"
#include "finch/core/error.h"
#include "finch/io/image.h"
#include "finch/serve/http_util.h"
#include "finch/serve/metrics.h"

namespace {

using finch::serve::ClientError;

// FINCH_HTTP_FUZZ_ECHO=1 prints the answers (to check what a seed reaches).
bool echo() {
  static const bool on = std::getenv("FINCH_HTTP_FUZZ_ECHO") != nullptr;
  return on;
}

// One client connection: reads come from the input, what the server writes is dropped.
class Connection : public httplib::Stream {
 public:
  Connection(const uint8_t* data, size_t size)
      : data_(reinterpret_cast<const char*>(data)), size_(size) {}
  bool is_readable() const override { return true; }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, size_ - at_);
    std::memcpy(ptr, data_ + at_, n);
    at_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    if (echo()) fwrite(ptr, 1, size, stderr);
    return static_cast<ssize_t>(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 40000;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 8080;
  }
  socket_t socket() const override { return INVALID_SOCKET; }
  bool exhausted() const { return at_ >= size_; }

 private:
  const char* data_;
  size_t size_;
  size_t at_ = 0;
};

class FuzzServer : public httplib::Server {
 public:
  explicit FuzzServer(const std::string& token) {
    finch::serve::HttpPolicy policy;
    policy.max_body_bytes = 1 << 20;
    policy.token = token;
    finch::serve::apply_policy(*this, policy);
    // The oracle sees every answer, httplib's own errors included.
    set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics_.finish_request(req.path, res.status);
      if (res.status == 500) std::abort();
      // By now httplib has compressed the body when the client accepts gzip or br, and cut it
      // to the byte ranges a Range header asked for (on any answer, even an error).
      if (res.get_header_value("Content-Type") == "application/json" &&
          !res.has_header("Content-Encoding") && !res.has_header("Content-Range") &&
          !nlohmann::json::accept(res.body))
        std::abort();
    });
    auto route = [this](bool post, const char* path, finch::serve::HttpHandler h) {
      if (post)
        Post(path, finch::serve::guarded(std::move(h)));
      else
        Get(path, finch::serve::guarded(std::move(h)));
    };
    route(false, "/healthz", [](const auto&, auto& res) {
      finch::serve::send_json(res, 200, {{"status", "alive"}});
    });
    route(false, "/metrics", [this](const auto&, auto& res) {
      res.set_content(metrics_.prometheus_text(0), "text/plain; version=0.0.4");
    });
    route(false, "/v1/openapi.json", [](const auto&, auto& res) {
      res.set_content(finch::serve::openapi_json(), "application/json");
    });
    for (const char* path : {"/v1/predict", "/v1/embed", "/v1/search", "/v1/explain"})
      route(true, path, [path](const auto& req, auto& res) { answer_images(path, req, res); });
  }

  // One request from `connection`; false when the connection is done.
  bool serve_one(Connection& connection) {
    bool closed = false;
    return process_request(connection, /*close_connection=*/false, closed, nullptr) && !closed;
  }

 private:
  // What the endpoints do before the model: parameters, the uploads, decoding.
  static void answer_images(const std::string& path, const httplib::Request& req,
                            httplib::Response& res) {
    const int64_t k =
        finch::serve::int_param(req, path == "/v1/search" ? "k" : "topk", 5, 1, 100000);
    bool single = false;
    const auto uploads = finch::serve::request_images(req, single);
    if (path == "/v1/explain" && uploads.size() != 1)
      throw ClientError(400, "explain takes exactly one image");
    nlohmann::json records = nlohmann::json::array();
    for (const auto& upload : uploads) {
      nlohmann::json record{{"path", upload.name}};
      try {
        if (upload.bytes.empty()) throw finch::Error("empty upload (zero bytes)");
        const cv::Mat rgb = finch::io::decode_image_rgb(upload.bytes, upload.name, 1 << 20);
        record["size"] = {rgb.cols, rgb.rows, k};
      } catch (const finch::Error& e) {
        if (single) throw ClientError(422, e.what());
        record["error"] = e.what();
      }
      records.push_back(std::move(record));
    }
    finch::serve::send_json(res, 200,
                            single ? records.front() : nlohmann::json{{"results", records}});
  }

  finch::serve::Metrics metrics_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static FuzzServer open_server("");
  static FuzzServer token_server("fuzz-token");
  if (size == 0) return 0;
  FuzzServer& server = (data[0] & 1) != 0 ? token_server : open_server;
  Connection connection(data + 1, size - 1);
  for (int request = 0; request < 8 && !connection.exhausted(); ++request)
    if (!server.serve_one(connection)) break;
  return 0;
}
