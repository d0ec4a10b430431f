#pragma once
// Ctrl-C / SIGTERM handling for long work: the first signal only raises a flag that the
// training loop polls (it then checkpoints and returns); a second signal exits at once.
// The flag is the one piece of process-wide state: signals are process-wide by nature.
namespace finch {

/// Installs SIGINT and SIGTERM handlers (idempotent).
void install_interrupt_handlers();
/// True once SIGINT or SIGTERM has arrived (or request_interrupt() was called).
bool interrupt_requested();
/// Raises the flag programmatically (tests, embedding applications).
void request_interrupt();
/// Clears the flag.
void clear_interrupt();

}  // namespace finch
