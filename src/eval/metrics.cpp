#include "finch/eval/metrics.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>

namespace finch::eval {

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
  auto top = topk.accessor<int64_t, 2>();
  auto truth = y.accessor<int64_t, 1>();
  for (int64_t i = 0; i < x.size(0); ++i) {
    const int64_t t = truth[i];
    TORCH_CHECK(t >= 0 && t < num_classes, "label ", t, " outside [0, ", num_classes, ")");
    ++confusion_[t][top[i][0]];
    for (int64_t j = 0; j < k; ++j) top5_correct_ += top[i][j] == t ? 1 : 0;
  }
  samples_ += x.size(0);
}

Metrics MetricsAccumulator::finish(size_t max_confused_pairs) const {
  Metrics m;
  const size_t n = class_names_.size();
  m.num_samples = samples_;
  m.confusion = confusion_;
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
      {"most_confused", confused}};
}

std::string format_report(const Metrics& m) {
  std::string out;
  out += fmt::format(
      "samples {}  top-1 {:.2f}%  top-5 {:.2f}%  mean per-class acc {:.2f}%  loss {:.4f}\n",
      m.num_samples, 100 * m.top1, 100 * m.top5, 100 * m.mean_class_accuracy, m.loss);
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
