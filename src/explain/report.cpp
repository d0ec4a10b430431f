#include "finch/explain/report.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <map>
#include <numeric>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <sstream>
#include <tuple>

#include "finch/core/atomic_file.h"
#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/version.h"
#include "finch/data/from_config.h"
#include "finch/data/hierarchy.h"
#include "finch/eval/evaluate.h"
#include "finch/eval/hierarchy.h"
#include "finch/eval/session.h"
#include "finch/explain/charts.h"
#include "finch/explain/explainer.h"
#include "finch/explain/tsne.h"
#include "finch/models/model_file.h"

namespace finch::explain {

namespace fs = std::filesystem;

std::string line_chart_svg(const std::string& title, const std::vector<double>& x,
                           const std::vector<Series>& series, int width, int height) {
  const int left = 64, right = 12, top = 40, bottom = 34;
  double xmin = x.empty() ? 0 : *std::min_element(x.begin(), x.end());
  double xmax = x.empty() ? 1 : *std::max_element(x.begin(), x.end());
  double ymin = INFINITY, ymax = -INFINITY;
  for (const auto& s : series)
    for (double v : s.y)
      if (std::isfinite(v)) ymin = std::min(ymin, v), ymax = std::max(ymax, v);
  if (!std::isfinite(ymin)) ymin = 0, ymax = 1;
  if (ymax - ymin < 1e-12) ymin -= 0.5, ymax += 0.5;
  if (xmax - xmin < 1e-12) xmin -= 0.5, xmax += 0.5;
  auto px = [&](double v) { return left + (v - xmin) / (xmax - xmin) * (width - left - right); };
  auto py = [&](double v) {
    return top + (1 - (v - ymin) / (ymax - ymin)) * (height - top - bottom);
  };
  std::string svg = fmt::format(
      "<svg class=\"chart\" viewBox=\"0 0 {0} {1}\" width=\"{0}\" height=\"{1}\" "
      "font-family=\"sans-serif\" font-size=\"11\" role=\"img\"><title>{2}</title>"
      "<rect width=\"{0}\" height=\"{1}\" fill=\"white\"/>"
      "<text x=\"{3}\" y=\"14\" font-size=\"13\" font-weight=\"bold\">{2}</text>",
      width, height, html_escape(title), left);
  for (int t = 0; t <= 4; ++t) {
    const double v = ymin + (ymax - ymin) * t / 4;
    svg += fmt::format(
        "<line x1=\"{0}\" x2=\"{1}\" y1=\"{2:.1f}\" y2=\"{2:.1f}\" stroke=\"#ddd\"/>"
        "<text x=\"{3}\" y=\"{4:.1f}\" text-anchor=\"end\">{5:.3g}</text>",
        left, width - right, py(v), left - 4, py(v) + 4, v);
  }
  svg += fmt::format(
      "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">epoch</text>"
      "<text x=\"{}\" y=\"{}\">{:g}</text><text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:g}</text>",
      (left + width - right) / 2, height - 4, left, height - bottom + 14, xmin, width - right,
      height - bottom + 14, xmax);
  int legend_x = left + 8;
  for (const auto& s : series) {
    std::string points;
    for (size_t i = 0; i < std::min(x.size(), s.y.size()); ++i)
      if (std::isfinite(s.y[i])) points += fmt::format("{:.1f},{:.1f} ", px(x[i]), py(s.y[i]));
    svg += fmt::format(
        "<polyline fill=\"none\" stroke=\"{0}\" stroke-width=\"2\" points=\"{1}\"/>"
        "<rect x=\"{2}\" y=\"{3}\" width=\"10\" height=\"3\" fill=\"{0}\"/>"
        "<text x=\"{4}\" y=\"{5}\">{6}</text>",
        s.colour, points, legend_x, 24, legend_x + 14, 29, html_escape(s.name));
    legend_x += 20 + 7 * static_cast<int>(s.name.size());
  }
  return svg + "</svg>";
}

namespace {

std::string img_tag(const cv::Mat& rgb, const std::string& alt, int display_width = 0) {
  std::string style = display_width > 0 ? fmt::format(" width=\"{}\"", display_width) : "";
  return fmt::format("<img src=\"data:image/png;base64,{}\" alt=\"{}\"{}>", base64(png_bytes(rgb)),
                     html_escape(alt), style);
}

cv::Mat thumbnail(const cv::Mat& rgb, int side) {
  const double s = static_cast<double>(side) / std::max(rgb.cols, rgb.rows);
  cv::Mat out;
  cv::resize(rgb, out,
             cv::Size(std::max(1, static_cast<int>(rgb.cols * s)),
                      std::max(1, static_cast<int>(rgb.rows * s))),
             0, 0, s < 1 ? cv::INTER_AREA : cv::INTER_NEAREST);
  return out;
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown";
}

// Row-normalised confusion heatmap in the order `order`, one cell per class pair; the SVG
// scales with its container (viewBox) and the page's zoom toggle widens it. `group_starts`
// (positions in `order`) draws a dark line before each group, e.g. the classes of one parent.
std::string confusion_svg(const std::vector<std::vector<int64_t>>& confusion,
                          const std::vector<std::string>& names, const std::vector<size_t>& order,
                          const std::vector<size_t>& group_starts = {}) {
  const int n = static_cast<int>(order.size());
  const int cell = std::max(2, 600 / std::max(1, n));
  const int label = n <= 40 ? 110 : 0;  // names only where they fit
  const int size = n * cell;
  std::string svg = fmt::format(
      "<svg class=\"cm\" viewBox=\"0 0 {0} {0}\" font-family=\"sans-serif\" font-size=\"{1}\" "
      "role=\"img\"><title>confusion matrix (rows: true class, columns: predicted; colour: "
      "share of the row)</title><rect width=\"{0}\" height=\"{0}\" fill=\"white\"/>",
      size + label, std::max(6, std::min(11, cell - 2)));
  for (int r = 0; r < n; ++r) {
    const auto& row = confusion[order[r]];
    int64_t total = 0;
    for (int64_t v : row) total += v;
    if (label)
      svg +=
          fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>", label - 4,
                      label + r * cell + cell * 0.75, html_escape(names[order[r]].substr(0, 18)));
    for (int c = 0; c < n; ++c) {
      const int64_t v = row[order[c]];
      if (v == 0 || total == 0) continue;
      const double share = static_cast<double>(v) / total;
      // White -> dark blue on the diagonal, white -> red off it.
      const int fade = static_cast<int>(255 * (1 - std::sqrt(share)));
      const std::string colour = r == c ? fmt::format("rgb({},{},{})", fade, fade, 255)
                                        : fmt::format("rgb(255,{},{})", fade, fade);
      svg += fmt::format(
          "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"{}\"><title>{} -> {}: {} "
          "({:.1f}%)</title></rect>",
          label + c * cell, label + r * cell, cell, cell, colour, html_escape(names[order[r]]),
          html_escape(names[order[c]]), v, 100 * share);
    }
  }
  if (label) {
    for (int c = 0; c < n; ++c)
      svg += fmt::format("<text transform=\"translate({},{}) rotate(-90)\">{}</text>",
                         label + c * cell + cell * 0.75, label - 4,
                         html_escape(names[order[c]].substr(0, 18)));
  }
  for (size_t start : group_starts) {
    if (start == 0) continue;
    const int at = label + static_cast<int>(start) * cell;
    svg += fmt::format(
        "<line class=\"group\" x1=\"{0}\" x2=\"{1}\" y1=\"{2}\" y2=\"{2}\" stroke=\"#333\"/>"
        "<line x1=\"{2}\" x2=\"{2}\" y1=\"{0}\" y2=\"{1}\" stroke=\"#333\"/>",
        label, label + size, at);
  }
  svg += fmt::format(
      "<rect x=\"{0}\" y=\"{0}\" width=\"{1}\" height=\"{1}\" fill=\"none\" "
      "stroke=\"#888\"/>",
      label, size);
  return svg + "</svg>";
}

// The taxonomy section: accuracy at every level, the mistakes of each parent inside and
// outside it, and the confusion between parents. Returns the class order grouped by parent
// (parents worst first, classes inside a parent in `order`) and where each group starts.
std::pair<std::vector<size_t>, std::vector<size_t>> taxonomy_section(
    const eval::Metrics& m, const data::Hierarchy& hierarchy, const std::vector<size_t>& order,
    std::string& body) {
  const eval::HierarchicalMetrics h = eval::hierarchical_metrics(m.confusion, hierarchy);
  const std::string level = h.levels.size() > 1 ? h.levels[1] : "parent";
  body += fmt::format(
      "<h2 id=\"taxonomy\">Mistakes by {0}</h2><p>Hierarchy from {1}. A prediction is right "
      "at a level when the predicted class's ancestor there is the true class's; a mistake's "
      "height is the level of the lowest common ancestor (1: a sibling inside the same {0}).</p>"
      "<table><tr><th>level</th><th>top-1</th></tr>",
      html_escape(level), html_escape(h.source));
  for (size_t l = 0; l < h.levels.size(); ++l)
    body += fmt::format("<tr><td>{}</td><td>{:.2f}%</td></tr>", html_escape(h.levels[l]),
                        100 * h.accuracy[l]);
  body += fmt::format("</table><p>{} mistakes, mean lowest-common-ancestor height {:.3f}.</p>",
                      h.mistakes, h.mean_mistake_height);

  // Parents worst first (accuracy of their classes' images), ties by name.
  std::vector<size_t> parents(h.by_parent.size());
  std::iota(parents.begin(), parents.end(), 0);
  const auto accuracy = [&](size_t p) {
    const auto& g = h.by_parent[p];
    return g.support ? double(g.correct) / g.support : 1.0;
  };
  std::stable_sort(parents.begin(), parents.end(), [&](size_t a, size_t b) {
    if (accuracy(a) != accuracy(b)) return accuracy(a) < accuracy(b);
    return h.by_parent[a].parent < h.by_parent[b].parent;
  });
  body += fmt::format(
      "<div class=\"scroll\"><table class=\"parents\"><tr><th>{}</th><th>classes</th>"
      "<th>images</th><th>top-1</th><th>wrong, same {}</th><th>wrong, other {}</th></tr>",
      html_escape(level), html_escape(level), html_escape(level));
  std::map<std::string, std::vector<size_t>> members;  // parent -> classes, in `order`
  for (size_t c : order) members[hierarchy.ancestors[c][0]].push_back(c);
  for (size_t p : parents) {
    const auto& g = h.by_parent[p];
    body += fmt::format(
        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.2f}%</td><td>{}</td><td>{}</td></tr>",
        html_escape(g.parent), members[g.parent].size(), g.support, 100 * accuracy(p),
        g.wrong_within, g.wrong_outside);
  }
  body += "</table></div>";

