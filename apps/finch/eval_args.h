#pragma once
// `finch eval`'s options, shared by the files that run its protocols (cmd_eval.cpp:
// classification, retrieval, few-shot, gallery; eval_open_set.cpp: open-set;
// eval_zeroshot.cpp: zero-shot).
#include <string>
#include <vector>

#include "commands.h"
#include "finch/eval/session.h"

namespace finch::cli {

struct EvalArgs {
  std::string model, confusion_csv, dtype = "auto", protocol = "classification";
  std::string class_split, gallery;
  int64_t knn = 0;
  std::vector<int64_t> shots{1, 5};
  int64_t ways = 5, queries = 15, episodes = 600, max_pixels = 0;
  uint64_t seed = 0;
  DatasetArgs data;
  std::string tta = "none", reliability, save_embeddings, tsne, hierarchy;
  int64_t confused_examples = 0;
  bool json = false;
  int64_t batch_size = 256;
  int workers = 2, threads = 0;
  // open-set
  bool open_set = false;
  std::string unknown_classes, unknown_root, export_scores, rejection_plot, calibrated_out;
  int64_t score_knn = 50;
  double tpr = 0.95, calibrate_tpr = 0;
  // zero-shot
  std::string attributes, unseen_classes, zeroshot_method = "eszsl", zeroshot_train_split = "train";
};

/// The dataset options with --max-pixels as data.max_pixels, and the training run's seed,
/// data.train_split and data.val_fraction from the model file (unless --option sets them), so
/// that --split val on a format without one, and open-set calibration, see the trainer's carve.
Config eval_data_config(const EvalArgs& args, const models::ModelInfo& model);
/// --batch-size, --workers and progress (none with --json) for embedding a split.
gallery::EmbedOptions eval_embed_options(const EvalArgs& args);

/// `finch eval --open-set`: known classes (the model's) against --unknown-classes or the
/// images of --unknown-root.
void run_open_set(const EvalArgs& args, eval::InferenceSession& session);
/// Adds the open-set options to `eval`.
void add_open_set_options(CLI::App& cmd, EvalArgs& args);

/// `finch eval --protocol zeroshot`: attributes of --unseen-classes against the seen ones.
void run_zeroshot(const EvalArgs& args, eval::InferenceSession& session);
void add_zeroshot_options(CLI::App& cmd, EvalArgs& args);

}  // namespace finch::cli
