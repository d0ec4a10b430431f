// `finch eval --protocol zeroshot`: fit an embedding -> attribute compatibility on the seen
// classes' training images, then recognise the unseen classes from their attribute rows.
#include <fmt/format.h>
#include <torch/torch.h>

#include <algorithm>
#include <iostream>
#include <optional>

#include "eval_args.h"
#include "finch/core/error.h"
#include "finch/data/class_list.h"
#include "finch/data/from_config.h"
#include "finch/eval/zeroshot.h"

namespace finch::cli {

namespace {

std::vector<std::string> pick(const std::vector<std::string>& names,
                              const std::vector<int64_t>& index) {
  std::vector<std::string> out;
  for (int64_t i : index) out.push_back(names[i]);
  return out;
}

}  // namespace

void run_zeroshot(const EvalArgs& args, eval::InferenceSession& session) {
  if (args.attributes.empty())
    throw Error("--protocol zeroshot needs --attributes FILE.csv (or cub, or att_splits.mat)");
  const auto is_mat = [](const std::string& p) {
    return p.size() > 4 && p.compare(p.size() - 4, 4, ".mat") == 0;
  };
  // Xian et al.'s att_splits.mat: attributes, unseen classes, or both.
  const std::string xian_file = is_mat(args.attributes)       ? args.attributes
                                : is_mat(args.unseen_classes) ? args.unseen_classes
                                                              : "";
  const std::optional<eval::XianSplit> xian =
      xian_file.empty() ? std::nullopt : std::optional(eval::read_xian_split(xian_file));
  const bool unseen_from_xian =
      xian && (args.unseen_classes.empty() || is_mat(args.unseen_classes));
  if (args.unseen_classes.empty() && !xian)
    throw Error("--protocol zeroshot needs --unseen-classes LIST (or an att_splits.mat)");
  if (args.zeroshot_train_split == args.data.split)
    throw Error("--zeroshot-train-split and --split are both '" + args.data.split +
                "': the compatibility must be fit on other images than it is tested on");
  const Config config = eval_data_config(args, session.info());
  const data::DatasetPtr test = data::open_split(config, args.data.split);
  const auto& names = test->class_names();
  std::vector<int64_t> unseen_index;
  if (unseen_from_xian) {
    for (const auto& name : xian->unseen_classes) {
      auto it = std::find(names.begin(), names.end(), name);
      if (it == names.end())
        throw Error(
            fmt::format("{} names the unseen class '{}', which split '{}' of the dataset "
                        "does not have (its first class: '{}')",
                        xian_file, name, args.data.split, names.front()));
      unseen_index.push_back(it - names.begin());
    }
    std::sort(unseen_index.begin(), unseen_index.end());
  } else {
    unseen_index = data::parse_class_list(args.unseen_classes, names, "--unseen-classes");
  }
  std::vector<int64_t> seen_index;
  for (int64_t c = 0; c < static_cast<int64_t>(names.size()); ++c)
    if (!std::binary_search(unseen_index.begin(), unseen_index.end(), c)) seen_index.push_back(c);
  if (seen_index.empty())
    throw Error("--unseen-classes lists every class: none is left to learn from");
  const auto seen = pick(names, seen_index), unseen = pick(names, unseen_index);
  for (const auto& name : unseen)
    if (std::find(session.classes().begin(), session.classes().end(), name) !=
        session.classes().end())
      throw Error("the model was trained on the unseen class '" + name +
                  "': zero-shot figures need a model that never saw the unseen classes (train "
                  "with data.classes set to the seen ones)");

  const eval::AttributeTable table =
      is_mat(args.attributes)    ? xian->attributes
      : args.attributes == "cub" ? eval::read_cub_attributes(config.get<std::string>("data.root"))
                                 : eval::read_attribute_csv(args.attributes);
  const torch::Tensor seen_attributes = eval::attribute_rows(table, seen);
  const torch::Tensor unseen_attributes = eval::attribute_rows(table, unseen);

  // Seen classes' training images fit the compatibility.
  Config train_config = config;
  train_config.set("data.classes", nlohmann::json(seen).dump());
  const auto train = gallery::embed_dataset(
      session, data::open_split(train_config, args.zeroshot_train_split), eval_embed_options(args));
  eval::ZeroShotOptions options;
  options.method = eval::parse_zeroshot_method(args.zeroshot_method);
  options.seed = args.seed;
  const eval::Compatibility model = eval::fit_compatibility(
      train.embeddings, torch::tensor(train.labels, torch::kLong), seen_attributes, options);

  // Test images: seen-class ones (GZSL seen accuracy) and unseen-class ones.
  const auto tested = gallery::embed_dataset(session, test, eval_embed_options(args));
  std::vector<int64_t> seen_rows, unseen_rows, seen_labels, unseen_labels;
  for (size_t i = 0; i < tested.labels.size(); ++i) {
    const int64_t c = tested.labels[i];
    auto u = std::lower_bound(unseen_index.begin(), unseen_index.end(), c);
    if (u != unseen_index.end() && *u == c) {
      unseen_rows.push_back(static_cast<int64_t>(i));
      unseen_labels.push_back(u - unseen_index.begin());
    } else {
      seen_rows.push_back(static_cast<int64_t>(i));
      seen_labels.push_back(std::lower_bound(seen_index.begin(), seen_index.end(), c) -
                            seen_index.begin());
    }
  }
  if (unseen_rows.empty())
    throw Error(fmt::format("split '{}' has no images of the unseen classes", args.data.split));
  const auto rows = [&](const std::vector<int64_t>& r) {
    return tested.embeddings.index_select(0, torch::tensor(r, torch::kLong));
  };
  const eval::ZeroShotResult r =
      eval::zeroshot_evaluate(model, seen_attributes, unseen_attributes, rows(seen_rows),
                              seen_labels, rows(unseen_rows), unseen_labels);

  nlohmann::json out{{"model", args.model},
                     {"dataset",
                      {{"format", args.data.format},
                       {"root", args.data.root},
                       {"split", args.data.split},
                       {"train_split", args.zeroshot_train_split}}},
                     {"protocol", "zeroshot"},
                     {"attributes", {{"source", table.source}, {"count", table.attributes.size()}}},
                     {"seen_classes", seen},
                     {"unseen_classes", unseen},
                     {"train_images", train.labels.size()},
                     {"hyperparameters", model.hyperparameters},
                     {"validation", model.validation},
                     {"zsl_top1", r.zsl},
                     {"chance", 1.0 / static_cast<double>(unseen.size())},
                     {"gzsl", {{"seen", r.gzsl_seen}, {"unseen", r.gzsl_unseen}, {"h", r.h}}},
                     {"gzsl_calibrated",
                      {{"seen", r.calibrated_seen},
                       {"unseen", r.calibrated_unseen},
                       {"h", r.calibrated_h},
                       {"stacking", r.stacking}}},
                     {"seen_test_images", r.seen_images},
                     {"unseen_test_images", r.unseen_images}};
  if (args.json) {
    std::cout << out.dump() << std::endl;
    return;
  }
  fmt::print(
      "{} on {} split '{}': {} seen classes ({} training images of split '{}'), {} unseen "
      "classes, {} attributes from {}\n"
      "compatibility: {} ({})\n"
      "ZSL  per-class top-1 on the unseen classes: {:6.2f}%  (chance {:.2f}%)\n"
      "GZSL per-class top-1 among all classes: seen {:6.2f}%  unseen {:6.2f}%  H {:6.2f}%\n"
      "GZSL with calibrated stacking ({:.2f} sd): seen {:6.2f}%  unseen {:6.2f}%  H {:6.2f}%\n",
      args.model, args.data.format, args.data.split, seen.size(), train.labels.size(),
      args.zeroshot_train_split, unseen.size(), table.attributes.size(), table.source,
      to_string(options.method), model.hyperparameters.dump(), 100 * r.zsl, 100.0 / unseen.size(),
      100 * r.gzsl_seen, 100 * r.gzsl_unseen, 100 * r.h, r.stacking, 100 * r.calibrated_seen,
      100 * r.calibrated_unseen, 100 * r.calibrated_h);
}

void add_zeroshot_options(CLI::App& cmd, EvalArgs& args) {
  cmd.add_option("--attributes", args.attributes,
                 "zeroshot: class attribute table, a CSV `class,attr_1,...`, `cub` (CUB's "
                 "attributes/class_attribute_labels_continuous.txt under --root), or Xian et "
                 "al.'s att_splits.mat (its `att`, and its unseen classes unless "
                 "--unseen-classes is given)");
  cmd.add_option("--unseen-classes", args.unseen_classes,
                 "zeroshot: the classes without training images: names, indices, ranges "
                 "begin:end, @FILE (e.g. Xian et al.'s testclasses.txt), or att_splits.mat (with "
                 "res101.mat next to it)");
  cmd.add_option("--zeroshot-method", args.zeroshot_method,
                 "zeroshot: eszsl (closed form) | softmax (cross-entropy over seen classes); "
                 "hyperparameters by cross-validation over seen classes")
      ->check(CLI::IsMember({"eszsl", "softmax"}))
      ->capture_default_str();
  cmd.add_option("--zeroshot-train-split", args.zeroshot_train_split,
                 "zeroshot: the split whose seen-class images fit the compatibility")
      ->capture_default_str();
}

}  // namespace finch::cli