  // Confusion between parents: the class matrix summed over each parent's classes.
  std::vector<std::string> parent_names;
  std::map<std::string, size_t> parent_index;
  for (size_t p : parents) {
    parent_index[h.by_parent[p].parent] = parent_names.size();
    parent_names.push_back(h.by_parent[p].parent);
  }
  std::vector<std::vector<int64_t>> parent_confusion(parent_names.size(),
                                                     std::vector<int64_t>(parent_names.size(), 0));
  for (size_t t = 0; t < m.confusion.size(); ++t)
    for (size_t p = 0; p < m.confusion[t].size(); ++p)
      parent_confusion[parent_index.at(hierarchy.ancestors[t][0])]
                      [parent_index.at(hierarchy.ancestors[p][0])] += m.confusion[t][p];
  std::vector<size_t> parent_order(parent_names.size());
  std::iota(parent_order.begin(), parent_order.end(), 0);
  body += fmt::format("<h3>Confusion between each {}</h3><div class=\"cmbox small\">",
                      html_escape(level));
  body += confusion_svg(parent_confusion, parent_names, parent_order);
  body += "</div>";

  std::vector<size_t> grouped, starts;
  for (size_t p : parents) {
    starts.push_back(grouped.size());
    for (size_t c : members[h.by_parent[p].parent]) grouped.push_back(c);
  }
  return {grouped, starts};
}

