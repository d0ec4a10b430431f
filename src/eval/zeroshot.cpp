#include "finch/eval/zeroshot.h"

#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>

#include "../data/datasets/cub_style.h"
#include "finch/core/csv.h"
#include "finch/core/error.h"
#include "finch/core/rng.h"
#include "finch/io/mat.h"

namespace finch::eval {

namespace {

namespace fs = std::filesystem;

double parse_value(const std::string& text, const std::string& file, size_t line_number,
                   const std::string& line, const std::string& what) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size())
    throw line_error(file, line_number, what + " '" + text + "' is not a number", line);
  if (!std::isfinite(v))
    throw line_error(file, line_number, what + " is " + text + " (attributes must be finite)",
                     line);
  return v;
}

torch::Tensor to_tensor(const std::vector<std::vector<double>>& rows) {
  const int64_t n = static_cast<int64_t>(rows.size());
  const int64_t m = n ? static_cast<int64_t>(rows[0].size()) : 0;
  torch::Tensor t = torch::empty({n, m}, torch::kFloat);
  auto a = t.accessor<float, 2>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < m; ++j) a[i][j] = static_cast<float>(rows[i][j]);
  return t;
}

// Y of ESZSL: [N, C] with +1 at each image's class, -1 elsewhere.
torch::Tensor signed_one_hot(const torch::Tensor& labels, int64_t classes) {
  return torch::one_hot(labels, classes).to(torch::kDouble) * 2 - 1;
}

torch::Tensor fit_eszsl(const torch::Tensor& x, const torch::Tensor& labels, const torch::Tensor& s,
                        double gamma, double lambda) {
  // V = (X^T X + gamma I)^-1 X^T Y S (S^T S + lambda I)^-1 (Romera-Paredes & Torr, eq. 7,
  // with images and classes as rows).
  const int64_t d = x.size(1), m = s.size(1);
  const torch::Tensor y = signed_one_hot(labels, s.size(0));
  const torch::Tensor a = x.t().mm(x) + gamma * torch::eye(d, torch::kDouble);
  const torch::Tensor b = s.t().mm(s) + lambda * torch::eye(m, torch::kDouble);
  const torch::Tensor left = torch::linalg_solve(a, x.t().mm(y).mm(s), true);  // [D, M]
  return torch::linalg_solve(b, left.t(), true).t();                           // b is symmetric
}

torch::Tensor fit_softmax(const torch::Tensor& x, const torch::Tensor& labels,
                          const torch::Tensor& s, double weight_decay, int64_t epochs) {
  torch::Tensor xf = x.to(torch::kFloat), sf = s.to(torch::kFloat);
  torch::Tensor w = torch::zeros({x.size(1), s.size(1)}, torch::requires_grad());
  torch::optim::Adam optimizer({w}, torch::optim::AdamOptions(0.01).weight_decay(weight_decay));
  for (int64_t step = 0; step < epochs; ++step) {
    optimizer.zero_grad();
    const torch::Tensor logits = xf.mm(w).mm(sf.t());
    torch::nn::functional::cross_entropy(logits, labels).backward();
    optimizer.step();
  }
  return w.detach().to(torch::kDouble);
}

torch::Tensor fit_with(const torch::Tensor& x, const torch::Tensor& labels, const torch::Tensor& s,
                       const ZeroShotOptions& options, const nlohmann::json& params) {
  if (options.method == ZeroShotMethod::kEszsl)
    return fit_eszsl(x, labels, s, params.at("gamma"), params.at("lambda"));
  return fit_softmax(x, labels, s, params.at("weight_decay"), options.epochs);
}

std::vector<int64_t> argmax_rows(const torch::Tensor& scores) {
  const torch::Tensor best = scores.argmax(1).contiguous();
  return std::vector<int64_t>(best.data_ptr<int64_t>(), best.data_ptr<int64_t>() + best.numel());
}

// Scores [N, C] with `shift` subtracted from the first `seen` columns (calibrated stacking).
torch::Tensor stacked(const torch::Tensor& scores, int64_t seen, double shift) {
  if (shift == 0) return scores;
  torch::Tensor out = scores.clone();
  out.narrow(1, 0, seen).sub_(shift);
  return out;
}

