// finch: fine-grained image recognition. `finch --help` lists the subcommands.
#include <c10/util/Exception.h>
#include <malloc.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>

#include "commands.h"
#include "finch/core/error.h"
#include "finch/core/registry.h"
#include "finch/core/version.h"

namespace {

// Tensors of a few MB to hundreds of MB are freed and reallocated every step. With glibc's
// defaults they are mmap'ed and unmapped each time, and every reuse page-faults afresh, which
// is slow on these VMs: `finch eval` of Fashion-MNIST at batch 500 took 1.4 M page faults and
// 78 s instead of 78 k and 16 s; ResNet-50 inference at 448 x 8 ran 3x slower. So serve every
// block from the heap (no mmap at all: 32 MiB, glibc's largest threshold, is smaller than
// one 448 px activation) and do not trim freed memory back to the OS.
void keep_freed_tensor_memory() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

// `finch --help` ends with what is registered, from the registries themselves.
std::string registered_footer() {
  std::string out = "\nRegistered (`finch list KIND` describes each, with its options):\n";
  for (const auto& [kind, listing] : finch::registry_catalogue()) {
    std::string names;
    for (const auto& entry : listing()) names += (names.empty() ? "" : ", ") + entry.name;
    out += "  " + kind + ": " + names + "\n";
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  keep_freed_tensor_memory();
  CLI::App app{
      "finch: fine-grained image recognition (train, evaluate, predict, explain, report, import, "
      "embed, galleries and search, serve over HTTP, inspect data, benchmark)"};
  app.set_version_flag("--version", std::string("finch ") + finch::kVersion);
  app.require_subcommand(1);
  app.footer(registered_footer());
  finch::cli::add_train_command(app);
  finch::cli::add_tune_command(app);
  finch::cli::add_eval_command(app);
  finch::cli::add_predict_command(app);
  finch::cli::add_import_command(app);
  finch::cli::add_export_command(app);
  finch::cli::add_list_command(app);
  finch::cli::add_data_command(app);
  finch::cli::add_explain_command(app);
  finch::cli::add_localize_command(app);
  finch::cli::add_report_command(app);
  finch::cli::add_embed_command(app);
  finch::cli::add_gallery_command(app);
  finch::cli::add_search_command(app);
  finch::cli::add_serve_command(app);
  finch::cli::add_bench_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // Usage errors (unknown option, value out of range, missing file) exit 2 as in argparse
    // and GNU tools, whatever CLI11's own code; --help and --version exit 0.
    return app.exit(e) == 0 ? 0 : 2;
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
