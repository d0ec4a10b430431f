#include "finch/eval/metrics.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>

namespace finch::eval {

Calibration calibration(const std::vector<double>& confidences, const std::vector<bool>& correct,
                        int num_bins) {
  TORCH_CHECK(confidences.size() == correct.size() && num_bins > 0, "calibration: bad input");
  Calibration c;
  c.bins.resize(num_bins);
  std::vector<double> conf_sum(num_bins, 0), correct_sum(num_bins, 0);
  for (int b = 0; b < num_bins; ++b) {
    c.bins[b].lower = static_cast<double>(b) / num_bins;
    c.bins[b].upper = static_cast<double>(b + 1) / num_bins;
  }
  for (size_t i = 0; i < confidences.size(); ++i) {
    // Bin b holds (b/M, (b+1)/M]: ceil(conf * M) - 1, with 0 in the first bin.
    int b = static_cast<int>(std::ceil(confidences[i] * num_bins)) - 1;
    b = std::clamp(b, 0, num_bins - 1);
    ++c.bins[b].count;
    conf_sum[b] += confidences[i];
    correct_sum[b] += correct[i] ? 1 : 0;
  }
  const double n = static_cast<double>(confidences.size());
  for (int b = 0; b < num_bins; ++b) {
    auto& bin = c.bins[b];
    if (bin.count == 0) continue;
    bin.confidence = conf_sum[b] / bin.count;
    bin.accuracy = correct_sum[b] / bin.count;
    c.ece += bin.count / n * std::abs(bin.accuracy - bin.confidence);
  }
  return c;
}

MetricsAccumulator::MetricsAccumulator(std::vector<std::string> class_names)
    : class_names_(std::move(class_names)),
      confusion_(class_names_.size(), std::vector<int64_t>(class_names_.size(), 0)) {}

void MetricsAccumulator::add(const torch::Tensor& logits, const torch::Tensor& labels) {
  const int64_t num_classes = static_cast<int64_t>(class_names_.size());
  TORCH_CHECK(logits.dim() == 2 && logits.size(1) == num_classes, "expected logits [B, ",
              num_classes, "], got ", logits.sizes());
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == logits.size(0), "labels/logits size mismatch");
  torch::NoGradGuard no_grad;
  torch::Tensor x = logits.detach().to(torch::kCPU, torch::kFloat64);
  torch::Tensor y = labels.to(torch::kCPU, torch::kInt64);
  loss_sum_ += torch::nn::functional::cross_entropy(
                   x, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum))
                   .item<double>();
  const int64_t k = std::min<int64_t>(5, num_classes);
  torch::Tensor topk = std::get<1>(x.topk(k, 1));
  torch::Tensor confidence = std::get<0>(torch::softmax(x, 1).max(1));
  auto conf = confidence.accessor<double, 1>();
  auto top = topk.accessor<int64_t, 2>();
  auto truth = y.accessor<int64_t, 1>();
  for (int64_t i = 0; i < x.size(0); ++i) {
    const int64_t t = truth[i];
    TORCH_CHECK(t >= 0 && t < num_classes, "label ", t, " outside [0, ", num_classes, ")");
    ++confusion_[t][top[i][0]];
    confidences_.push_back(conf[i]);
    correct_.push_back(top[i][0] == t);
    for (int64_t j = 0; j < k; ++j) top5_correct_ += top[i][j] == t ? 1 : 0;
  }
  samples_ += x.size(0);
}

// Layout: [samples, top5_correct, loss_sum, confusion (C x C), then per sample: confidence,
// correct].
torch::Tensor MetricsAccumulator::pack() const {
  const size_t n = class_names_.size();
  std::vector<double> v;
  v.reserve(3 + n * n + 2 * confidences_.size());
  v.push_back(static_cast<double>(samples_));
  v.push_back(static_cast<double>(top5_correct_));
  v.push_back(loss_sum_);
  for (const auto& row : confusion_)
    for (int64_t c : row) v.push_back(static_cast<double>(c));
  for (size_t i = 0; i < confidences_.size(); ++i) {
    v.push_back(confidences_[i]);
    v.push_back(correct_[i] ? 1.0 : 0.0);
  }
  return torch::tensor(v, torch::kFloat64);
}