// One cross-validation fold over seen classes: a seeded choice of `held` pseudo-unseen
// classes (relabelled 0..held-1 in val_labels), the others relabelled 0..T-1.
struct FoldSplit {
  std::vector<int64_t> train_classes, val_classes;
  std::vector<int64_t> train_rows, val_rows, train_labels, val_labels;
};

FoldSplit split_fold(const torch::Tensor& y, int64_t classes, int64_t held, uint64_t seed,
                     int fold) {
  std::vector<int64_t> order(classes);
  std::iota(order.begin(), order.end(), 0);
  Rng rng(derive_seed(seed, static_cast<uint64_t>(fold)));
  for (int64_t i = classes - 1; i > 0; --i)
    std::swap(order[i], order[rng.below(static_cast<uint64_t>(i + 1))]);
  FoldSplit split;
  std::vector<int64_t> relabel(classes, -1);
  std::vector<bool> is_val(classes, false);
  for (int64_t i = 0; i < classes; ++i) {
    auto& group = i < held ? split.val_classes : split.train_classes;
    relabel[order[i]] = static_cast<int64_t>(group.size());
    group.push_back(order[i]);
    is_val[order[i]] = i < held;
  }
  auto la = y.accessor<int64_t, 1>();
  for (int64_t i = 0; i < y.size(0); ++i) {
    (is_val[la[i]] ? split.val_rows : split.train_rows).push_back(i);
    (is_val[la[i]] ? split.val_labels : split.train_labels).push_back(relabel[la[i]]);
  }
  return split;
}

// Compatibility scores have no fixed scale (it depends on the method and its ridge terms), so
// the stacking constant is expressed in units of the scores' standard deviation on the
// training images and carried over from the folds' fits to the final one in those units.
double score_scale(const torch::Tensor& scores) {
  const double sd = scores.numel() > 1 ? scores.std().item<double>() : 0.0;
  return std::isfinite(sd) && sd > 0 ? sd : 1.0;
}

double harmonic_mean(double a, double b) { return a + b > 0 ? 2 * a * b / (a + b) : 0.0; }

// Calibrated stacking (Chao et al. 2016): in GZSL the seen classes' scores are lowered by a
// constant before the argmax, because a compatibility fit on seen classes scores them higher
// than any unseen class. The constant maximises the mean H over the same folds as the
// hyperparameters: each fold fits on four fifths of its training classes' images and
// measures seen accuracy on the other fifth and unseen accuracy on its pseudo-unseen classes.
// Returns the constant (in score standard deviations) and its validation H.
std::pair<double, double> calibrate_stacking(const torch::Tensor& x, const torch::Tensor& y,
                                             const torch::Tensor& s, const ZeroShotOptions& options,
                                             const nlohmann::json& params, int64_t held) {
  constexpr int kSteps = 121;  // 0, 0.05, ..., 6 standard deviations
  std::vector<double> h(kSteps, 0.0);
  int used = 0;
  for (int fold = 0; fold < options.folds; ++fold) {
    const FoldSplit split = split_fold(y, s.size(0), held, options.seed, fold);
    // Every fifth training image (in a seeded order) is held out as a seen test image.
    std::vector<int64_t> order(split.train_rows.size());
    std::iota(order.begin(), order.end(), 0);
    Rng rng(derive_seed(options.seed ^ 0x5eedca1bULL, static_cast<uint64_t>(fold)));
    for (int64_t i = static_cast<int64_t>(order.size()) - 1; i > 0; --i)
      std::swap(order[i], order[rng.below(static_cast<uint64_t>(i + 1))]);
    std::vector<int64_t> fit_rows, fit_labels, seen_rows, seen_labels;
    for (size_t k = 0; k < order.size(); ++k) {
      const bool test = k % 5 == 4;
      (test ? seen_rows : fit_rows).push_back(split.train_rows[order[k]]);
      (test ? seen_labels : fit_labels).push_back(split.train_labels[order[k]]);
    }
    if (seen_rows.empty() || fit_rows.empty() || split.val_rows.empty()) continue;
    const int64_t t = static_cast<int64_t>(split.train_classes.size());
    const torch::Tensor st = s.index_select(0, torch::tensor(split.train_classes));
    const torch::Tensor all = torch::cat({st, s.index_select(0, torch::tensor(split.val_classes))});
    const torch::Tensor xf = x.index_select(0, torch::tensor(fit_rows));
    const torch::Tensor w =
        fit_with(xf, torch::tensor(fit_labels, torch::kLong), st, options, params);
    const double scale = score_scale(xf.mm(w).mm(st.t()));
    const torch::Tensor seen_scores = x.index_select(0, torch::tensor(seen_rows)).mm(w).mm(all.t());
    const torch::Tensor unseen_scores =
        x.index_select(0, torch::tensor(split.val_rows)).mm(w).mm(all.t());
    std::vector<int64_t> unseen_labels;
    for (int64_t l : split.val_labels) unseen_labels.push_back(l + t);
    for (int k = 0; k < kSteps; ++k) {
      const double shift = k / 20.0 * scale;
      const double acc_seen =
          per_class_accuracy(argmax_rows(stacked(seen_scores, t, shift)), seen_labels);
      const double acc_unseen =
          per_class_accuracy(argmax_rows(stacked(unseen_scores, t, shift)), unseen_labels);
      h[k] += harmonic_mean(acc_seen, acc_unseen);
    }
    ++used;
  }
  if (used == 0) return {0.0, 0.0};
  const int chosen = static_cast<int>(std::max_element(h.begin(), h.end()) - h.begin());
  return {chosen / 20.0, h[chosen] / used};
}
}  // namespace

