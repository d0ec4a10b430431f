#pragma once
// The part of `finch serve` that reads what clients send and needs no model: limits, the
// bearer token, JSON error bodies, a request's images and query parameters. server.cpp wires
// it to the model; fuzz/http_fuzz.cpp drives it with raw request bytes. Private to src/serve:
// httplib's class layouts depend on the macros it was built with (HTTPLIB_CFLAGS).
#include <httplib.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "finch/core/error.h"

namespace finch::serve {

class Metrics;

/// A client's mistake: answered with `status` and {"error": message}, never a 500.
struct ClientError : Error {
  ClientError(int status_code, const std::string& message) : Error(message), status(status_code) {}
  int status;
};

void send_json(httplib::Response& res, int status, const nlohmann::json& body);

/// One image of a request: a name for its record and the encoded bytes.
struct Upload {
  std::string name;
  std::string bytes;
};

/// The images of a request: a raw image/* (or octet-stream) body, multipart files, or JSON
/// {"image": BASE64} / {"images": [BASE64, ...]}. `single` says the client sent one image
/// outside a list (its answer is one record, not {"results": [...]}). Throws ClientError.
std::vector<Upload> request_images(const httplib::Request& req, bool& single);

/// Query parameter `name` as an integer in [min, max], `fallback` when absent; anything
/// else is a ClientError 400 naming the parameter and the range.
int64_t int_param(const httplib::Request& req, const std::string& name, int64_t fallback,
                  int64_t min, int64_t max);

using HttpHandler = std::function<void(const httplib::Request&, httplib::Response&)>;

/// `handler` under finch's error contract: ClientError -> its status (503 with Retry-After),
/// finch::Error -> 422, any other exception -> 500 (a bug in finch, never a client's fault).
HttpHandler guarded(HttpHandler handler);

struct HttpPolicy {
  size_t max_body_bytes = 0;
  int timeout_ms = 30000;
  int http_threads = 1;
  std::string token;           // empty: no authentication
  Metrics* metrics = nullptr;  // requests counted and timed when set
};

/// Body limit, timeouts, keep-alive, the thread pool, bearer-token checks (all but /healthz
/// and /readyz) and JSON bodies for httplib's own errors (400, 404, 413, ...).
void apply_policy(httplib::Server& http, const HttpPolicy& policy);

}  // namespace finch::serve