void MetricsAccumulator::merge_packed(const torch::Tensor& packed) {
  const size_t n = class_names_.size();
  torch::Tensor t = packed.to(torch::kCPU, torch::kFloat64).contiguous();
  const int64_t header = 3 + static_cast<int64_t>(n * n);
  TORCH_CHECK(t.dim() == 1 && t.size(0) >= header && (t.size(0) - header) % 2 == 0,
              "packed metrics of ", n, " classes expected, got ", t.sizes());
  const double* v = t.data_ptr<double>();
  const auto samples = static_cast<int64_t>(v[0]);
  TORCH_CHECK(t.size(0) == header + 2 * samples, "packed metrics: ", samples, " samples but ",
              (t.size(0) - header) / 2, " per-sample records");
  samples_ += samples;
  top5_correct_ += static_cast<int64_t>(v[1]);
  loss_sum_ += v[2];
  for (size_t r = 0; r < n; ++r)
    for (size_t c = 0; c < n; ++c) confusion_[r][c] += static_cast<int64_t>(v[3 + r * n + c]);
  for (int64_t i = 0; i < samples; ++i) {
    confidences_.push_back(v[header + 2 * i]);
    correct_.push_back(v[header + 2 * i + 1] != 0.0);
  }
}

Metrics MetricsAccumulator::finish(size_t max_confused_pairs) const {
  Metrics m;
  const size_t n = class_names_.size();
  m.num_samples = samples_;
  m.confusion = confusion_;
  m.calibration = calibration(confidences_, correct_, 15);
  if (samples_ == 0) return m;
  m.loss = loss_sum_ / samples_;
  m.top5 = static_cast<double>(top5_correct_) / samples_;
  int64_t correct = 0;
  double recall_sum = 0;
  size_t classes_present = 0;
  for (size_t c = 0; c < n; ++c) {
    int64_t tp = confusion_[c][c], support = 0, predicted = 0;
    for (size_t j = 0; j < n; ++j) {
      support += confusion_[c][j];
      predicted += confusion_[j][c];
    }
    correct += tp;
    ClassMetrics cm;
    cm.name = class_names_[c];
    cm.support = support;
    cm.precision = predicted ? static_cast<double>(tp) / predicted : 0.0;
    cm.recall = support ? static_cast<double>(tp) / support : 0.0;
    cm.f1 = cm.precision + cm.recall > 0 ? 2 * cm.precision * cm.recall / (cm.precision + cm.recall)
                                         : 0.0;
    // Mean per-class accuracy averages over classes that occur in the evaluated split.
    if (support > 0) {
      recall_sum += cm.recall;
      ++classes_present;
      m.macro_precision += cm.precision;
      m.macro_recall += cm.recall;
      m.macro_f1 += cm.f1;
    }
    m.weighted_precision += cm.precision * support;
    m.weighted_recall += cm.recall * support;
    m.weighted_f1 += cm.f1 * support;
    m.per_class.push_back(cm);
    for (size_t j = 0; j < n; ++j) {
      if (j != c && confusion_[c][j] > 0) {
        m.most_confused.push_back(
            {static_cast<int64_t>(c), static_cast<int64_t>(j), confusion_[c][j]});
      }
    }
  }
  m.top1 = static_cast<double>(correct) / samples_;
  if (classes_present > 0) {
    m.mean_class_accuracy = recall_sum / classes_present;
    m.macro_precision /= classes_present;
    m.macro_recall /= classes_present;
    m.macro_f1 /= classes_present;
  }
  m.weighted_precision /= samples_;
  m.weighted_recall /= samples_;
  m.weighted_f1 /= samples_;
  std::stable_sort(m.most_confused.begin(), m.most_confused.end(),
                   [](const ConfusedPair& a, const ConfusedPair& b) { return a.count > b.count; });
  if (m.most_confused.size() > max_confused_pairs) m.most_confused.resize(max_confused_pairs);
  return m;
}

namespace {

nlohmann::json calibration_json(const Calibration& c) {
  nlohmann::json bins = nlohmann::json::array();
  for (const auto& b : c.bins) {
    bins.push_back({{"lower", b.lower},
                    {"upper", b.upper},
                    {"count", b.count},
                    {"confidence", b.confidence},
                    {"accuracy", b.accuracy}});
  }
  return bins;
}

}  // namespace