AttributeTable read_attribute_csv(const fs::path& file) {
  std::ifstream in(file);
  if (!in) throw Error("cannot read the attribute file " + file.string());
  AttributeTable table;
  table.source = file.string();
  std::vector<std::vector<double>> rows;
  std::string line;
  for (size_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const auto fields = split_csv_line(line, file.string(), number);
    if (table.attributes.empty()) {
      if (fields.size() < 2 || fields[0] != "class")
        throw line_error(file.string(), number,
                         "expected the header `class,attr_1,...,attr_M` (at least one attribute)",
                         line);
      table.attributes.assign(fields.begin() + 1, fields.end());
      continue;
    }
    if (fields.size() != table.attributes.size() + 1)
      throw line_error(file.string(), number,
                       fmt::format("expected a class and {} values, got {} fields",
                                   table.attributes.size(), fields.size()),
                       line);
    if (std::find(table.classes.begin(), table.classes.end(), fields[0]) != table.classes.end())
      throw line_error(file.string(), number, "class '" + fields[0] + "' is listed twice", line);
    table.classes.push_back(fields[0]);
    auto& row = rows.emplace_back();
    for (size_t j = 1; j < fields.size(); ++j)
      row.push_back(parse_value(fields[j], file.string(), number, line,
                                "attribute '" + table.attributes[j - 1] + "'"));
  }
  if (table.classes.empty()) throw Error(file.string() + ": no class rows");
  table.values = to_tensor(rows);
  return table;
}

AttributeTable read_cub_attributes(const fs::path& root) {
  const fs::path values_file = root / "attributes" / "class_attribute_labels_continuous.txt";
  data::cub_style::require_file(values_file, "cub attributes");
  AttributeTable table;
  table.source = values_file.string();
  for (const auto& [id, name] : data::cub_style::read_id_names(root / "classes.txt"))
    table.classes.push_back(name);
  std::vector<std::vector<double>> rows;
  data::cub_style::for_each_line(values_file, [&](const data::cub_style::Line& line) {
    auto& row = rows.emplace_back();
    for (size_t k = 0; k < line.fields.size(); ++k)
      row.push_back(parse_value(std::string(line.fields[k]), *line.file, line.number,
                                std::string(line.text), fmt::format("value {}", k + 1)));
    if (row.size() != rows.front().size())
      line.fail(fmt::format("{} values, the first line has {}", row.size(), rows.front().size()));
  });
  if (rows.size() != table.classes.size())
    throw Error(fmt::format("{} has {} rows for the {} classes of classes.txt",
                            values_file.string(), rows.size(), table.classes.size()));
  for (const fs::path names : {root / "attributes.txt", root.parent_path() / "attributes.txt",
                               root / "attributes" / "attributes.txt"}) {
    if (!data::cub_style::file_exists(names)) continue;
    for (const auto& [id, name] : data::cub_style::read_id_names(names))
      table.attributes.push_back(name);
    break;
  }
  if (table.attributes.size() != rows.front().size()) {
    table.attributes.clear();
    for (size_t k = 0; k < rows.front().size(); ++k)
      table.attributes.push_back(fmt::format("attr_{}", k + 1));
  }
  table.values = to_tensor(rows);
  return table;
}

