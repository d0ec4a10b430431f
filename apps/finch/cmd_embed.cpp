// finch embed: images -> unit-length embeddings (the head's input feature) in a safetensors
// file that Python loads with safetensors.torch.load_file.
#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>

#include "commands.h"
#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/eval/session.h"
#include "finch/gallery/gallery.h"
#include "finch/models/inference.h"
#include "finch/train/distributed.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct EmbedArgs {
  std::string model, out, dtype = "fp32";
  ImageSourceArgs source;
  bool json = false;
  int threads = 0;
};

void run(const EmbedArgs& args) {
  torch::set_num_threads(choose_threads(args.threads));
  eval::InferenceSession session(args.model, eval::session_options_for_dtype(args.dtype));
  if (!args.json) report_dtype(session);
  const auto images = embed_image_source(session, args.source, args.json);
  if (train::DistEnv::from_environment().rank != 0) return;  // rank 0 writes for the job
  gallery::save_embeddings_file(args.out, images, session.content_hash());
  report_embed_errors(images);
  const int64_t n = images.embeddings.size(0), d = images.embeddings.size(1);
  if (args.json) {
    std::cout << nlohmann::json{{"out", args.out},
                                {"images", n},
                                {"dim", d},
                                {"unreadable", images.errors.size()},
                                {"model_sha256", session.content_hash()}}
                     .dump()
              << std::endl;
  } else {
    fmt::print("embedded {} images ({}-d, L2-normalised) -> {}{}\n", n, d, args.out,
               images.errors.empty() ? "" : fmt::format(" ({} unreadable)", images.errors.size()));
  }
}

}  // namespace

void add_embed_command(CLI::App& app) {
  auto args = std::make_shared<EmbedArgs>();
  CLI::App* cmd = app.add_subcommand(
      "embed", "Write L2-normalised embeddings of images or a dataset split (.safetensors)");
  add_model_option(*cmd, args->model);
  add_image_source_options(*cmd, args->source, /*class_folders=*/true, /*positional=*/true);
  cmd->add_option("--out,-o", args->out,
                  "Output .safetensors: embeddings [N, D] float32, labels [N] int64 (-1 = "
                  "unknown), paths and classes in the metadata")
      ->required();
  cmd->add_flag("--json", args->json, "Print one JSON summary {out, images, dim, unreadable}");
  add_threads_option(*cmd, args->threads);
  add_dtype_option(*cmd, args->dtype);
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