nlohmann::json to_json(const Metrics& m) {
  nlohmann::json per_class = nlohmann::json::array();
  for (size_t c = 0; c < m.per_class.size(); ++c) {
    const auto& cm = m.per_class[c];
    per_class.push_back({{"index", c},
                         {"class", cm.name},
                         {"precision", cm.precision},
                         {"recall", cm.recall},
                         {"f1", cm.f1},
                         {"support", cm.support}});
  }
  nlohmann::json confused = nlohmann::json::array();
  for (const auto& p : m.most_confused) {
    confused.push_back({{"true", m.per_class[p.true_class].name},
                        {"predicted", m.per_class[p.predicted_class].name},
                        {"true_index", p.true_class},
                        {"predicted_index", p.predicted_class},
                        {"count", p.count}});
  }
  return {
      {"num_samples", m.num_samples},
      {"loss", m.loss},
      {"top1", m.top1},
      {"top5", m.top5},
      {"mean_class_accuracy", m.mean_class_accuracy},
      {"macro", {{"precision", m.macro_precision}, {"recall", m.macro_recall}, {"f1", m.macro_f1}}},
      {"weighted",
       {{"precision", m.weighted_precision}, {"recall", m.weighted_recall}, {"f1", m.weighted_f1}}},
      {"per_class", per_class},
      {"confusion_matrix", m.confusion},
      {"most_confused", confused},
      {"ece", m.calibration.ece},
      {"calibration", calibration_json(m.calibration)}};
}

std::string format_report(const Metrics& m) {
  std::string out;
  out += fmt::format(
      "samples {}  top-1 {:.2f}%  top-5 {:.2f}%  mean per-class acc {:.2f}%  loss {:.4f}\n",
      m.num_samples, 100 * m.top1, 100 * m.top5, 100 * m.mean_class_accuracy, m.loss);
  out += fmt::format("expected calibration error (15 bins) {:.4f}\n", m.calibration.ece);
  size_t width = 5;
  for (const auto& cm : m.per_class) width = std::max(width, cm.name.size());
  out += fmt::format("\n{:<{}}  precision  recall     f1  support\n", "class", width);
  for (const auto& cm : m.per_class) {
    out += fmt::format("{:<{}}  {:9.4f}  {:6.4f}  {:5.4f}  {:7}\n", cm.name, width, cm.precision,
                       cm.recall, cm.f1, cm.support);
  }
  out += fmt::format("{:<{}}  {:9.4f}  {:6.4f}  {:5.4f}  {:7}\n", "macro avg", width,
                     m.macro_precision, m.macro_recall, m.macro_f1, m.num_samples);
  out += fmt::format("{:<{}}  {:9.4f}  {:6.4f}  {:5.4f}  {:7}\n", "weighted avg", width,
                     m.weighted_precision, m.weighted_recall, m.weighted_f1, m.num_samples);
  if (!m.most_confused.empty()) {
    out += "\nmost confused (true -> predicted: count)\n";
    for (const auto& p : m.most_confused) {
      out += fmt::format("  {} -> {}: {}\n", m.per_class[p.true_class].name,
                         m.per_class[p.predicted_class].name, p.count);
    }
  }
  return out;
}

std::string format_per_class_worst_first(const Metrics& m) {
  std::vector<size_t> order;
  for (size_t c = 0; c < m.per_class.size(); ++c)
    if (m.per_class[c].support > 0) order.push_back(c);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (m.per_class[a].recall != m.per_class[b].recall)
      return m.per_class[a].recall < m.per_class[b].recall;
    return m.per_class[a].name < m.per_class[b].name;
  });
  size_t width = 5;
  for (const auto& cm : m.per_class) width = std::max(width, cm.name.size());
  std::string out = fmt::format(
      "per-class accuracy, worst first\n{:<{}}  accuracy  correct/support\n", "class", width);
  for (size_t c : order) {
    const auto& cm = m.per_class[c];
    out += fmt::format("{:<{}}  {:7.2f}%  {}/{}\n", cm.name, width, 100 * cm.recall,
                       m.confusion[c][c], cm.support);
  }
  return out;
}

std::string confusion_csv(const Metrics& m) {
  auto quote = [](const std::string& s) {
    std::string q = "\"";
    for (char ch : s) q += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    return q + "\"";
  };
  std::string out = "true\\predicted";
  for (const auto& cm : m.per_class) out += "," + quote(cm.name);
  out += "\n";
  for (size_t i = 0; i < m.confusion.size(); ++i) {
    out += quote(m.per_class[i].name);
    for (int64_t v : m.confusion[i]) out += "," + std::to_string(v);
    out += "\n";
  }
  return out;
}

}  // namespace finch::eval