XianSplit read_xian_split(const fs::path& att_splits) {
  const io::MatFile file(att_splits);
  XianSplit split;
  AttributeTable& table = split.attributes;
  table.source = att_splits.string() + " (att)";
  table.classes = file.read("allclasses_names").strings();
  const io::MatVar att = file.read("att");
  const auto dims = att.dims();
  if (dims.size() != 2 || dims[1] != table.classes.size())
    throw Error(
        fmt::format("{}: expected an attributes x {} matrix (one column per class of "
                    "allclasses_names), got {} dimensions{}",
                    att.context(), table.classes.size(), dims.size(),
                    dims.size() == 2 ? fmt::format(" {} x {}", dims[0], dims[1]) : ""));
  const std::vector<double> values = att.numbers();  // column-major: class c is column c
  std::vector<std::vector<double>> rows(dims[1], std::vector<double>(dims[0]));
  for (size_t c = 0; c < dims[1]; ++c)
    for (size_t a = 0; a < dims[0]; ++a) {
      const double v = values[a + dims[0] * c];
      if (!std::isfinite(v))
        throw Error(fmt::format("{}: attribute {} of class '{}' is {} (attributes must be finite)",
                                att.context(), a + 1, table.classes[c], v));
      rows[c][a] = v;
    }
  for (size_t a = 0; a < dims[0]; ++a) table.attributes.push_back(fmt::format("attr_{}", a + 1));
  table.values = to_tensor(rows);

  const fs::path features = att_splits.parent_path() / "res101.mat";
  if (!fs::exists(features))
    throw Error(fmt::format(
        "{} names the unseen classes only through image indices (test_unseen_loc) into "
        "res101.mat, which is not next to it ({}): keep the archive's folder whole, or pass "
        "--unseen-classes @testclasses.txt",
        att_splits.string(), features.string()));
  const std::vector<double> labels = io::MatFile(features).read("labels").numbers();
  std::vector<bool> unseen(table.classes.size(), false);
  for (const char* part : {"test_unseen_loc", "trainval_loc"}) {
    const io::MatVar loc = file.read(part);
    for (double index : loc.numbers()) {
      if (!(index >= 1 && index <= static_cast<double>(labels.size())))
        throw Error(fmt::format("{}: image index {} is outside res101.mat's {} images",
                                loc.context(), index, labels.size()));
      const double label = labels[static_cast<size_t>(index) - 1];
      if (!(label >= 1 && label <= static_cast<double>(table.classes.size())))
        throw Error(fmt::format("{}: label {} is not a class of allclasses_names (1..{})",
                                features.string(), label, table.classes.size()));
      const size_t c = static_cast<size_t>(label) - 1;
      if (std::string(part) == "test_unseen_loc") {
        unseen[c] = true;
      } else if (unseen[c]) {
        throw Error(
            fmt::format("{}: class '{}' has images in both trainval_loc and "
                        "test_unseen_loc: not a zero-shot split",
                        att_splits.string(), table.classes[c]));
      }
    }
  }
  for (size_t c = 0; c < table.classes.size(); ++c)
    (unseen[c] ? split.unseen_classes : split.seen_classes).push_back(table.classes[c]);
  if (split.unseen_classes.empty())
    throw Error(att_splits.string() + ": test_unseen_loc is empty: no unseen class");
  return split;
}

