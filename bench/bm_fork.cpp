// patchcall benchmarks — what fork() costs a process that embeds patchcall.
//   BM_ForkChild/0      fork + child _exit + waitpid with no runtime of this benchmark alive
//                       (runtimes leaked by benchmarks that ran earlier are copied too: run
//                       with --benchmark_filter=Fork for a clean baseline)
//   BM_ForkChild/1      the same with a 256 MiB-arena runtime holding 10,000 sites alive: the
//                       handlers mark the arena shared (each process copies its used bytes at
//                       its first code write after the fork; BM_ForkFirstWrite);
//                       handlers_child_path_ns / handlers_parent_path_ns: patchcall's own
//                       handlers' time (HandlerClock)
//   BM_ForkChild/2      the same process as /1 forked by a raw SYS_fork: no atfork handler
//                       and none of glibc's own fork work runs (the child only calls _exit)
//   BM_ForkChild/3      the same process forked by glibc's _Fork(): glibc's fork without the
//                       atfork handlers (patchcall's and the clocks' HandlerClock registers
//                       around them), so /1 - /3 is what the handlers add to a fork of this
//                       process, together with glibc's own work fork() does and _Fork() not
//   BM_ArenaCopy        the copy alone (memfd_create, ftruncate, pwrite of the same byte count,
//                       close: the pages are freed at close as they are at the child's exit)
//   BM_ForkFirstWrite   where the copy went: after each fork (the child exits at once), the
//                       parent's first update of a key with 100 sites (it copies the used
//                       bytes and maps the copy: first_update_ns) against its next one
//                       (next_update_ns); medians
//   BM_ForkPairs        interleaved (issue 12): rounds of blocks in rotating order, fork() with
//                       the handlers (/1), _Fork() (/3), raw SYS_fork (/2), the arena copy;
//                       each block's median is the round's figure. `handlers/copy` (the goal):
//                       patchcall's prepare + child handlers, clocked in each fork() by atfork
//                       handlers registered around them (HandlerClock), over the copy;
//                       `handlers_parent_path/copy` prepare + parent handler (info);
//                       `added/copy` = (/1 - /3 child start) / copy, which also holds glibc's
//                       own work for a multi-threaded process (malloc, stdio and thread-list
//                       locks and their reset in the child: its extra child_minflt), skipped by
//                       _Fork() and paid by any threaded process that forks (info);
//                       `added_vs_raw/copy` against the raw fork, `added_round_trip/copy` with
//                       round trips against _Fork() (info)
// The counter child_minflt: the child's minor page faults up to its first instruction (median;
// copy-on-write faults of the pages the handlers write and a fault per 64 KiB window of text
// first run, repeatable where times are not).
// The counter used_bytes is what each fork copies. Goal: patchcall's handlers on the child's
// way (handlers_child_path_ns) <= ArenaCopy. /1 - /0 also counts fork's own cost for the bigger
// process (the fixture's heap and mappings).
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "bench_support.h"
#include "fork_child_probe.h"
#include "pairs.h"

