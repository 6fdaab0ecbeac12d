// patchcall — atfork handlers: prepare (parent, before fork), parent, child.
//
// On the way into the child nothing is copied: prepare marks every arena shared (each
// process copies its code at its first write after the fork, code_arena_fork.cpp) unless a
// code reservation is outstanding, which makes prepare copy and the child adopt the copy.
#include "fork_safety.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "format.h"
#include "observe/gdb_jit.h"
#include "reclaimer.h"
#include "aot/static_registry.h"
#include "runtime_impl.h"
#include "test_hooks.h"

namespace patchcall::detail {
namespace {

std::mutex gRuntimesMutex;                // held from prepare until the parent/child handler
std::vector<Runtime::Impl*> gRuntimes;    // live runtimes, in creation order
std::once_flag gAtforkOnce;
std::atomic<std::atomic<uint8_t>*> gOwnerMark{nullptr};  // see ownerMarkSet (fork_safety.h)

// Maps the mark's page once (under gRuntimesMutex); leaves it null if the kernel has no
// MADV_WIPEONFORK.
void createOwnerMark() noexcept {
  if (gOwnerMark.load(std::memory_order_relaxed) != nullptr) return;
  void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return;
  if (madvise(page, 4096, MADV_WIPEONFORK) != 0) {
    munmap(page, 4096);
    return;
  }
  auto* mark = new (page) std::atomic<uint8_t>(1);
  gOwnerMark.store(mark, std::memory_order_release);
}

// The handlers run on the forking thread with gRuntimesMutex held from prepare to the end,
// so they pass per-runtime state through Impl::forkState.
void prepare() noexcept {
  aot::StaticRegistry::forkPrepare();  // first: an AOT batch never waits for a runtime's lock
  gRuntimesMutex.lock();
  // A grace period in flight (and the reclaimer pass that waits for it) may wait for this
  // thread: be quiescent in every domain before waiting for any lock.
  ThreadRecord* self = currentThread();
  for (Runtime::Impl* r : gRuntimes) {
    ForkState& p = r->forkState;
    p.wentOffline = self != nullptr && self->domain == r->quiescence.get() && self->ctr.load() != 0 &&
                    r->quiescence->offline(self).isOk();
  }
  for (Runtime::Impl* r : gRuntimes) {
    Runtime::Impl& rt = *r;
    ForkState& p = rt.forkState;
    // Lock order as everywhere else: the reclaimer's pass, the text mutex, the reservations,
    // the arena, the reclaimer's queue (innermost: taken under the text mutex).
    rt.reclaimer->lockPassForFork();
    p.textHeldBefore = rt.textMutexHeldHere();
    if (!p.textHeldBefore) rt.textMutex.lock();
    rt.installer.reservationsMutex().lock();
    rt.arena->lockForFork();
    rt.reclaimer->lockQueueForFork();
    // Breakpoint rounds run only under a text mutex, so with every text mutex held no other
    // thread is inside one: the process-wide trap table holds no other thread's entries.
    TestHooks* hooks = testHooks();
    p.copySkipped = hooks != nullptr && hooks->skipForkCopy.load();
    // Shared until first written (code_arena_fork.cpp), unless a reservation is outstanding
    // (its owner writes it under no lock) or this thread holds the text mutex (a fork from a
    // patch observer: the update it interrupts goes on writing in both processes without
    // asking for a copy). Then the child gets a copy made now.
    p.copied = !p.copySkipped && (rt.installer.hasReservationsLocked() || p.textHeldBefore);
    if (p.copySkipped) continue;
    if (!p.copied) {
      rt.arena->markSharedForFork();
      continue;
    }
    try {
      p.copy = rt.arena->prepareForkCopy();
    } catch (const std::bad_alloc&) {
      p.copy = Status(Error::kOutOfMemory, std::string());
    }
  }
  // gdb's descriptor list (process-wide) is changed under the text mutexes: last in the order.
  observe::GdbJit::forkPrepare();
}

void unlockAfterFork(Runtime::Impl& rt, const ForkState& p) {
  rt.arena->unlockForFork();
  rt.installer.reservationsMutex().unlock();
  if (!p.textHeldBefore) rt.textMutex.unlock();
  rt.reclaimer->unlockForFork();
  if (p.wentOffline) (void)rt.quiescence->online(currentThread());
}

void parent() noexcept {
  observe::GdbJit::forkParent();
  for (size_t i = gRuntimes.size(); i-- > 0;) {
    Runtime::Impl& rt = *gRuntimes[i];
    rt.arena->dropForkCopy();
    rt.forkState.copy = Status::ok();
    unlockAfterFork(rt, rt.forkState);
  }
  gRuntimesMutex.unlock();
  aot::StaticRegistry::forkParent();
}

// The child's perf map and jitdump (perf keys both by pid) start with everything it inherited.
void reannounceCode(Runtime::Impl& rt) {
  if (!rt.observer.filesOpened()) return;
  std::deque<std::string> names;  // stable addresses for the events' string_views
  std::vector<observe::CodeEvent> live;
  for (const observe::CodeEvent& e : runtimePageCode(rt.page)) live.push_back(e);
  for (uint32_t id = 1; id < rt.registry.keyCount(); ++id) {
    const KeyRecord& k = rt.registry.keyAt(id);
    if (!k.live) continue;
    const MiString& name = rt.registry.keyName(id);
    names.push_back("trampoline:" + (name.empty() ? "key" + std::to_string(id) : std::string(name)));
    uintptr_t slot = arch::trampolineCell(k.trampoline);
    live.push_back({k.trampoline, arch::kTrampolineSlotSize - (k.trampoline - slot), names.back(),
                    reinterpret_cast<const uint8_t*>(k.trampoline)});
  }
  rt.veneers.forEachLive([&](uintptr_t v, uintptr_t target) {
    names.push_back("veneer:" + hex(target));
    live.push_back({v, arch::kVeneerSize, names.back(), reinterpret_cast<const uint8_t*>(v)});
  });
  for (uint32_t id = 1; id < rt.registry.blobCount(); ++id) {
    const BlobRecord& b = rt.registry.blob(id);
    if (b.state != BlobState::kFreed) forEachCodeEvent(b, [&](const observe::CodeEvent& e) { live.push_back(e); });
  }
  rt.observer.afterForkInChild(live);
}

void child() noexcept {
  observe::GdbJit::forkChild();
  pid_t pid = getpid();
  for (Runtime::Impl* r : gRuntimes) {
    Runtime::Impl& rt = *r;
    ForkState& p = rt.forkState;
    p.ownerPid = pid;
    Status s = !p.copied ? Status::ok() : p.copy.isOk() ? rt.arena->adoptForkCopy() : std::move(p.copy);
    p.copy = Status::ok();
    if (s.isOk() && !p.copySkipped) {
      // The parent's /proc/self/mem names the parent: foreign sites are patched here. Without
      // foreign sites the open waits for the first registration (a fork stays cheaper).
      s = rt.writer.afterForkInChild(/*needNow=*/!rt.foreign.empty());
    }
    try {
      reannounceCode(rt);  // the text mutex is still held
    } catch (...) {  // out of memory: the child's profile misses names, nothing else
    }
    rt.quiescence->afterForkInChild();
    rt.arena->resetLockAfterFork();
    // An emulator's translations came with the fork: those of bytes written but not yet synced
    // (an int3 fill of freed code) are stale. The copy-at-fork path's re-map dropped them.
    if (!p.copied && rt.writer.sync().method() == SyncMethod::kEmulatorRemap) (void)rt.arena->remapRx();
    rt.publication.afterForkInChild();
    new (&rt.installer.reservationsMutex()) std::mutex();
    rt.textMutex.forgetOtherWaitersAfterFork();  // held: by prepare or from before
    if (!p.textHeldBefore) rt.textMutex.unlock();
    Status reclaimer = rt.reclaimer->afterForkInChild(/*startThread=*/s.isOk());
    if (s.isOk()) s = reclaimer;
    if (!s.isOk()) {
      p.childFailure = s;  // every mutating call of this runtime refuses from now on
      rt.diagnose([&] { return "patchcall: fork: the child's runtime is unusable: " + s.message(); });
    }
    if (p.wentOffline) (void)rt.quiescence->online(currentThread());
  }
  new (&lifetimeMutex()) std::mutex();  // thread records' lifetime lock (thread_scope.cpp)
  new (&gRuntimesMutex) std::mutex();
  // Every runtime's ownerPid is this process again (the kernel wiped the mark in the child).
  if (std::atomic<uint8_t>* mark = gOwnerMark.load(std::memory_order_relaxed)) mark->store(1, std::memory_order_release);
  aot::StaticRegistry::forkChild();
}

}  // namespace

// The child handler's libc calls, made once here in the parent. A call's first use binds its
// PLT slot lazily: in the child that binding looks the name up in every loaded library (~15
// page faults, ~30 us here, on the child's way to running) and, made there, it never reaches
// the parent, so every child pays it again (BM_ForkChild's child_minflt: 38 -> 21).
void bindChildHandlerCalls() noexcept {
  (void)getpid();
  (void)close(-1);  // EBADF: nothing is closed
}

Status ensureForkHandlers() {
  static int registered = -1;
  std::call_once(gAtforkOnce, [] {
    bindChildHandlerCalls();
    registered = pthread_atfork(&prepare, &parent, &child);
  });
  if (registered != 0) {
    return Status(Error::kOutOfMemory, "pthread_atfork failed (" + std::to_string(registered) +
                                           "): patchcall cannot make fork() safe in this process");
  }
  return Status::ok();
}

Status trackForFork(Runtime::Impl* rt) {
  if (Status s = ensureForkHandlers(); !s) return s;
  std::lock_guard<std::mutex> lock(gRuntimesMutex);
  // Created where no runtime exists yet: then every runtime of this process is owned here.
  // (A runtime created in a child of a raw fork system call finds the mark wiped: getpid().)
  if (gRuntimes.empty() && gOwnerMark.load(std::memory_order_relaxed) == nullptr) createOwnerMark();
  gRuntimes.push_back(rt);
  return Status::ok();
}

bool ownerMarkSet() noexcept {
  std::atomic<uint8_t>* mark = gOwnerMark.load(std::memory_order_acquire);
  return mark != nullptr && mark->load(std::memory_order_acquire) != 0;
}

void untrackForFork(Runtime::Impl* rt) noexcept {
  std::lock_guard<std::mutex> lock(gRuntimesMutex);
  gRuntimes.erase(std::remove(gRuntimes.begin(), gRuntimes.end(), rt), gRuntimes.end());
}

}  // namespace patchcall::detail