torch::Tensor attribute_rows(const AttributeTable& table, const std::vector<std::string>& classes) {
  std::vector<int64_t> index;
  for (const auto& c : classes) {
    auto it = std::find(table.classes.begin(), table.classes.end(), c);
    if (it == table.classes.end()) {
      std::string some;
      for (size_t i = 0; i < table.classes.size() && i < 5; ++i)
        some += (i ? ", " : "") + table.classes[i];
      throw Error(fmt::format(
          "{} has no row for the dataset's class '{}' (its classes: {}{}): class names must "
          "match the dataset's exactly",
          table.source, c, some, table.classes.size() > 5 ? ", ..." : ""));
    }
    index.push_back(it - table.classes.begin());
  }
  return table.values.index_select(0, torch::tensor(index, torch::kLong));
}

ZeroShotMethod parse_zeroshot_method(const std::string& name) {
  if (name == "eszsl") return ZeroShotMethod::kEszsl;
  if (name == "softmax") return ZeroShotMethod::kSoftmax;
  throw Error("unknown zero-shot method '" + name + "' (methods: eszsl, softmax)");
}

std::string to_string(ZeroShotMethod method) {
  return method == ZeroShotMethod::kEszsl ? "eszsl" : "softmax";
}

torch::Tensor normalized_attributes(const torch::Tensor& attributes) {
  const torch::Tensor a = attributes.to(torch::kDouble);
  return a / a.norm(2, 1, true).clamp_min(1e-12);
}

torch::Tensor Compatibility::scores(const torch::Tensor& embeddings,
                                    const torch::Tensor& attributes) const {
  return embeddings.to(torch::kDouble).mm(weights).mm(attributes.to(torch::kDouble).t());
}

double per_class_accuracy(const std::vector<int64_t>& predicted,
                          const std::vector<int64_t>& labels) {
  std::map<int64_t, std::pair<int64_t, int64_t>> per;  // class -> (right, total)
  for (size_t i = 0; i < labels.size(); ++i) {
    auto& [right, total] = per[labels[i]];
    right += predicted[i] == labels[i];
    ++total;
  }
  double sum = 0;
  for (const auto& [c, counts] : per) sum += double(counts.first) / counts.second;
  return per.empty() ? 0.0 : sum / static_cast<double>(per.size());
}

