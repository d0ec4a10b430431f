// finch search: the nearest gallery items of each query image (cosine similarity), exact by
// default, through FAISS (HNSW / IVF) for large galleries with its recall against exact.
#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>
#include <optional>

#include "commands.h"
#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/eval/session.h"
#include "finch/gallery/ann.h"
#include "finch/gallery/gallery.h"
#include "finch/models/inference.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct SearchArgs {
  std::string model, gallery, index = "exact", dtype = "fp32";
  std::vector<std::string> inputs;
  int64_t k = 10, batch_size = 64, nprobe = 16, nlist = 0;
  int ef_search = 128, threads = 0;
  bool json = false;
};

void run(const SearchArgs& args) {
  torch::set_num_threads(choose_threads(args.threads));
  const gallery::Gallery g = gallery::Gallery::load(args.gallery);
  if (g.size() == 0) throw Error(args.gallery + " is empty: add images with `finch gallery add`");
  eval::SessionOptions session_options;
  session_options = eval::session_options_for_dtype(args.dtype);
  eval::InferenceSession session(args.model, session_options);
  g.check_model(session);
  std::optional<gallery::AnnIndex> ann;
  if (args.index != "exact") {
    gallery::AnnOptions options;
    options.kind = args.index;
    options.nprobe = args.nprobe;
    options.nlist = args.nlist;
    options.ef_search = args.ef_search;
    ann.emplace(g.embeddings(), options);
  }
  const auto paths = expand_image_inputs(args.inputs);
  if (paths.empty()) throw Error("no images found in the given paths");
  gallery::EmbedOptions embed_options;
  embed_options.batch_size = args.batch_size;
  const auto queries = gallery::embed_files(session, paths, {}, {}, embed_options);
  for (const auto& [path, message] : queries.errors) {
    if (args.json)
      std::cout << nlohmann::json{{"path", path}, {"error", message}}.dump() << "\n";
    else
      std::cout << path << "\n  error: " << message << "\n";
  }
  if (queries.embeddings.size(0) == 0) return;
  const auto exact = gallery::exact_search(queries.embeddings, g.embeddings(), args.k);
  const auto hits = ann ? ann->search(queries.embeddings, args.k) : exact;
  const auto& classes = g.classes();
  auto labels = g.labels().accessor<int64_t, 1>();
  for (size_t q = 0; q < hits.size(); ++q) {
    if (args.json) {
      nlohmann::json items = nlohmann::json::array();
      for (const auto& h : hits[q])
        items.push_back({{"path", g.paths()[h.item]},
                         {"class", classes[labels[h.item]]},
                         {"item", h.item},
                         {"score", h.score}});
      std::cout << nlohmann::json{{"path", queries.paths[q]}, {"neighbours", items}}.dump() << "\n";
    } else {
      std::cout << queries.paths[q] << "\n";
      for (const auto& h : hits[q])
        std::cout << fmt::format("  {:.4f}  {}  {}\n", h.score, classes[labels[h.item]],
                                 g.paths()[h.item]);
    }
  }
  std::cout.flush();
  if (ann) {
    // Measured on these queries: the share of the exact top-k that the index returned.
    std::cerr << fmt::format("{}: recall@{} against exact search on these {} queries: {:.4f}\n",
                             ann->description(), std::min<int64_t>(args.k, g.size()), hits.size(),
                             gallery::recall_at_k(hits, exact));
  }
}

}  // namespace

void add_search_command(CLI::App& app) {
  auto args = std::make_shared<SearchArgs>();
  CLI::App* cmd =
      app.add_subcommand("search", "Find the most similar gallery items to each image (cosine)");
  cmd->add_option("--gallery,-g", args->gallery, "Gallery file (finch gallery build)")
      ->required()
      ->check(CLI::ExistingFile);
  add_model_option(*cmd, args->model);
  add_count_option(*cmd, "--k,-k", args->k, "Neighbours per image", 1, 100000);
  cmd->add_option("--index", args->index,
                  "exact (one matmul, the default) | hnsw | ivf (FAISS; prints its recall@k "
                  "against exact search on stderr)")
      ->check(CLI::IsMember({"exact", "hnsw", "ivf"}))
      ->capture_default_str();
  add_count_option(*cmd, "--nprobe", args->nprobe, "IVF cells scanned per query", 1, 1 << 20);
  add_count_option(*cmd, "--nlist", args->nlist, "IVF cells (0 = about sqrt(N))", 0, 1 << 24);
  add_count_option(*cmd, "--ef-search", args->ef_search, "HNSW search breadth", 1, 1 << 20);
  add_count_option(*cmd, "--batch-size", args->batch_size, "Images per forward pass", 1, 65536);
  cmd->add_flag("--json", args->json,
                "JSON lines: {\"path\", \"neighbours\": [{\"path\", \"class\", \"item\", "
                "\"score\"}]} or {\"path\", \"error\"}");
  add_threads_option(*cmd, args->threads);
  add_dtype_option(*cmd, args->dtype);
  cmd->add_option("inputs", args->inputs, "Query image files and/or folders")->required();
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