namespace {

struct ForkFixture {
  std::string error;
  patchcall::Runtime* rt = nullptr;
  size_t used = 0;
  std::vector<patchcall::Key> keys;  // 100 keys, 100 sites each
  ForkFixture() {
    // With the background reclaimer (the default): its thread waits on a condition variable
    // the child re-creates, and makes glibc's fork() take its multi-threaded path.
    rt = pcbench::newRuntime(&error, size_t{256} << 20, /*backgroundReclaimer=*/true);
    if (rt == nullptr) return;
    for (int k = 0; k < 100; ++k) {
      auto key = rt->createKey(reinterpret_cast<const void*>(&pcbench_add1));
      if (!key) {
        error = "createKey: " + key.status().toString();
        return;
      }
      keys.push_back(*key);
    }
    for (int b = 0; b < 10 && error.empty(); ++b) {
      pcbench::emitSiteBlob(*rt, keys.data(), keys.size(), 1000, patchcall::SiteForm::kDirect, &error);
    }
    used = rt->arenaInfo().used;
  }
};

using pcbench::monotonicNs;

// Clocks around patchcall's own atfork handlers. glibc runs prepare handlers in the reverse
// order of registration and parent/child handlers in that order, so a pair registered before
// patchcall's (the outer, from .preinit_array, before any constructor that could create a
// runtime) and one registered after (the inner, once the fixture's runtime exists) bracket
// them: prepare = outer - inner stamp, child and parent = inner - outer. The stamps live in a
// shared page: the child's first write of it is a fault (fork copies no page table entry of a
// shared mapping), taken by the outer child handler before its stamp.
struct HandlerClock {
  uint64_t innerPrepare, outerPrepare;
  uint64_t outerChild, innerChild;
  uint64_t outerParent, innerParent;
};
volatile HandlerClock* gClock = nullptr;
bool gInnerRegistered = false;  // both pairs bracket patchcall's handlers

void innerPrepare() { gClock->innerPrepare = monotonicNs(); }
void outerPrepare() { gClock->outerPrepare = monotonicNs(); }
void outerChild() {
  gClock->outerChild = 0;  // the page's fault, before the stamp
  gClock->outerChild = monotonicNs();
}
void innerChild() { gClock->innerChild = monotonicNs(); }
void outerParent() { gClock->outerParent = monotonicNs(); }
void innerParent() { gClock->innerParent = monotonicNs(); }

void registerOuterHandlers() {
  volatile uint64_t* page = pcbench::forkReportPage();
  if (page == nullptr) return;
  gClock = reinterpret_cast<volatile HandlerClock*>(page);
  if (pthread_atfork(&outerPrepare, &outerParent, &outerChild) != 0) gClock = nullptr;
}
[[gnu::used, gnu::section(".preinit_array")]] void (*const gRegisterOuterHandlers)() = &registerOuterHandlers;

// patchcall's handlers' time in the last fork() made with both pairs registered: prepare plus
// child (on the child's way to running) and prepare plus parent (on the parent's way back).
double lastHandlersChildPathNs() {
  return static_cast<double>((gClock->outerPrepare - gClock->innerPrepare) + (gClock->innerChild - gClock->outerChild));
}
double lastHandlersParentPathNs() {
  return static_cast<double>((gClock->outerPrepare - gClock->innerPrepare) +
                             (gClock->innerParent - gClock->outerParent));
}

ForkFixture& forkFixture() {
  static ForkFixture* f = [] {
    auto* fixture = new ForkFixture();  // leaked like every benchmark runtime
    // Its runtime registered patchcall's handlers: the inner pair goes after them.
    gInnerRegistered = gClock != nullptr && pthread_atfork(&innerPrepare, &innerParent, &innerChild) == 0;
    return fixture;
  }();
  return *f;
}

// How a benchmark forks: glibc's fork() (atfork handlers run), a raw system call, _Fork().
enum class ForkKind { kLibc, kRawSyscall, kNoHandlers };

pid_t forkBy(ForkKind kind) {
  switch (kind) {
    case ForkKind::kLibc:
      return fork();
    case ForkKind::kRawSyscall:
      return static_cast<pid_t>(syscall(SYS_fork));
    case ForkKind::kNoHandlers:
      return _Fork();  // glibc >= 2.34
  }
  return -1;
}

// Besides the round trip (real time), the counter child_start_ns: from the call of fork() to
// the child's first instruction after it, the median over the iterations. It holds the
// prepare handlers, the kernel's fork and the child handlers, and not the teardown at exit,
// so /1 - /3 is the handlers' time on the way into the child.
void forkAndWait(benchmark::State& state, ForkKind kind) {
  static volatile uint64_t* childStart = pcbench::forkReportPage();
  if (childStart == nullptr) return state.SkipWithError("mmap");
  std::vector<uint64_t> samples, faults, parentFaults;
  std::vector<double> childPath, parentPath;  // patchcall's handlers (fork() only)
  samples.reserve(4096);
  faults.reserve(4096);
  parentFaults.reserve(4096);
  for (auto _ : state) {
    rusage before{}, after{};
    getrusage(RUSAGE_SELF, &before);
    uint64_t t0 = monotonicNs();
    pid_t pid = forkBy(kind);
    if (pid > 0) getrusage(RUSAGE_SELF, &after);
    if (pid == 0) pcbench::reportChildStartAndExit(childStart);
    if (pid < 0) return state.SkipWithError("fork failed");
    int status = 0;
    waitpid(pid, &status, 0);
    samples.push_back(*childStart - t0);
    faults.push_back(static_cast<uint64_t>(childStart[1]));
    parentFaults.push_back(static_cast<uint64_t>(after.ru_minflt - before.ru_minflt));
    if (kind == ForkKind::kLibc && gInnerRegistered) {
      childPath.push_back(lastHandlersChildPathNs());
      parentPath.push_back(lastHandlersParentPathNs());
    }
  }
  if (!childPath.empty()) {
    state.counters["handlers_child_path_ns"] = pcbench::median(childPath);
    state.counters["handlers_parent_path_ns"] = pcbench::median(parentPath);
  }
  std::sort(faults.begin(), faults.end());
  if (!faults.empty()) state.counters["child_minflt"] = static_cast<double>(faults[faults.size() / 2]);
  std::sort(parentFaults.begin(), parentFaults.end());
  if (!parentFaults.empty()) state.counters["parent_minflt"] = static_cast<double>(parentFaults[parentFaults.size() / 2]);
  std::sort(samples.begin(), samples.end());
  if (!samples.empty()) state.counters["child_start_ns"] = static_cast<double>(samples[samples.size() / 2]);
}

void BM_ForkChild(benchmark::State& state) {
  if (state.range(0) != 0) {
    ForkFixture& f = forkFixture();
    if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
    state.counters["used_bytes"] = static_cast<double>(f.used);
  }
  forkAndWait(state, state.range(0) == 2 ? ForkKind::kRawSyscall
                     : state.range(0) == 3 ? ForkKind::kNoHandlers
                                           : ForkKind::kLibc);
}
BENCHMARK(BM_ForkChild)->Arg(0)->Arg(1)->Arg(2)->Arg(3)->UseRealTime();

bool copyArena(const ForkFixture& f) {
  const auto* src = static_cast<const uint8_t*>(f.rt->arenaInfo().rwBase);
  int fd = memfd_create("bench-copy", MFD_CLOEXEC);
  if (fd < 0 || ftruncate(fd, static_cast<off_t>(f.rt->arenaInfo().size)) != 0) return false;
  bool ok = pwrite(fd, src, f.used, 0) == static_cast<ssize_t>(f.used);
  close(fd);
  return ok;
}

void BM_ArenaCopy(benchmark::State& state) {
  ForkFixture& f = forkFixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  const auto* src = static_cast<const uint8_t*>(f.rt->arenaInfo().rwBase);
  for (auto _ : state) {
    int fd = memfd_create("bench-copy", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(f.rt->arenaInfo().size)) != 0) return state.SkipWithError("memfd");
    if (pwrite(fd, src, f.used, 0) != static_cast<ssize_t>(f.used)) return state.SkipWithError("pwrite");
    close(fd);
  }
  state.counters["used_bytes"] = static_cast<double>(f.used);
}
BENCHMARK(BM_ArenaCopy)->UseRealTime();

