// The `finch` command: starts the real command line, finch-core (next to this file in the
// build tree, in ../libexec/finch/ when installed), with glibc's malloc asked to back its
// memory with transparent huge pages (GLIBC_TUNABLES=glibc.malloc.hugetlb=1).
//
// Why a separate process image: glibc reads its tunables once, before any of finch's code
// runs, so finch-core cannot turn this on for itself. Why at all: on the VMs finch is measured
// on a 4 KiB page fault costs ~5 us, and finch-core serves every tensor from the heap
// (apps/finch/main.cpp). `finch predict` of a ResNet-50 took 95 k page faults and 2.0 s
// from start to answer; with huge pages 8 k and 1.3 s (docs/benchmarks.md, "Cold start").
// Training and inference throughput and peak RSS were unchanged.
//
// It links nothing but the C library and only replaces itself (execv): arguments, exit
// status, signals and the process id are finch-core's own. FINCH_HUGEPAGES=0, or any
// glibc.malloc.hugetlb already in GLIBC_TUNABLES, leaves the environment as it is.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <initializer_list>

namespace {

void ask_for_huge_pages() {
  const char* opt_out = getenv("FINCH_HUGEPAGES");
  if (opt_out != nullptr && strcmp(opt_out, "0") == 0) return;
  const char* tunables = getenv("GLIBC_TUNABLES");
  if (tunables == nullptr || tunables[0] == '\0') {
    setenv("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1", 1);
    return;
  }
  if (strstr(tunables, "glibc.malloc.hugetlb") != nullptr) return;
  char joined[4096];
  if (snprintf(joined, sizeof joined, "%s:glibc.malloc.hugetlb=1", tunables) <
      static_cast<int>(sizeof joined))
    setenv("GLIBC_TUNABLES", joined, 1);
}

}  // namespace

int main(int argc, char** argv) {
  (void)argc;
  char self[PATH_MAX];
  const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
  if (length <= 0) {
    perror("finch: cannot read /proc/self/exe");
    return 127;
  }
  self[length] = '\0';
  char* slash = strrchr(self, '/');
  if (slash != nullptr) *slash = '\0';

  ask_for_huge_pages();
  char core[PATH_MAX + 32];
  for (const char* relative : {"/finch-core", "/../libexec/finch/finch-core"}) {
    snprintf(core, sizeof core, "%s%s", self, relative);
    if (access(core, X_OK) == 0) {
      execv(core, argv);
      fprintf(stderr, "finch: cannot start %s: %s\n", core, strerror(errno));
      return 126;
    }
  }
  fprintf(stderr,
          "finch: finch-core is neither next to %s/finch nor in %s/../libexec/finch/; "
          "reinstall finch (cmake --install BUILD --prefix PREFIX)\n",
          self, self);
  return 127;
}
