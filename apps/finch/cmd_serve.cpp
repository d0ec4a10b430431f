// finch serve: the model over HTTP (docs/serve.md). Signals are handled on one thread:
// SIGINT / SIGTERM stop accepting and finish in-flight requests, SIGHUP reloads the model.
// The handlers only write the signal's number to a pipe (async-signal-safe, and it works
// whichever thread the kernel picks, including ones LibTorch started before us).
#include <fmt/format.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <iostream>
#include <thread>

#include "commands.h"
#include "finch/core/atomic_file.h"
#include "finch/core/error.h"
#include "finch/core/threads.h"
#include "finch/serve/server.h"
#include "finch/train/trainer.h"

namespace finch::cli {

namespace {

struct ServeArgs {
  serve::ServeOptions options;
  std::string token_file;
  int64_t max_delay_ms = 5, max_body_mb = 20;
  int threads = 0;
};

int signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  const unsigned char byte = static_cast<unsigned char>(sig);
  [[maybe_unused]] ssize_t n = write(signal_pipe[1], &byte, 1);
}

std::string read_token(const std::string& path) {
  std::string token = read_file(path);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
    token.pop_back();
  if (token.size() < 16)
    throw Error(path + ": the token must be at least 16 characters (e.g. `openssl rand -hex 16`)");
  return token;
}

void run(ServeArgs args) {
  torch::set_num_threads(choose_threads(args.threads));
  if (!args.token_file.empty()) args.options.token = read_token(args.token_file);
  args.options.batch.max_delay = std::chrono::milliseconds(args.max_delay_ms);
  args.options.max_body_bytes = args.max_body_mb << 20;
  serve::Server server(args.options);
  const int port = server.bind();
  std::cout << fmt::format("finch serve: {}\nlistening on http://{}:{}/ (Ctrl-C to stop)",
                           server.summary(), args.options.host, port)
            << std::endl;
  if (pipe(signal_pipe) != 0) throw Error("cannot create the signal pipe");
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) sigaction(s, &action, nullptr);
  std::thread watcher([&server] {
    while (true) {
      unsigned char byte = 0;
      const ssize_t n = read(signal_pipe[0], &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      const int sig = n == 1 ? byte : SIGUSR1;
      if (sig == SIGHUP) {
        const std::string error = server.reload();
        std::cerr << (error.empty() ? std::string("finch serve: model reloaded")
                                    : "finch serve: reload refused, the old model keeps "
                                      "serving: " +
                                          error)
                  << std::endl;
        continue;
      }
      if (sig != SIGUSR1) std::cerr << "finch serve: stopping (finishing in-flight requests)\n";
      server.stop();
      return;
    }
  });
  server.run();
  // run() also returns when listening fails; wake the watcher so it can end.
  on_signal(SIGUSR1);
  watcher.join();
  for (int s : {SIGINT, SIGTERM, SIGHUP}) signal(s, SIG_DFL);
  std::cout << "finch serve: stopped" << std::endl;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto args = std::make_shared<ServeArgs>();
  auto& o = args->options;
  CLI::App* cmd = app.add_subcommand(
      "serve", "Serve a model over HTTP: predict, explain, embed, search, a web page, metrics");
  cmd->add_option("--model,-m", o.model, "finch model file (.safetensors)")
      ->required()
      ->check(CLI::ExistingFile);
  cmd->add_option("--gallery,-g", o.gallery, "Gallery for /v1/search (finch gallery build)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--host", o.host, "Address to bind (other than loopback needs --token-file)")
      ->capture_default_str();
  add_count_option(*cmd, "--port", o.port, "TCP port (0: any free port, printed)", 0, 65535);
  add_count_option(*cmd, "--max-batch", o.batch.max_batch, "Images per model forward", 1, 4096);
  add_count_option(*cmd, "--max-delay-ms", args->max_delay_ms,
                   "Longest wait for a batch to fill after the first request", 0, 10000);
  add_count_option(*cmd, "--queue", o.batch.max_queued_images,
                   "Images waiting for the model before requests get 503", 1, 1 << 20);
  add_count_option(*cmd, "--http-threads", o.http_threads,
                   "Threads that read, decode and preprocess requests", 1, 1024);
  add_count_option(*cmd, "--max-body-mb", args->max_body_mb, "Largest request body (413 above)", 1,
                   4096);
  add_count_option(*cmd, "--max-pixels", o.max_pixels,
                   "Largest image, width x height, refused from its header before decoding", 1,
                   int64_t{1} << 40);
  add_count_option(*cmd, "--timeout-ms", o.timeout_ms,
                   "Socket read/write timeout and the longest wait for the model", 1, 3600000);
  cmd->add_option("--token-file", args->token_file,
                  "File holding a bearer token required on every request but /healthz, /readyz")
      ->check(CLI::ExistingFile);
  add_threads_option(*cmd, args->threads);
  add_dtype_option(*cmd, o.dtype);
  cmd->callback([args] { run(*args); });
}

}  // namespace finch::cli
