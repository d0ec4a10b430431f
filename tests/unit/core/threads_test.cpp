// The thread count of `threads: 0`: CPUs the process may use, and the governor's arithmetic on
// CPU-time samples (no timing: samples are built by hand, as /proc would report them).
#include "finch/core/threads.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sched.h>

#include <cstdlib>
#include <string>
#include <thread>

namespace {

using finch::CpuTimes;
using finch::ThreadGovernor;

// A 2-CPU machine after `wall` ticks per CPU: `others` CPU-ticks used by other processes,
// `mine` by this one, `stolen` by the hypervisor (counted busy).
CpuTimes after(const CpuTimes& before, uint64_t wall, uint64_t others, uint64_t mine,
               uint64_t stolen = 0) {
  CpuTimes t = before;
  t.machine_total += 2 * wall;
  t.machine_busy += others + mine + stolen;
  t.self += mine;
  return t;
}

}  // namespace

TEST(Threads, AvailableCpusFollowTheAffinityMask) {
  cpu_set_t set;
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_LE(finch::available_cpus(), CPU_COUNT(&set));
  EXPECT_GE(finch::available_cpus(), 1);
  EXPECT_EQ(finch::choose_threads(3), 3);
  EXPECT_EQ(finch::choose_threads(0, 1000), 1);  // never below one thread
}

TEST(Threads, ReadsThisMachinesCpuTimes) {
  const CpuTimes t = finch::read_cpu_times();
  EXPECT_GE(t.machine_cpus, 1);
  EXPECT_GT(t.machine_total, 0u);
  EXPECT_LE(t.machine_busy, t.machine_total);
}

TEST(Threads, FittingThreadsLeaveTheCpuOthersUse) {
  CpuTimes start;
  start.machine_cpus = 2;
  start.machine_total = 1000000;
  start.machine_busy = 400000;
  start.self = 5000;
  // Quiet: finch alone on both CPUs.
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, after(start, 100, 0, 200), 2), 2);
  // Another process busy on one CPU: one thread fits, whatever finch itself used.
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, after(start, 100, 100, 100), 2), 1);
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, after(start, 100, 100, 20), 2), 1);
  // Stolen time (a busy VM host) counts as others'.
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, after(start, 100, 0, 100, 100), 2), 1);
  // A light neighbour (0.1 CPU) does not cost a thread; 0.3 CPU does.
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, after(start, 100, 10, 190), 2), 2);
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, after(start, 100, 30, 170), 2), 1);
  // Never below one, never above the maximum, and no information keeps the maximum.
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, after(start, 100, 200, 0), 2), 1);
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, after(start, 100, 0, 0), 1), 1);
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, start, 2), 2);
  EXPECT_EQ(ThreadGovernor::fitting_threads(start, CpuTimes{}, 2), 2);
}

// The governor itself, on this machine: it starts at its maximum and never leaves [1, max].
TEST(Threads, GovernorStaysWithinItsRange) {
  ThreadGovernor governor(2, std::chrono::milliseconds(0));
  EXPECT_EQ(governor.threads(), 2);
  for (int i = 0; i < 5; ++i) {
    const int n = governor.update();
    EXPECT_GE(n, 1);
    EXPECT_LE(n, 2);
  }
}

// OpenBLAS's pool is set through the library itself (LibTorch loads it; finch does not link
// it), and read back the same way; without OpenBLAS, or with OPENBLAS_NUM_THREADS set by the
// user, nothing is changed and false comes back.
TEST(Threads, BlasThreadsAreSetInTheLoadedOpenBlas) {
  void* openblas = dlopen("libopenblas.so.0", RTLD_LAZY | RTLD_NOLOAD);
  if (openblas == nullptr) {
    EXPECT_FALSE(finch::set_blas_threads(1));
    return;
  }
  using GetThreads = int (*)();
  auto get = reinterpret_cast<GetThreads>(dlsym(openblas, "openblas_get_num_threads"));
  ASSERT_NE(get, nullptr);
  const std::string user_choice =
      std::getenv("OPENBLAS_NUM_THREADS") ? std::getenv("OPENBLAS_NUM_THREADS") : "";
  ::setenv("OPENBLAS_NUM_THREADS", "3", 1);
  const int before = get();
  EXPECT_FALSE(finch::set_blas_threads(before == 1 ? 2 : 1)) << "the variable must win";
  EXPECT_EQ(get(), before);
  ::unsetenv("OPENBLAS_NUM_THREADS");
  ASSERT_TRUE(finch::set_blas_threads(1));
  EXPECT_EQ(get(), 1);
  ASSERT_TRUE(finch::set_blas_threads(2));
  EXPECT_EQ(get(), 2);
  ASSERT_TRUE(finch::set_blas_threads(0));  // at least one
  EXPECT_EQ(get(), 1);
  finch::set_blas_threads(before);
  if (!user_choice.empty()) ::setenv("OPENBLAS_NUM_THREADS", user_choice.c_str(), 1);
  dlclose(openblas);
}
