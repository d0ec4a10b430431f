// Train from a YAML recipe, with a progress callback, as `finch train` does.
//   train_recipe RECIPE.yaml RUN_DIR [key=value ...]   (e.g. train.epochs=2)
#include <finch/core/config.h>
#include <finch/core/error.h>
#include <finch/train/trainer.h>

#include <iostream>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::cerr << "usage: train_recipe RECIPE.yaml RUN_DIR [key=value ...]\n";
    return 2;
  }
  try {
    const finch::Config config =
        finch::Config::load(argv[1], std::vector<std::string>(argv + 3, argv + argc));
    finch::train::TrainHooks hooks;
    hooks.on_step = [](const finch::train::TrainState& state, finch::models::Classifier&) {
      if (state.global_step % 5 == 0)
        std::cout << "step " << state.global_step << " (epoch " << state.epoch + 1 << ")\n";
    };
    finch::train::Trainer trainer(config, argv[2], /*resume=*/false, hooks);
    const finch::train::TrainSummary summary = trainer.run();
    std::cout << "best validation top-1 " << summary.best_val_acc << " at epoch "
              << summary.best_epoch << ": " << summary.best_model.string() << "\n";
  } catch (const finch::Error& e) {
    std::cerr << "train_recipe: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
