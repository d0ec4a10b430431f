// finch: fine-grained image recognition. `finch --help` lists the subcommands.
#include <cstdio>
#include <exception>

#include <c10/util/Exception.h>
#include <CLI/CLI.hpp>

#include "commands.h"
#include "finch/core/error.h"
#include "finch/core/version.h"

int main(int argc, char** argv) {
  CLI::App app{"finch: fine-grained image recognition (train, evaluate and predict)"};
  app.set_version_flag("--version", std::string("finch ") + finch::kVersion);
  app.require_subcommand(1);
  finch::cli::add_train_command(app);
  finch::cli::add_eval_command(app);
  finch::cli::add_predict_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const finch::Error& e) {
    std::fprintf(stderr, "finch: error: %s\n", e.what());
    return 1;
  } catch (const c10::Error& e) {
    std::fprintf(stderr, "finch: error: %s\n", e.what_without_backtrace());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "finch: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
