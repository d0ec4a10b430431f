#include "finch/serve/server.h"

#include <fmt/format.h>
#include <httplib.h>
#include <torch/torch.h>

#include <map>
#include <opencv2/core/utility.hpp>
#include <optional>

#include "finch/core/error.h"
#include "finch/eval/session.h"
#include "finch/explain/charts.h"
#include "finch/explain/explainer.h"
#include "finch/explain/localize.h"
#include "finch/gallery/gallery.h"
#include "finch/io/image.h"
#include "finch/models/inference.h"
#include "finch/serve/http_util.h"
#include "finch/serve/metrics.h"
#include "finch/serve/page.h"
#include "http_layer.h"

namespace finch::serve {

namespace {

// Everything one loaded model file serves with; replaced whole on reload.
struct ModelState {
  std::shared_ptr<eval::InferenceSession> session;
  std::shared_ptr<const ForwardFn> forward;
  std::optional<gallery::Gallery> gallery;
  std::unique_ptr<explain::Explainer> explainer;  // Grad-CAM through the source model
  std::mutex explain_mutex;                       // one explanation at a time
};

bool is_loopback(const std::string& host) {
  return host == "127.0.0.1" || host == "localhost" || host == "::1";
}

}  // namespace

struct Server::Impl {
  ServeOptions options;
  httplib::Server http;
  Batcher batcher;
  Metrics metrics;
  std::mutex state_mutex;
  std::shared_ptr<ModelState> state;

  explicit Impl(ServeOptions o) : options(std::move(o)), batcher(options.batch) {}

  std::shared_ptr<ModelState> current() {
    std::lock_guard<std::mutex> lock(state_mutex);
    return state;
  }

  std::shared_ptr<ModelState> load() {
    const auto start = Clock::now();
    auto s = std::make_shared<ModelState>();
    eval::SessionOptions session_options = eval::session_options_for_dtype(options.dtype);
    session_options.keep_source_model = true;  // /v1/explain
    s->session = std::make_shared<eval::InferenceSession>(options.model, session_options);
    if (!options.gallery.empty()) {
      s->gallery = gallery::Gallery::load(options.gallery);
      s->gallery->check_model(*s->session);
    }
    s->explainer = std::make_unique<explain::Explainer>(*s->session);
    auto session = s->session;
    s->forward = std::make_shared<const ForwardFn>([session](const torch::Tensor& batch) {
      auto out = session->forward(batch, /*normalize_embedding=*/true);
      return std::make_pair(out.probabilities, out.embedding);
    });
    metrics.set_model_load_seconds(std::chrono::duration<double>(Clock::now() - start).count());
    return s;
  }

  // --- request parsing ----------------------------------------------------------------

  // Decoded and preprocessed on this HTTP thread; a bad image is an error record.
  struct Prepared {
    std::vector<std::string> names;
    std::vector<torch::Tensor> rows;  // preprocessed images that decoded
    std::vector<int> row_of;          // per name: index into rows, or -1
    std::vector<std::string> errors;  // per name: "" or why it failed
    std::vector<cv::Mat> decoded;     // kept for explain
  };
  Prepared prepare(const eval::InferenceSession& session, const std::vector<Upload>& images,
                   bool keep_decoded = false) {
    Prepared p;
    for (const auto& [name, bytes] : images) {
      p.names.push_back(name);
      try {
        if (bytes.empty()) throw Error("empty upload (zero bytes)");
        // The header's declared size is checked before decoding (decompression bombs).
        cv::Mat rgb = io::decode_image_rgb(bytes, name, options.max_pixels);
        p.rows.push_back(session.preprocess(rgb));
        if (keep_decoded) p.decoded.push_back(rgb);
        p.row_of.push_back(static_cast<int>(p.rows.size()) - 1);
        p.errors.emplace_back();
      } catch (const Error& e) {
        p.row_of.push_back(-1);
        p.errors.push_back(e.what());
      } catch (const c10::Error& e) {  // an image the transforms cannot take
        p.row_of.push_back(-1);
        p.errors.push_back(name + ": " + e.what_without_backtrace());
      }
    }
    return p;
  }

