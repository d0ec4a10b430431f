#include "finch/core/threads.h"

#include <dlfcn.h>
#include <sched.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

namespace finch {

namespace {

// cgroup v2's "QUOTA PERIOD" (or "max PERIOD"): CPUs the quota allows, 0 when unlimited.
int cgroup_cpu_limit() {
  std::ifstream in("/sys/fs/cgroup/cpu.max");
  std::string quota;
  double period = 0;
  if (!(in >> quota >> period) || quota == "max" || period <= 0) return 0;
  try {
    return std::max(1, static_cast<int>(std::ceil(std::stod(quota) / period)));
  } catch (const std::exception&) {
    return 0;
  }
}

}  // namespace

bool set_blas_threads(int threads) {
  // An explicit OPENBLAS_NUM_THREADS is the user's choice (OpenBLAS read it at load time).
  const char* chosen = std::getenv("OPENBLAS_NUM_THREADS");
  if (chosen != nullptr && *chosen != '\0') return false;
  // Looked up at run time: LibTorch may be linked against another BLAS, and only an already
  // loaded OpenBLAS matters (RTLD_NOLOAD), found also when finch itself was dlopen'ed (Python).
  void* openblas = dlopen("libopenblas.so.0", RTLD_LAZY | RTLD_NOLOAD);
  if (openblas == nullptr) return false;
  using SetThreads = void (*)(int);
  auto set = reinterpret_cast<SetThreads>(dlsym(openblas, "openblas_set_num_threads"));
  if (set != nullptr) set(std::max(1, threads));
  dlclose(openblas);  // drops only the reference NOLOAD took
  return set != nullptr;
}

int available_cpus() {
  int cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = std::max(1, CPU_COUNT(&set));
  const int quota = cgroup_cpu_limit();
  return quota > 0 ? std::min(cpus, quota) : cpus;
}

int choose_threads(int threads, int ranks_on_this_machine) {
  if (threads > 0) return threads;
  return std::max(1, available_cpus() / std::max(1, ranks_on_this_machine));
}

CpuTimes read_cpu_times() {
  CpuTimes t;
  std::ifstream stat("/proc/stat");
  std::string line;
  while (std::getline(stat, line)) {
    if (line.rfind("cpu", 0) != 0) break;
    if (line.rfind("cpu ", 0) == 0) {
      // user nice system idle iowait irq softirq steal (guest time is inside user).
      std::istringstream fields(line.substr(4));
      uint64_t v[8] = {};
      for (auto& x : v) fields >> x;
      const uint64_t idle = v[3] + v[4];
      t.machine_busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
      t.machine_total = t.machine_busy + idle;
    } else {
      ++t.machine_cpus;
    }
  }
  // /proc/self/stat: "pid (comm) state ..." then utime and stime are fields 14 and 15; comm
  // may hold spaces, so count from the closing parenthesis.
  std::ifstream self("/proc/self/stat");
  std::string all((std::istreambuf_iterator<char>(self)), std::istreambuf_iterator<char>());
  const size_t close = all.rfind(')');
  if (close != std::string::npos) {
    std::istringstream fields(all.substr(close + 2));
    std::string skip;
    for (int i = 3; i < 14 && fields >> skip; ++i) {
    }
    uint64_t utime = 0, stime = 0;
    if (fields >> utime >> stime) t.self = utime + stime;
  }
  return t;
}

int ThreadGovernor::fitting_threads(const CpuTimes& before, const CpuTimes& after,
                                    int max_threads) {
  max_threads = std::max(1, max_threads);
  if (after.machine_cpus <= 0 || after.machine_total <= before.machine_total ||
      after.machine_busy < before.machine_busy || after.self < before.self)
    return max_threads;
  const double total = static_cast<double>(after.machine_total - before.machine_total);
  const double busy = static_cast<double>(after.machine_busy - before.machine_busy);
  const double mine = static_cast<double>(after.self - before.self);
  const double others_cpus = std::max(0.0, busy - mine) / total * after.machine_cpus;
  const double free_cpus = after.machine_cpus - others_cpus;
  return std::clamp(static_cast<int>(std::floor(free_cpus + 0.2)), 1, max_threads);
}

ThreadGovernor::ThreadGovernor(int max_threads, std::chrono::milliseconds interval)
    : max_threads_(std::max(1, max_threads)),
      threads_(max_threads_),
      interval_(interval),
      last_(std::chrono::steady_clock::now()),
      sample_(read_cpu_times()) {}

int ThreadGovernor::update() {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_ < interval_) return threads_;
  const CpuTimes sample = read_cpu_times();
  const int fit = fitting_threads(sample_, sample, max_threads_);
  sample_ = sample;
  last_ = now;
  if (fit == threads_) {
    pending_ = 0;
  } else if (fit == pending_) {
    threads_ = fit;
    pending_ = 0;
    ++changes_;
  } else {
    pending_ = fit;
  }
  return threads_;
}

}  // namespace finch
