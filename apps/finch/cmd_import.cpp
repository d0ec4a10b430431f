#include <fmt/format.h>

#include "commands.h"
#include "finch/models/import.h"
#include "finch/models/model_file.h"
#include "finch/models/registry.h"

namespace finch::cli {

namespace {

struct ImportArgs {
  models::ImportOptions options;
  std::string out, classes;
};

void run(ImportArgs& args) {
  args.options.classes_file = args.classes;
  models::ImportedModel imported = models::import_classifier(args.options);
  models::save_model_file(args.out, imported.model.model, imported.model.info);
  const auto& info = imported.model.info;
  fmt::print(stderr, "{}\nwrote {}: {} with {} classes, input {} px, preprocessing {}\n",
             imported.report.summary(), args.out, args.options.arch, info.classes.size(),
             info.preprocess.input_size, info.preprocess.eval_transforms.dump());
  if (info.training.contains("converted"))
    fmt::print(stderr, "converted {}\n", info.training["converted"].get<std::string>());
  if (info.training.contains("classes_from"))
    fmt::print(stderr, "class names {} from {}\n", fmt::join(info.classes, ", "),
               info.training["classes_from"].get<std::string>());
}

}  // namespace

void add_import_command(CLI::App& app) {
  auto args = std::make_shared<ImportArgs>();
  CLI::App* cmd = app.add_subcommand(
      "import",
      "Turn pretrained classifier weights (torchvision, timm, GGUF, TF.js Keras) into a finch "
      "model file");
  cmd->add_option("--arch,-a", args->options.arch, "Backbone name, e.g. resnet50")
      ->required()
      ->check(CLI::IsMember(models::backbone_names()));
  cmd->add_option(
         "--weights,-w", args->options.weights,
         "State dict: .safetensors, .gguf, a .pth LibTorch can read, or a TF.js layers model's "
         "model.json (docs/pretrained.md)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--classes", args->classes,
                  "Class names, one per line, in output order (default: those in a GGUF file's "
                  "metadata, else class_0, class_1, ...)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--input-size", args->options.input_size,
                  "Crop side in pixels (default 224; 299 for inception_v3)")
      ->check(CLI::Range(int64_t{0}, int64_t{8192}));
  cmd->add_option("--mean", args->options.mean, "Normalisation mean R G B (default ImageNet's)")
      ->expected(3)
      ->delimiter(',');
  cmd->add_option("--std", args->options.std, "Normalisation std R G B (default ImageNet's)")
      ->expected(3)
      ->delimiter(',');
  cmd->add_option("--out,-o", args->out, "Model file to write (.safetensors)")->required();
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
