#include "finch/core/interrupt.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace finch {

namespace {

std::atomic<int> g_signals{0};

extern "C" void on_signal(int signal_number) {
  if (g_signals.fetch_add(1) >= 1) {
    const char msg[] = "\nfinch: second interrupt, exiting without a checkpoint\n";
    (void)!::write(2, msg, sizeof(msg) - 1);
    ::_exit(128 + signal_number);
  }
  const char msg[] =
      "\nfinch: interrupt received; finishing the current step and checkpointing "
      "(press Ctrl-C again to exit immediately)\n";
  (void)!::write(2, msg, sizeof(msg) - 1);
}

}  // namespace

void install_interrupt_handlers() {
  struct sigaction action {};
  action.sa_handler = on_signal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

bool interrupt_requested() { return g_signals.load() > 0; }
void request_interrupt() { g_signals.store(1); }
void clear_interrupt() { g_signals.store(0); }

}  // namespace finch