  // The request's images decoded and preprocessed; a lone image that fails is a 422.
  Prepared read_images(const ModelState& s, const httplib::Request& req, bool& single,
                       bool keep_decoded = false) {
    Prepared p = prepare(*s.session, request_images(req, single), keep_decoded);
    if (single && p.rows.empty()) throw ClientError(422, p.errors.front());
    return p;
  }

  // Runs the decoded rows through the batcher; returns probabilities and embeddings [N, .].
  std::pair<torch::Tensor, torch::Tensor> infer(const ModelState& s, const Prepared& p) {
    TaskPtr task = batcher.submit(torch::stack(p.rows), s.forward);
    if (!task) throw ClientError(503, "the queue is full; retry shortly");
    auto future = task->finished.get_future();
    if (future.wait_for(std::chrono::milliseconds(options.timeout_ms)) != std::future_status::ready)
      throw ClientError(503, "the model did not answer within the timeout; retry shortly");
    if (task->error) std::rethrow_exception(task->error);
    metrics.add_images(static_cast<int64_t>(p.rows.size()));
    torch::Tensor embeddings;
    if (task->embeddings.front().defined()) embeddings = torch::stack(task->embeddings);
    return {torch::stack(task->logits), embeddings};
  }

  // One record per image: `answer(row)` for those that decoded, {"path", "error"} for the
  // others; one image gets its record, several get {"results": [...]}.
  void send_records(httplib::Response& res, const Prepared& p, bool single,
                    const std::function<nlohmann::json(int row)>& answer) {
    nlohmann::json records = nlohmann::json::array();
    for (size_t i = 0; i < p.names.size(); ++i) {
      nlohmann::json record{{"path", p.names[i]}};
      if (p.row_of[i] < 0)
        record["error"] = p.errors[i];
      else
        record.update(answer(p.row_of[i]));
      records.push_back(std::move(record));
    }
    send_json(res, 200, single ? records.front() : nlohmann::json{{"results", records}});
  }

  // --- endpoints ------------------------------------------------------------------------

  void predict(const httplib::Request& req, httplib::Response& res) {
    auto s = current();
    const int64_t k = int_param(req, "topk", 5, 1, 100000);
    bool single = false;
    const Prepared p = read_images(*s, req, single);
    std::vector<std::vector<eval::ClassScore>> top;
    if (!p.rows.empty()) top = eval::top_k(infer(*s, p).first, s->session->classes(), k);
    send_records(res, p, single, [&](int row) {
      nlohmann::json items = nlohmann::json::array();
      for (const auto& c : top[row])
        items.push_back({{"class", c.name}, {"index", c.index}, {"prob", c.prob}});
      return nlohmann::json{{"topk", items}};
    });
  }

