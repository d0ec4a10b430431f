#include "http_layer.h"

#include <fmt/format.h>

#include <algorithm>
#include <exception>

#include "finch/serve/http_util.h"
#include "finch/serve/metrics.h"

namespace finch::serve {

void send_json(httplib::Response& res, int status, const nlohmann::json& body) {
  res.status = status;
  // Names and messages may quote a client's invalid UTF-8: replaced, never a throw.
  res.set_content(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace),
                  "application/json");
}

std::vector<Upload> request_images(const httplib::Request& req, bool& single) {
  std::vector<Upload> out;
  const std::string type = req.get_header_value("Content-Type");
  single = false;
  if (req.is_multipart_form_data()) {
    for (const auto& [field, file] : req.files)
      out.push_back({file.filename.empty() ? field : file.filename, file.content});
    if (out.empty()) throw ClientError(422, "the multipart body holds no file");
  } else if (type.rfind("image/", 0) == 0 || type == "application/octet-stream") {
    single = true;
    out.push_back({"upload", req.body});
  } else if (type.rfind("application/json", 0) == 0) {
    const auto j = nlohmann::json::parse(req.body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) throw ClientError(400, "the body is not a JSON object");
    auto decode = [](const nlohmann::json& v, const std::string& name) {
      if (!v.is_string()) throw ClientError(400, name + " must be a base64 string");
      auto bytes = base64_decode(v.get<std::string>());
      if (!bytes) throw ClientError(400, name + " is not valid base64");
      return *bytes;
    };
    if (j.contains("image")) {
      single = true;
      out.push_back({"image", decode(j["image"], "image")});
    } else if (j.contains("images") && j["images"].is_array()) {
      for (size_t i = 0; i < j["images"].size(); ++i) {
        const std::string name = fmt::format("images[{}]", i);
        out.push_back({name, decode(j["images"][i], name)});
      }
      if (out.empty()) throw ClientError(422, "\"images\" is empty");
    } else {
      throw ClientError(400, "a JSON body needs \"image\" (base64) or \"images\" (a list)");
    }
  } else {
    throw ClientError(415, "unsupported Content-Type '" + type +
                               "': send image/*, multipart/form-data or application/json");
  }
  return out;
}

int64_t int_param(const httplib::Request& req, const std::string& name, int64_t fallback,
                  int64_t min, int64_t max) {
  if (!req.has_param(name)) return fallback;
  const std::string text = req.get_param_value(name);
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || value < min || value > max)
    throw ClientError(400, fmt::format("query parameter {}={} must be an integer in [{}, {}]", name,
                                       text, min, max));
  return value;
}

HttpHandler guarded(HttpHandler handler) {
  return [handler = std::move(handler)](const httplib::Request& req, httplib::Response& res) {
    try {
      handler(req, res);
    } catch (const ClientError& e) {
      if (e.status == 503) res.set_header("Retry-After", "1");
      send_json(res, e.status, {{"error", e.what()}});
    } catch (const Error& e) {
      send_json(res, 422, {{"error", e.what()}});
    } catch (const std::exception& e) {
      send_json(res, 500, {{"error", e.what()}});
    }
  };
}

void apply_policy(httplib::Server& http, const HttpPolicy& policy) {
  http.set_payload_max_length(policy.max_body_bytes);
  const time_t seconds = policy.timeout_ms / 1000;
  const time_t micros = (policy.timeout_ms % 1000) * 1000;
  http.set_read_timeout(seconds, micros);
  http.set_write_timeout(seconds, micros);
  http.set_keep_alive_timeout(5);
  const int threads = std::max(1, policy.http_threads);
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  const std::string token = policy.token;
  http.set_pre_routing_handler([token](const httplib::Request& req, httplib::Response& res) {
    Metrics::start_request();
    if (token.empty() || req.path == "/healthz" || req.path == "/readyz")
      return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") != "Bearer " + token) {
      res.set_header("WWW-Authenticate", "Bearer");
      send_json(res, 401, {{"error", "missing or wrong bearer token"}});
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  if (policy.metrics != nullptr)
    http.set_logger(
        [metrics = policy.metrics](const httplib::Request& req, const httplib::Response& res) {
          metrics->finish_request(req.path, res.status);
        });
  // httplib's own answers (413 for a body above the limit, 404, 400) get a JSON body.
  http.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.body.empty())
      send_json(res, res.status,
                {{"error", res.status == 413   ? "the request body is larger than --max-body-mb"
                           : res.status == 404 ? "no such endpoint (see /v1/openapi.json)"
                                               : "the request could not be read"}});
  });
  http.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
        send_json(res, 500, {{"error", "internal error"}});
      });
}

}  // namespace finch::serve