constexpr const char* kStyle = R"(
body{font-family:sans-serif;max-width:1200px;margin:1em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:2px 8px;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.scroll{max-height:420px;overflow:auto;display:inline-block}
.charts svg{margin:4px;border:1px solid #eee}
.cmbox{width:640px;max-width:100%;overflow:auto;border:1px solid #eee}
.cmbox svg{width:100%;height:auto}
.cmbox.small{width:420px}
#zoom:checked~.cmbox svg{width:400%}
.gallery figure{display:inline-block;margin:6px;text-align:center;font-size:.8em;vertical-align:top}
.gallery img{image-rendering:pixelated;width:128px;height:auto}
.pairs img{image-rendering:pixelated;width:72px;margin:2px}
pre{background:#f7f7f7;padding:.6em;overflow:auto;max-height:400px;font-size:.85em}
.ok{color:#176}.bad{color:#a11}
)";

}  // namespace

std::string build_report(const ReportOptions& options) {
  const fs::path run = options.run_dir;
  const fs::path model_path = options.model.empty() ? run / "best.safetensors" : options.model;
  if (!fs::exists(model_path))
    throw Error(fmt::format("no model file {} (give --model)", model_path.string()));
  const auto started = std::chrono::steady_clock::now();
  std::string body;

  // --- training curves ------------------------------------------------------------------
  std::vector<double> epochs, train_loss, val_loss, train_acc, val_acc, lr;
  if (fs::exists(run / "metrics.jsonl")) {
    std::istringstream lines(read_file(run / "metrics.jsonl"));
    std::string line;
    auto num = [](const nlohmann::json& j, const char* key) {
      return j.contains(key) && j[key].is_number() ? j[key].get<double>() : NAN;
    };
    while (std::getline(lines, line)) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      auto j = nlohmann::json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.contains("epoch")) continue;
      epochs.push_back(num(j, "epoch"));
      train_loss.push_back(num(j, "train_loss"));
      val_loss.push_back(num(j, "val_loss"));
      train_acc.push_back(num(j, "train_acc"));
      val_acc.push_back(num(j, "val_acc"));
      lr.push_back(num(j, "lr"));
    }
  }
  body += "<h2 id=\"training\">Training</h2>";
  if (epochs.empty()) {
    body += "<p>No <code>metrics.jsonl</code> records in the run folder.</p>";
  } else {
    body += "<div class=\"charts\">";
    body += line_chart_svg("loss", epochs,
                           {{"train", train_loss, "#1f77b4"}, {"validation", val_loss, "#d62728"}});
    body += line_chart_svg("accuracy", epochs,
                           {{"train", train_acc, "#1f77b4"}, {"validation", val_acc, "#d62728"}});
    body += line_chart_svg("learning rate", epochs, {{"lr", lr, "#2ca02c"}});
    body += "</div>";
    body +=
        fmt::format("<p>{} epochs; best validation accuracy {:.2f}%.</p>", epochs.size(),
                    100 * *std::max_element(val_acc.begin(), val_acc.end(), [](double a, double b) {
                      return (std::isnan(a) ? -1 : a) < (std::isnan(b) ? -1 : b);
                    }));
  }

  // --- evaluation -------------------------------------------------------------------------
  Config config =
      fs::exists(run / "config.yaml") ? Config::load(run / "config.yaml", {}) : Config::defaults();
  if (!options.format.empty()) config.set("data.format", options.format);
  if (!options.root.empty()) config.set("data.root", options.root);
  for (const auto& o : options.data_options) config.apply_override("data." + o);
  eval::SessionOptions session_options;
  session_options.keep_source_model = true;  // the Grad-CAM gallery needs gradients
  eval::InferenceSession session(model_path, session_options);
  eval::SplitEvalOptions eval_options;
  eval_options.split = options.split;
  eval_options.batch_size = options.batch_size;
  eval_options.workers = options.workers;
  eval_options.records = true;
  eval_options.progress = options.progress;
  const eval::SplitEvaluation evaluation = eval::evaluate_split(session, config, eval_options);
  const eval::Metrics& m = evaluation.metrics;
  const eval::EvalRecords& records = evaluation.records;
  const data::DatasetPtr& dataset = evaluation.dataset;
  const auto& classes = dataset->class_names();
  const std::string data_desc =
      fmt::format("{} split '{}' of {} ({})", config.get<std::string>("data.format"), options.split,
                  config.get<std::string>("data.root"), model_path.string());
  body += "<h2 id=\"eval\">Evaluation</h2>";
  body +=
      fmt::format("<p>{}</p><table><tr><th>metric</th><th>value</th></tr>", html_escape(data_desc));
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"images", std::to_string(m.num_samples)},
           {"top-1 accuracy", fmt::format("{:.2f}%", 100 * m.top1)},
           {"top-5 accuracy", fmt::format("{:.2f}%", 100 * m.top5)},
           {"mean per-class accuracy", fmt::format("{:.2f}%", 100 * m.mean_class_accuracy)},
           {"macro F1", fmt::format("{:.4f}", m.macro_f1)},
           {"cross-entropy", fmt::format("{:.4f}", m.loss)},
           {"expected calibration error (15 bins)", fmt::format("{:.4f}", m.calibration.ece)},
           {"skipped images", std::to_string(evaluation.skipped.size())}})
    body += fmt::format("<tr><td>{}</td><td>{}</td></tr>", name, value);
  body += "</table>";

  // Classes ordered worst first (by accuracy = recall), ties by name.
  std::vector<size_t> order(m.per_class.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (m.per_class[a].recall != m.per_class[b].recall)
      return m.per_class[a].recall < m.per_class[b].recall;
    return m.per_class[a].name < m.per_class[b].name;
  });
  body +=
      "<h2 id=\"classes\">Per-class accuracy (worst first)</h2><div class=\"scroll\"><table>"
      "<tr><th>class</th><th>accuracy</th><th>precision</th><th>F1</th><th>support</th></tr>";
  for (size_t c : order) {
    const auto& cm = m.per_class[c];
    body +=
        fmt::format("<tr><td>{}</td><td>{:.2f}%</td><td>{:.4f}</td><td>{:.4f}</td><td>{}</td></tr>",
                    html_escape(cm.name), 100 * cm.recall, cm.precision, cm.f1, cm.support);
  }
  body += "</table></div>";

  // With a taxonomy the matrix groups classes by parent (parents worst first).
  const std::optional<data::Hierarchy> hierarchy =
      !options.hierarchy.empty()
          ? std::optional(data::read_hierarchy_csv(options.hierarchy, classes))
          : data::dataset_hierarchy(config, classes);
  std::vector<size_t> matrix_order = order, group_starts;
  if (hierarchy)
    std::tie(matrix_order, group_starts) = taxonomy_section(m, *hierarchy, order, body);
  std::vector<std::string> names;
  for (const auto& c : m.per_class) names.push_back(c.name);
  body += fmt::format(
      "<h2 id=\"confusion\">Confusion matrix</h2><p>Rows: true class, columns: predicted, "
      "both ordered {}; colour: share of the row (blue: correct, red: errors). Hover a cell "
      "for its counts.</p><input type=\"checkbox\" id=\"zoom\"> <label for=\"zoom\">zoom 4x "
      "(scroll inside the box)</label><div class=\"cmbox\">",
      hierarchy ? "grouped by " +
                      html_escape(hierarchy->levels.empty() ? std::string("parent")
                                                            : hierarchy->levels[0]) +
                      " (lines between groups; worst group first, worst class first inside it)"
                : std::string("worst class first"));
  body += confusion_svg(m.confusion, names, matrix_order, group_starts);
  body += "</div>";

  // --- most-confused pairs with thumbnails --------------------------------------------------
  body += "<h2 id=\"pairs\">Most-confused pairs</h2>";
  const auto examples = eval::confused_examples(m, records, *dataset, options.thumbnails);
  if (m.most_confused.empty()) body += "<p>No errors.</p>";
  body +=
      "<table class=\"pairs\"><tr><th>true &rarr; predicted</th><th>count</th>"
      "<th>examples</th></tr>";
  int shown = 0;
  for (size_t p = 0; p < m.most_confused.size() && shown < options.confused_pairs; ++p, ++shown) {
    const auto& pair = m.most_confused[p];
    std::string thumbs;
    int taken = 0;
    auto labels = records.labels.accessor<int64_t, 1>();
    auto preds = records.predictions.accessor<int64_t, 1>();
    for (size_t r = 0; r < records.indices.size() && taken < options.thumbnails; ++r) {
      if (labels[r] != pair.true_class || preds[r] != pair.predicted_class) continue;
      try {
        thumbs += img_tag(thumbnail(dataset->load_rgb(records.indices[r]), 96),
                          dataset->describe(records.indices[r]));
        ++taken;
      } catch (const Error&) {
      }
    }
    body += fmt::format("<tr><td>{} &rarr; {}</td><td>{}</td><td>{}</td></tr>",
                        html_escape(classes[pair.true_class]),
                        html_escape(classes[pair.predicted_class]), pair.count, thumbs);
  }
  body += "</table>";
  (void)examples;

  body +=
      "<h2 id=\"calibration\">Reliability</h2><p>Bars: accuracy of the predictions in each "
      "of 15 equal-width confidence bins; red: the bins' mean confidence; a calibrated "
      "model has bars on the diagonal. ECE = &sum;<sub>b</sub> (n<sub>b</sub>/N) "
      "|acc<sub>b</sub> &minus; conf<sub>b</sub>|.</p>";
  body += img_tag(reliability_image(m.calibration), "reliability diagram");

  // --- Grad-CAM gallery ---------------------------------------------------------------------
  body +=
      "<h2 id=\"gradcam\">Grad-CAM gallery</h2><p>Grad-CAM of the predicted class on the "
      "last backbone stage, over the image as the model sees it.</p>";
  Explainer explainer(session);
  CamOptions cam_options;
  auto predictions = records.predictions.accessor<int64_t, 1>();
  auto truths = records.labels.accessor<int64_t, 1>();
  for (bool correct : {true, false}) {
    body += fmt::format("<h3 class=\"{}\">{} predictions</h3><div class=\"gallery\">",
                        correct ? "ok" : "bad", correct ? "Correct" : "Wrong");
    int taken = 0;
    for (size_t r = 0; r < records.indices.size() && taken < options.gallery; ++r) {
      if ((predictions[r] == truths[r]) != correct) continue;
      const size_t i = records.indices[r];
      try {
        auto e = explainer.explain({dataset->load_rgb(i)}, cam_options).front();
        body += fmt::format(
            "<figure>{}<figcaption>true: {}<br>predicted: {} ({:.0f}%)</figcaption></figure>",
            img_tag(overlay_heatmap(e.input_rgb, e.cam), dataset->describe(i)),
            html_escape(classes[truths[r]]), html_escape(classes[e.predicted]),
            100 * e.predicted_prob);
        ++taken;
      } catch (const Error&) {
      }
    }
    if (taken == 0) body += "<p>none</p>";
    body += "</div>";
  }

  // --- embedding map ------------------------------------------------------------------------
  body += "<h2 id=\"embedding\">Embedding map</h2>";
  if (records.embeddings.defined() && records.embeddings.size(0) >= 3) {
    TsneOptions tsne_options;
    tsne_options.max_points = options.tsne_points;
    auto map = tsne(records.embeddings, tsne_options);
    std::vector<int64_t> labels;
    for (int64_t row : map.chosen) labels.push_back(truths[row]);
    body += fmt::format(
        "<p>t-SNE (perplexity 30, exact) of the embeddings of {} of {} images, coloured by true "
        "class; KL divergence {:.3f}. Hover a point for its class.</p>",
        map.chosen.size(), records.embeddings.size(0), map.kl);
    std::string svg = embedding_svg(map.points, labels, classes);
    body += svg.substr(svg.find("<svg"));
  } else {
    body += "<p>No embeddings.</p>";
  }

  // --- config and environment ---------------------------------------------------------------
  body += "<h2 id=\"config\">Configuration</h2><pre>" +
          html_escape(fs::exists(run / "config.yaml") ? read_file(run / "config.yaml")
                                                      : std::string("(no config.yaml)")) +
          "</pre>";
  const auto seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started);
  const std::time_t now = std::time(nullptr);
  char when[64];
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", std::gmtime(&now));
  body += fmt::format(
      "<h2 id=\"environment\">Environment</h2><table><tr><td>finch</td><td>{}</td></tr>"
      "<tr><td>written</td><td>{}</td></tr><tr><td>compute threads</td><td>{}</td></tr>"
      "<tr><td>CPU</td><td>{}</td></tr><tr><td>report time</td><td>{:.1f} s</td></tr></table>",
      kVersion, when, torch::get_num_threads(), html_escape(cpu_model()), seconds.count());

  std::string title = "finch report: " + run.filename().string();
  if (run.filename().empty()) title = "finch report: " + run.parent_path().filename().string();
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" +
         html_escape(title) + "</title><style>" + kStyle + "</style></head><body><h1>" +
         html_escape(title) +
         "</h1><p><a href=\"#training\">training</a> &middot; <a href=\"#eval\">evaluation</a> "
         "&middot; <a href=\"#classes\">classes</a> &middot; <a href=\"#confusion\">confusion</a> "
         "&middot; <a href=\"#pairs\">confused pairs</a> &middot; <a "
         "href=\"#calibration\">reliability</a> &middot; <a href=\"#gradcam\">Grad-CAM</a> "
         "&middot; <a href=\"#embedding\">embedding map</a> &middot; <a "
         "href=\"#config\">config</a></p>" +
         body + "</body></html>\n";
}

}  // namespace finch::explain