  void embed(const httplib::Request& req, httplib::Response& res) {
    auto s = current();
    bool single = false;
    const Prepared p = read_images(*s, req, single);
    torch::Tensor embeddings;
    if (!p.rows.empty()) embeddings = infer(*s, p).second;
    if (!p.rows.empty() && !embeddings.defined())
      throw Error("this model's head returns no embedding");
    send_records(res, p, single, [&](int r) {
      torch::Tensor row = embeddings[r].contiguous();
      std::vector<float> values(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
      return nlohmann::json{{"dim", row.numel()}, {"embedding", values}};
    });
  }

  void search(const httplib::Request& req, httplib::Response& res) {
    auto s = current();
    if (!s->gallery) throw ClientError(404, "no gallery is loaded (start with --gallery G)");
    const int64_t k = int_param(req, "k", 10, 1, 100000);
    bool single = false;
    const Prepared p = read_images(*s, req, single);
    std::vector<std::vector<gallery::Neighbour>> hits;
    if (!p.rows.empty())
      hits = gallery::exact_search(infer(*s, p).second, s->gallery->embeddings(), k);
    const auto& g = *s->gallery;
    auto labels = g.labels().accessor<int64_t, 1>();
    send_records(res, p, single, [&](int row) {
      nlohmann::json items = nlohmann::json::array();
      for (const auto& h : hits[row])
        items.push_back({{"path", g.paths()[h.item]},
                         {"class", g.classes()[labels[h.item]]},
                         {"item", h.item},
                         {"score", h.score}});
      return nlohmann::json{{"neighbours", items}};
    });
  }

  void explain(const httplib::Request& req, httplib::Response& res) {
    auto s = current();
    bool single = false;
    const auto images = request_images(req, single);
    if (images.size() != 1) throw ClientError(400, "explain takes exactly one image");
    Prepared p = prepare(*s->session, images, /*keep_decoded=*/true);
    if (p.rows.empty()) throw ClientError(422, p.errors.front());
    explain::CamOptions cam;
    if (req.has_param("class")) {
      try {
        cam.target = s->explainer->class_index(req.get_param_value("class"));
      } catch (const Error& e) {
        throw ClientError(400, e.what());
      }
    }
    const std::string format = req.has_param("format") ? req.get_param_value("format") : "png";
    if (format != "png" && format != "json") throw ClientError(400, "format must be png or json");
    explain::Explanation e;
    {
      std::lock_guard<std::mutex> lock(s->explain_mutex);
      e = s->explainer->explain({p.decoded.front()}, cam).front();
    }
    const cv::Mat overlay = explain::overlay_heatmap(e.input_rgb, e.cam);
    metrics.add_images(1);
    if (format == "png") {
      res.status = 200;
      res.set_content(explain::png_bytes(overlay), "image/png");
      return;
    }
    // The box in the model input (what the overlay shows), and mapped back through the eval
    // transforms' resize / center_crop to the uploaded image's pixels.
    const auto input_box = explain::cam_to_box(e.cam, 0.2, e.input_rgb.cols, e.input_rgb.rows);
    const cv::Mat& original = p.decoded.front();
    auto box_json = [](const data::Box& b) {
      return nlohmann::json{{"x", b.x}, {"y", b.y}, {"width", b.width}, {"height", b.height}};
    };
    nlohmann::json box = nullptr;
    try {
      const auto geometry = explain::input_geometry(s->session->info().preprocess.eval_transforms,
                                                    original.cols, original.rows);
      box = box_json(explain::to_original(input_box, geometry, original.cols, original.rows));
    } catch (const Error&) {
      // Eval transforms that move pixels in other ways (rotation, padding): no way back.
    }
    const auto& classes = s->session->classes();
    send_json(res, 200,
              {{"class", classes.at(e.target)},
               {"index", e.target},
               {"prob", e.target_prob},
               {"predicted", classes.at(e.predicted)},
               {"predicted_prob", e.predicted_prob},
               {"overlay_png", explain::base64(explain::png_bytes(overlay))},
               {"box", box},
               {"image_size", {original.cols, original.rows}},
               {"input_box", box_json(input_box)},
               {"input_size", {e.input_rgb.cols, e.input_rgb.rows}}});
  }

  nlohmann::json model_json() {
    auto s = current();
    const auto& info = s->session->info();
    nlohmann::json out{{"arch", info.arch},
                       {"classes", info.classes},
                       {"input_size", info.preprocess.input_size},
                       {"preprocess",
                        {{"eval_transforms", info.preprocess.eval_transforms},
                         {"mean", info.preprocess.mean},
                         {"std", info.preprocess.std}}},
                       {"sha256", s->session->content_hash()},
                       {"dtype", s->session->dtype_name()},
                       {"dtype_decision", s->session->dtype_decision()},
                       {"max_batch", options.batch.max_batch},
                       {"max_pixels", options.max_pixels}};
    if (s->gallery)
      out["gallery"] = {{"items", s->gallery->size()}, {"classes", s->gallery->classes()}};
    return out;
  }

  // --- wiring -----------------------------------------------------------------------------

  // c10::Error's what() carries a C++ backtrace: clients get the message only.
  void route(const std::string& method, const std::string& path, HttpHandler handler) {
    auto wrapped = guarded([handler](const httplib::Request& req, httplib::Response& res) {
      try {
        handler(req, res);
      } catch (const c10::Error& e) {
        throw std::runtime_error(e.what_without_backtrace());
      }
    });
    if (method == "GET")
      http.Get(path, wrapped);
    else
      http.Post(path, wrapped);
  }

  void wire() {
    HttpPolicy policy;
    policy.max_body_bytes = static_cast<size_t>(options.max_body_bytes);
    policy.timeout_ms = options.timeout_ms;
    policy.http_threads = options.http_threads;
    policy.token = options.token;
    policy.metrics = &metrics;
    apply_policy(http, policy);

    route("GET", "/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(kIndexHtml, "text/html; charset=utf-8");
    });
    route("GET", "/healthz", [](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, {{"status", "alive"}});
    });
    route("GET", "/readyz", [this](const httplib::Request&, httplib::Response& res) {
      const int64_t queued = batcher.queued_rows();
      const bool ready = current() && queued < options.batch.max_queued_images;
      send_json(res, ready ? 200 : 503, {{"ready", ready}, {"queued_images", queued}});
    });
    route("GET", "/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.prometheus_text(batcher.queued_rows()), "text/plain; version=0.0.4");
    });
    route("GET", "/v1/model", [this](const httplib::Request&, httplib::Response& res) {
      send_json(res, 200, model_json());
    });
    route("GET", "/v1/openapi.json", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(openapi_json(), "application/json");
    });
    route("POST", "/v1/predict", [this](const auto& req, auto& res) { predict(req, res); });
    route("POST", "/v1/embed", [this](const auto& req, auto& res) { embed(req, res); });
    route("POST", "/v1/search", [this](const auto& req, auto& res) { search(req, res); });
    route("POST", "/v1/explain", [this](const auto& req, auto& res) { explain(req, res); });
    route("POST", "/v1/admin/reload", [this](const httplib::Request&, httplib::Response& res) {
      if (options.token.empty())
        throw ClientError(403,
                          "reload over HTTP needs a token: start with --token-file (or "
                          "send SIGHUP)");
      const std::string error = reload();
      if (!error.empty())
        throw ClientError(409, "reload refused, the old model keeps serving: " + error);
      send_json(res, 200, {{"reloaded", true}, {"sha256", current()->session->content_hash()}});
    });
  }

  std::string reload() {
    try {
      auto fresh = load();
      std::lock_guard<std::mutex> lock(state_mutex);
      state = std::move(fresh);
      return "";
    } catch (const std::exception& e) {
      return e.what();
    }
  }
};

