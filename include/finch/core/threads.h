#pragma once
// How many compute threads a command or a training rank uses, and how many it keeps using
// when other processes take CPU time.
#include <chrono>
#include <cstdint>

namespace finch {

/// CPUs this process may run on: its affinity mask, capped by a cgroup v2 CPU quota
/// (`cpu.max`, as in containers); std::thread::hardware_concurrency counts every CPU online.
int available_cpus();

/// Compute threads for `threads` = 0: the CPUs available to this process shared among the
/// ranks running on it (decoding small images is cheap); otherwise `threads`.
int choose_threads(int threads, int ranks_on_this_machine = 1);

/// Threads of OpenBLAS's own pthread pool, where LibTorch sends fp32 matrix products
/// (convolutions go to oneDNN on the OpenMP threads). After every call its threads spin for
/// ~0.1 s before they sleep, taking a core from the OpenMP threads of the next convolution:
/// ResNet-50 at batch 1 ran 22 instead of 34 img/s, with every forward after the classifier's
/// matrix product slowed 3x. Returns false (and changes nothing) without OpenBLAS, or when
/// the environment sets OPENBLAS_NUM_THREADS (the user's choice stands).
bool set_blas_threads(int threads);

/// Cumulative CPU time in clock ticks: the whole machine's (every CPU in /proc/stat: busy,
/// including stolen time, and total) and this process's (all its threads).
struct CpuTimes {
  uint64_t machine_busy = 0;
  uint64_t machine_total = 0;
  uint64_t self = 0;
  int machine_cpus = 0;
};
/// Zeros when /proc cannot be read (then the governor keeps its maximum).
CpuTimes read_cpu_times();

/// Keeps the intra-op thread count at what the CPU time left by other processes can run.
/// OpenMP threads meet at a barrier after every operator: with two threads on two cores and
/// another process busy on one of them, each barrier waits for the thread the scheduler
/// parked, and a training step slows down 3-5x instead of 2x. The governor samples CPU time
/// every `interval`; when other processes used enough of the machine that fewer threads
/// fit, twice in a row, it lowers the count, and it raises it again (up to `max_threads`)
/// once they are gone.
class ThreadGovernor {
 public:
  explicit ThreadGovernor(int max_threads,
                          std::chrono::milliseconds interval = std::chrono::seconds(2));
  /// Call between steps; returns the thread count to use from now on (cheap between samples).
  int update();
  int threads() const { return threads_; }
  /// How many changes so far (for the run's log).
  int changes() const { return changes_; }

  /// Threads that fit in the CPU time others left between two samples (pure, unit-tested):
  /// the machine's CPUs minus what other processes used, rounded down with a 0.2 CPU margin,
  /// in [1, max_threads]; `max_threads` when the samples say nothing.
  static int fitting_threads(const CpuTimes& before, const CpuTimes& after, int max_threads);

 private:
  int max_threads_;
  int threads_;
  int changes_ = 0;
  int pending_ = 0;  // a different count seen once; applied when seen again
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point last_;
  CpuTimes sample_;
};

}  // namespace finch
