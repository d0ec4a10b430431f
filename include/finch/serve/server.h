#pragma once
// `finch serve`: one model file over HTTP (cpp-httplib), with the preprocessing of
// `finch predict`, dynamic batching (serve/batcher.h), Grad-CAM, embeddings, gallery search,
// Prometheus metrics and a web page. The HTTP layer only parses and answers; the batcher
// owns the model's forward.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "finch/serve/batcher.h"

namespace finch::serve {

struct ServeOptions {
  std::filesystem::path model, gallery;  // gallery: optional
  std::string host = "127.0.0.1";
  int port = 8080;     // 0: any free port (bind() returns it)
  BatchOptions batch;  // --max-batch, --max-delay-ms, --queue
  int http_threads = 8;
  int64_t max_body_bytes = 20 << 20;
  int64_t max_pixels = 40000000;  // refused from the header, before decoding
  int timeout_ms = 30000;         // socket read/write timeouts and the wait for a batch
  std::string token;              // bearer token required on every request but health checks
  std::string dtype = "auto";     // fp32 | bf16 | auto (eval/precision.h)
};

class Server {
 public:
  /// Loads the model (and gallery) and starts the batcher; throws finch::Error when they
  /// cannot be read or do not fit together, or when a non-loopback host has no token.
  explicit Server(ServeOptions options);
  ~Server();
  /// Binds host:port; returns the bound port. Throws finch::Error when it cannot.
  int bind();
  /// Serves until stop(); in-flight requests finish first.
  void run();
  /// Stops accepting and returns once run() has ended its work (safe from any thread or a
  /// signal-watching thread).
  void stop();
  /// Loads the model file again; on failure the old model keeps serving and the message is
  /// returned (empty on success).
  std::string reload();
  /// "resnet20 + linear, 10 classes, 28 px, sha256 ab12..." for the startup line.
  std::string summary() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace finch::serve