Server::Server(ServeOptions options) {
  if (!is_loopback(options.host) && options.token.empty())
    throw Error("binding " + options.host +
                " exposes the model beyond this machine: give --token-file (a bearer token "
                "required on every request but /healthz and /readyz)");
  if (options.http_threads < 1) throw Error("--http-threads must be >= 1");
  // Requests are decoded and resized on many HTTP threads at once: OpenCV's own thread pool
  // would only add threads fighting the model's compute threads for the cores.
  cv::setNumThreads(1);
  impl_ = std::make_unique<Impl>(std::move(options));
  impl_->state = impl_->load();
  impl_->batcher.set_observer(
      [this](int64_t rows, double seconds) { impl_->metrics.add_batch(rows, seconds); });
  impl_->wire();
}

Server::~Server() {
  stop();
  impl_->batcher.stop();
}

int Server::bind() {
  const auto& o = impl_->options;
  int port = o.port;
  if (port == 0) {
    port = impl_->http.bind_to_any_port(o.host.c_str());
  } else if (!impl_->http.bind_to_port(o.host.c_str(), port)) {
    port = -1;
  }
  if (port < 0)
    throw Error(fmt::format("cannot listen on {}:{} (in use, or not an address of this machine)",
                            o.host, o.port));
  return port;
}

void Server::run() { impl_->http.listen_after_bind(); }

void Server::stop() {
  if (impl_) impl_->http.stop();
}

std::string Server::reload() { return impl_->reload(); }

std::string Server::summary() const {
  auto s = impl_->current();
  const auto& info = s->session->info();
  std::string out =
      fmt::format("{} + {}, {} classes, {} px, {}, sha256 {}...", info.arch.value("backbone", "?"),
                  info.arch.value("head", "?"), info.classes.size(), info.preprocess.input_size,
                  s->session->dtype_decision(), s->session->content_hash().substr(0, 12));
  if (s->gallery)
    out += fmt::format("; gallery {} items of {} classes", s->gallery->size(),
                       s->gallery->classes().size());
  return out;
}

}  // namespace finch::serve