Compatibility fit_compatibility(const torch::Tensor& embeddings, const torch::Tensor& labels,
                                const torch::Tensor& seen_attributes,
                                const ZeroShotOptions& options) {
  TORCH_CHECK(embeddings.dim() == 2 && labels.dim() == 1 && labels.size(0) == embeddings.size(0),
              "fit_compatibility: embeddings ", embeddings.sizes(), " and labels ", labels.sizes());
  const int64_t classes = seen_attributes.size(0);
  if (embeddings.size(0) == 0) throw Error("zero-shot training needs seen-class images");
  c10::InferenceMode off(false);
  const torch::Tensor x = embeddings.to(torch::kDouble);
  const torch::Tensor y = labels.to(torch::kLong);
  const torch::Tensor s = normalized_attributes(seen_attributes);

  std::vector<nlohmann::json> grid;
  if (options.method == ZeroShotMethod::kEszsl) {
    for (int g = -3; g <= 3; ++g)
      for (int l = -3; l <= 3; ++l)
        grid.push_back({{"gamma", std::pow(10.0, g)}, {"lambda", std::pow(10.0, l)}});
  } else {
    for (int w = -5; w <= -1; ++w) grid.push_back({{"weight_decay", std::pow(10.0, w)}});
  }
  nlohmann::json best = options.method == ZeroShotMethod::kEszsl
                            ? nlohmann::json{{"gamma", options.gamma}, {"lambda", options.lambda}}
                            : nlohmann::json{{"weight_decay", options.weight_decay}};
  Compatibility out;
  out.validation = nlohmann::json::array();
  const int64_t held = std::max<int64_t>(2, classes / 5);
  const bool cross_validate = classes - held >= 2 && options.folds > 0;
  if (cross_validate) {
    std::vector<double> score(grid.size(), 0.0);
    for (int fold = 0; fold < options.folds; ++fold) {
      const FoldSplit split = split_fold(y, classes, held, options.seed, fold);
      if (split.val_rows.empty() || split.train_rows.empty()) continue;
      const torch::Tensor xt = x.index_select(0, torch::tensor(split.train_rows));
      const torch::Tensor xv = x.index_select(0, torch::tensor(split.val_rows));
      const torch::Tensor st = s.index_select(0, torch::tensor(split.train_classes));
      const torch::Tensor sv = s.index_select(0, torch::tensor(split.val_classes));
      const torch::Tensor yt = torch::tensor(split.train_labels, torch::kLong);
      for (size_t g = 0; g < grid.size(); ++g) {
        const torch::Tensor w = fit_with(xt, yt, st, options, grid[g]);
        score[g] +=
            per_class_accuracy(argmax_rows(xv.mm(w).mm(sv.t())), split.val_labels) / options.folds;
      }
    }
    const size_t chosen = std::max_element(score.begin(), score.end()) - score.begin();
    best = grid[chosen];
    for (size_t g = 0; g < grid.size(); ++g) {
      nlohmann::json entry = grid[g];
      entry["zsl_validation"] = score[g];
      out.validation.push_back(entry);
    }
  }
  out.hyperparameters = best;
  out.hyperparameters["method"] = to_string(options.method);
  out.hyperparameters["pseudo_unseen_per_fold"] = classes - held >= 2 ? held : 0;
  out.weights = fit_with(x, y, s, options, best);
  out.score_scale = score_scale(x.mm(out.weights).mm(s.t()));
  if (cross_validate) {
    const auto [stacking, h] = calibrate_stacking(x, y, s, options, best, held);
    out.stacking = stacking;
    out.hyperparameters["stacking"] = stacking;
    out.hyperparameters["stacking_validation_h"] = h;
  }
  return out;
}

ZeroShotResult zeroshot_evaluate(const Compatibility& model, const torch::Tensor& seen_attributes,
                                 const torch::Tensor& unseen_attributes,
                                 const torch::Tensor& seen_embeddings,
                                 const std::vector<int64_t>& seen_labels,
                                 const torch::Tensor& unseen_embeddings,
                                 const std::vector<int64_t>& unseen_labels) {
  if (unseen_labels.empty()) throw Error("zero-shot evaluation needs images of unseen classes");
  const torch::Tensor seen_s = normalized_attributes(seen_attributes);
  const torch::Tensor unseen_s = normalized_attributes(unseen_attributes);
  const int64_t s = seen_s.size(0);
  ZeroShotResult r;
  r.seen_images = static_cast<int64_t>(seen_labels.size());
  r.unseen_images = static_cast<int64_t>(unseen_labels.size());
  r.zsl = per_class_accuracy(argmax_rows(model.scores(unseen_embeddings, unseen_s)), unseen_labels);
  const torch::Tensor all = torch::cat({seen_s, unseen_s});
  std::vector<int64_t> shifted;
  for (int64_t l : unseen_labels) shifted.push_back(l + s);
  r.gzsl_unseen = per_class_accuracy(argmax_rows(model.scores(unseen_embeddings, all)), shifted);
  if (!seen_labels.empty())
    r.gzsl_seen = per_class_accuracy(argmax_rows(model.scores(seen_embeddings, all)), seen_labels);
  r.h = harmonic_mean(r.gzsl_seen, r.gzsl_unseen);
  r.stacking = model.stacking;
  const double shift = model.stacking * model.score_scale;
  r.calibrated_unseen = per_class_accuracy(
      argmax_rows(stacked(model.scores(unseen_embeddings, all), s, shift)), shifted);
  if (!seen_labels.empty())
    r.calibrated_seen = per_class_accuracy(
        argmax_rows(stacked(model.scores(seen_embeddings, all), s, shift)), seen_labels);
  r.calibrated_h = harmonic_mean(r.calibrated_seen, r.calibrated_unseen);
  return r;
}

}  // namespace finch::eval
