#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <filesystem>

#include "commands.h"
#include "finch/core/config.h"
#include "finch/core/error.h"
#include "finch/core/interrupt.h"
#include "finch/train/distributed.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct TrainArgs {
  std::string config_file, out_dir, resume_dir;
  std::vector<std::string> overrides;
  int nproc = 1;
};

// `finch train --nproc N`: N local ranks on loopback with torchrun's environment, each this
// same command without --nproc. Returns the exit status for the shell: the first failing
// rank's, 130 when interrupted, else 0. torchrun is the documented launcher (restarts,
// several machines); this is the convenience for one machine.
int spawn_local_ranks(const TrainArgs& args) {
  std::vector<std::string> argv{"/proc/self/exe", "train"};
  if (!args.config_file.empty()) argv.insert(argv.end(), {"--config", args.config_file});
  if (!args.out_dir.empty()) argv.insert(argv.end(), {"--out", args.out_dir});
  if (!args.resume_dir.empty()) argv.insert(argv.end(), {"--resume", args.resume_dir});
  for (const auto& o : args.overrides) argv.insert(argv.end(), {"--set", o});
  const int port = train::free_loopback_port();
  fmt::print(stderr, "finch train --nproc {}: {} ranks on 127.0.0.1:{}\n", args.nproc, args.nproc,
             port);
  std::vector<pid_t> children;
  for (int rank = 0; rank < args.nproc; ++rank) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error("cannot start rank " + std::to_string(rank) + ": fork failed");
    if (pid == 0) {
      const std::string r = std::to_string(rank), w = std::to_string(args.nproc),
                        p = std::to_string(port);
      ::setenv("RANK", r.c_str(), 1);
      ::setenv("LOCAL_RANK", r.c_str(), 1);
      ::setenv("WORLD_SIZE", w.c_str(), 1);
      ::setenv("LOCAL_WORLD_SIZE", w.c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", p.c_str(), 1);
      std::vector<char*> c_argv;
      for (auto& a : argv) c_argv.push_back(a.data());
      c_argv.push_back(nullptr);
      ::execv(c_argv[0], c_argv.data());
      std::perror("finch train --nproc: exec");
      std::_Exit(127);
    }
    children.push_back(pid);
  }
  // Ctrl-C reaches every rank from the terminal; the ranks agree on a step and checkpoint.
  install_interrupt_handlers();
  int result = 0;
  for (size_t done = 0; done < children.size();) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    ++done;
    std::replace(children.begin(), children.end(), pid, pid_t{0});
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (code != 0 && result == 0) {
      result = code;
      // Interrupted ranks (130) agreed on a step and rank 0 is writing the checkpoint: let it.
      // A failed one would keep the others waiting until train.dist_timeout_s (e.g. while
      // joining): stop them now (a second SIGTERM ends a finch process at once).
      if (code != 130)
        for (pid_t other : children) {
          if (other == 0) continue;  // already reaped (its pid may belong to someone else now)
          ::kill(other, SIGTERM);
          ::kill(other, SIGTERM);
        }
    }
  }
  return result;
}

void run(const TrainArgs& args) {
  namespace fs = std::filesystem;
  Config config = Config::defaults();
  fs::path run_dir;
  const bool resume = !args.resume_dir.empty();
  if (resume) {
    if (!args.config_file.empty() || !args.out_dir.empty()) {
      throw Error("--resume takes the run folder only; the run's own config.yaml is used");
    }
    run_dir = args.resume_dir;
    if (!fs::exists(run_dir / "config.yaml")) {
      throw Error(run_dir.string() + " is not a finch run folder (no config.yaml)");
    }
    config = Config::load(run_dir / "config.yaml", args.overrides);
  } else {
    if (args.config_file.empty() || args.out_dir.empty()) {
      throw Error("train needs --config FILE.yaml and --out RUN_DIR (or --resume RUN_DIR)");
    }
    run_dir = args.out_dir;
    // torchrun restarted the job after a failure: run_training resumes from the checkpoint.
    const bool restarted = train::DistEnv::from_environment().restart_count > 0 &&
                           fs::exists(run_dir / "checkpoint" / "state.json");
    if (!restarted &&
        (fs::exists(run_dir / "checkpoint") || fs::exists(run_dir / "metrics.jsonl"))) {
      throw Error(run_dir.string() + " already holds a run; continue it with --resume " +
                  run_dir.string() + " or choose another --out");
    }
    config = Config::load(args.config_file, args.overrides);
  }
  if (args.nproc > 1) {
    if (train::DistEnv::from_environment().distributed())
      throw Error("--nproc starts its own ranks; under torchrun leave it out");
    if (const int code = spawn_local_ranks(args)) std::exit(code);
    return;
  }
  install_interrupt_handlers();
  auto summary = train::run_training(config, run_dir, resume);
  if (summary.interrupted) {
    std::exit(130);
  }
  if (train::DistEnv::from_environment().rank != 0) return;  // rank 0 reports for the job
  fmt::print(
      "trained {} epochs; best val top-1 {:.4f} at epoch {}\nbest model: {}\nlast model: {}\n",
      summary.epochs_completed, summary.best_val_acc, summary.best_epoch,
      summary.best_model.string(), summary.last_model.string());
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto args = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train a model from a YAML recipe into a run folder");
  cmd->add_option("--config,-c", args->config_file,
                  "YAML recipe (keys and defaults: configs/defaults.yaml)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out,-o", args->out_dir,
                  "Run folder to create (config, metrics, models, checkpoint)");
  cmd->add_option("--resume", args->resume_dir,
                  "Continue the run in this folder from its checkpoint")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--set", args->overrides,
                  "Override a config key: --set train.epochs=5 (repeatable)")
      ->allow_extra_args(false);
  cmd->add_option("--nproc", args->nproc,
                  "Train data-parallel on N local processes (loopback); for several machines "
                  "and restarts use torchrun --nproc_per_node N --no-python finch train ...")
      ->check(CLI::Range(1, 256));
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