void BM_ForkFirstWrite(benchmark::State& state) {
  ForkFixture& f = forkFixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  std::vector<double> first, next;
  bool flip = false;
  auto update = [&] {
    flip = !flip;
    return f.rt->update(f.keys[0], reinterpret_cast<const void*>(flip ? &pcbench_add2 : &pcbench_add1)).isOk();
  };
  for (auto _ : state) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) return state.SkipWithError("fork failed");
    int status = 0;
    waitpid(pid, &status, 0);
    bool ok = true;
    first.push_back(pcbench::timeNs([&] { ok &= update(); }));
    next.push_back(pcbench::timeNs([&] { ok &= update(); }));
    if (!ok) return state.SkipWithError("update failed");
  }
  state.counters["first_update_ns"] = pcbench::median(first);
  state.counters["next_update_ns"] = pcbench::median(next);
  state.counters["copies"] = static_cast<double>(f.rt->stats().codeCopiesAfterFork);
  state.counters["used_bytes"] = static_cast<double>(f.used);
}
BENCHMARK(BM_ForkFirstWrite)->UseRealTime();

void BM_ForkPairs(benchmark::State& state) {
  ForkFixture& f = forkFixture();
  if (!f.error.empty()) return state.SkipWithError(f.error.c_str());
  static volatile uint64_t* childStart = pcbench::forkReportPage();
  if (childStart == nullptr) return state.SkipWithError("mmap");
  constexpr int kRounds = 30, kBlock = 9, kKinds = 4;
  // Blocks: the three ForkKinds in enum order, then the arena copy. Per round, block medians:
  // child start (fork call to the child's first instruction, as BM_ForkChild's child_start_ns)
  // and round trip per ForkKind; the copy.
  std::vector<double> start[3], trip[3], copy, handlers, handlersParent;
  bool failed = false;
  auto forkOnce = [&](ForkKind kind, double* childNs) {
    return pcbench::timeNs([&] {
      uint64_t t0 = monotonicNs();
      pid_t pid = forkBy(kind);
      if (pid == 0) pcbench::reportChildStartAndExit(childStart);
      if (pid < 0) {
        failed = true;
        return;
      }
      int status = 0;
      waitpid(pid, &status, 0);
      *childNs = static_cast<double>(*childStart - t0);
    });
  };
  for (auto _ : state) {
    for (int r = 0; r < kRounds && !failed; ++r) {
      for (int j = 0; j < kKinds; ++j) {
        int kind = (r % 2 == 0) ? (r + j) % kKinds : (r + kKinds - 1 - j) % kKinds;
        std::vector<double> trips, starts, inHandlers, inHandlersParent;
        for (int i = 0; i < kBlock; ++i) {
          double childNs = 0;
          trips.push_back(kind == 3 ? pcbench::timeNs([&] { failed |= !copyArena(f); })
                                    : forkOnce(static_cast<ForkKind>(kind), &childNs));
          starts.push_back(childNs);
          if (kind == static_cast<int>(ForkKind::kLibc)) {
            inHandlers.push_back(lastHandlersChildPathNs());
            inHandlersParent.push_back(lastHandlersParentPathNs());
          }
        }
        if (!inHandlers.empty()) {
          handlers.push_back(pcbench::median(inHandlers));
          handlersParent.push_back(pcbench::median(inHandlersParent));
        }
        if (kind == 3) {
          copy.push_back(pcbench::median(trips));
        } else {
          trip[kind].push_back(pcbench::median(trips));
          start[kind].push_back(pcbench::median(starts));
        }
      }
    }
  }
  if (failed) return state.SkipWithError("fork or the arena copy failed");
  // A clock pair that did not bracket patchcall's handlers would report ~0 and pass the goal.
  if (!gInnerRegistered || pcbench::median(handlers) < 500) {
    return state.SkipWithError("the atfork clocks do not bracket patchcall's handlers");
  }
  constexpr int kWith = static_cast<int>(ForkKind::kLibc), kRaw = static_cast<int>(ForkKind::kRawSyscall),
                kBare = static_cast<int>(ForkKind::kNoHandlers);
  std::vector<double> added, addedVsRaw, addedTrip;
  for (size_t i = 0; i < copy.size(); ++i) {
    added.push_back(start[kWith][i] - start[kBare][i]);
    addedVsRaw.push_back(start[kWith][i] - start[kRaw][i]);
    addedTrip.push_back(trip[kWith][i] - trip[kBare][i]);
  }
  state.counters["child_start_handlers_ns"] = pcbench::median(start[kWith]);
  state.counters["child_start_no_handlers_ns"] = pcbench::median(start[kBare]);
  state.counters["child_start_raw_ns"] = pcbench::median(start[kRaw]);
  state.counters["added_ns"] = pcbench::median(added);  // on the way into the child
  state.counters["added_vs_raw_ns"] = pcbench::median(addedVsRaw);
  state.counters["added_round_trip_ns"] = pcbench::median(addedTrip);
  state.counters["copy_ns"] = pcbench::median(copy);
  state.counters["used_bytes"] = static_cast<double>(f.used);
  state.counters["handlers_child_path_ns"] = pcbench::median(handlers);
  state.counters["handlers_parent_path_ns"] = pcbench::median(handlersParent);
  pcbench::reportPairRatios(state, "handlers/copy", handlers, copy);
  pcbench::reportPairRatios(state, "handlers_parent_path/copy", handlersParent, copy);
  pcbench::reportPairRatios(state, "added/copy", added, copy);
  pcbench::reportPairRatios(state, "added_vs_raw/copy", addedVsRaw, copy);
  pcbench::reportPairRatios(state, "added_round_trip/copy", addedTrip, copy);
}
BENCHMARK(BM_ForkPairs)->UseRealTime()->Iterations(1);

}  // namespace
