// finch gallery build|add|info: searchable galleries of labelled embeddings, tied to the
// model file that made them (its SHA-256).
#include <fmt/format.h>
#include <torch/torch.h>

#include <iostream>

#include "commands.h"
#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/eval/session.h"
#include "finch/gallery/gallery.h"
#include "finch/train/distributed.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct GalleryArgs {
  std::string model, gallery, out;
  ImageSourceArgs source;
  bool json = false;
  int threads = 0;
};

nlohmann::json summary(const gallery::Gallery& g, const std::string& path) {
  nlohmann::json per_class = nlohmann::json::object();
  auto counts = g.counts().accessor<int64_t, 1>();
  for (size_t c = 0; c < g.classes().size(); ++c) per_class[g.classes()[c]] = counts[c];
  return {{"gallery", path},
          {"items", g.size()},
          {"classes", g.classes().size()},
          {"dim", g.dim()},
          {"model_sha256", g.model_sha256()},
          {"per_class", per_class}};
}

void print_summary(const gallery::Gallery& g, const std::string& path, size_t added,
                   size_t unreadable, bool json) {
  if (json) {
    auto j = summary(g, path);
    j["added"] = added;
    j["unreadable"] = unreadable;
    std::cout << j.dump() << std::endl;
    return;
  }
  fmt::print("{}: {} items of {} classes ({}-d), model {}...{}\n", path, g.size(),
             g.classes().size(), g.dim(), g.model_sha256().substr(0, 12),
             added ? fmt::format("; added {}", added) : "");
  if (unreadable) fmt::print("{} images could not be read (listed above)\n", unreadable);
}

// False on the ranks other than 0 of a torchrun job: they helped embed; rank 0 writes.
bool add_items(gallery::Gallery& g, eval::InferenceSession& session, const GalleryArgs& args,
               size_t& added, size_t& unreadable) {
  const auto images = embed_image_source(session, args.source, args.json);
  if (train::DistEnv::from_environment().rank != 0) return false;
  report_embed_errors(images);
  if (images.embeddings.size(0) == 0)
    throw Error("no image could be embedded: the gallery is unchanged");
  g.add(images);
  added = static_cast<size_t>(images.embeddings.size(0));
  unreadable = images.errors.size();
  return true;
}

void build(const GalleryArgs& args) {
  torch::set_num_threads(choose_threads(args.threads));
  eval::InferenceSession session(args.model);
  gallery::Gallery g(session);
  size_t added = 0, unreadable = 0;
  if (!add_items(g, session, args, added, unreadable)) return;
  g.save(args.out);
  print_summary(g, args.out, added, unreadable, args.json);
}

void add(const GalleryArgs& args) {
  torch::set_num_threads(choose_threads(args.threads));
  gallery::Gallery g = gallery::Gallery::load(args.gallery);
  eval::InferenceSession session(args.model);
  g.check_model(session);
  size_t added = 0, unreadable = 0;
  if (!add_items(g, session, args, added, unreadable)) return;
  g.save(args.gallery);
  print_summary(g, args.gallery, added, unreadable, args.json);
}

void info(const GalleryArgs& args) {
  const gallery::Gallery g = gallery::Gallery::load(args.gallery);
  if (args.json) {
    std::cout << summary(g, args.gallery).dump() << std::endl;
    return;
  }
  print_summary(g, args.gallery, 0, 0, false);
  auto counts = g.counts().accessor<int64_t, 1>();
  for (size_t c = 0; c < g.classes().size(); ++c)
    fmt::print("  {:6d}  {}\n", counts[c], g.classes()[c]);
}

}  // namespace

void add_gallery_command(CLI::App& app) {
  auto args = std::make_shared<GalleryArgs>();
  CLI::App* gallery =
      app.add_subcommand("gallery",
                         "Build and grow searchable galleries of labelled embeddings (new classes "
                         "without retraining)");
  gallery->require_subcommand(1);

  CLI::App* b = gallery->add_subcommand(
      "build", "Embed labelled images (a dataset split or class subfolders) into a new gallery");
  add_model_option(*b, args->model);
  add_image_source_options(*b, args->source, /*class_folders=*/true, /*positional=*/false);
  b->add_option("--out,-o", args->out, "Gallery file to write (.safetensors)")->required();
  b->add_flag("--json", args->json, "Print one JSON summary");
  add_threads_option(*b, args->threads);
  b->callback([args] { build(*args); });

  CLI::App* a = gallery->add_subcommand(
      "add", "Add labelled images to a gallery (new class names become new classes)");
  a->add_option("gallery", args->gallery, "Gallery file")->required()->check(CLI::ExistingFile);
  add_model_option(*a, args->model);
  add_image_source_options(*a, args->source, /*class_folders=*/true, /*positional=*/false);
  a->add_flag("--json", args->json, "Print one JSON summary");
  add_threads_option(*a, args->threads);
  a->callback([args] { add(*args); });

  CLI::App* i = gallery->add_subcommand("info", "Items per class, size and model of a gallery");
  i->add_option("gallery", args->gallery, "Gallery file")->required()->check(CLI::ExistingFile);
  i->add_flag("--json", args->json, "Print one JSON object");
  i->callback([args] { info(*args); });
}

}  // namespace finch::cli
