#pragma once
// How many compute threads a command or a training rank uses.

namespace finch {

/// Compute threads for `threads` = 0: the machine's cores shared among the ranks running on it
/// (decoding small images is cheap); otherwise `threads`.
int choose_threads(int threads, int ranks_on_this_machine = 1);

}  // namespace finch
