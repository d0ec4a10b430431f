#include "finch/core/threads.h"

#include <algorithm>
#include <thread>

namespace finch {

int choose_threads(int threads, int ranks_on_this_machine) {
  if (threads > 0) return threads;
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, ranks_on_this_machine));
}

}  // namespace finch
