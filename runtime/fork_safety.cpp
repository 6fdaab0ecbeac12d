// patchcall — atfork handlers: prepare (parent, before fork), parent, child.
//
// On the way into the child nothing is copied: prepare marks every arena shared (each
// process copies its code at its first write after the fork, code_arena_fork.cpp) unless a
// code reservation is outstanding, which makes prepare copy and the child adopt the copy.
#include "fork_safety.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <ctime>
#include <deque>
#include <mutex>
#include <new>
#include <string>
#include <vector>

#include "fork_locks.h"
#include "fork_reset.h"
#include "format.h"
#include "observe/gdb_jit.h"
#include "reclaimer.h"
#include "aot/static_registry.h"
#include "runtime_impl.h"
#include "test_hooks.h"

namespace patchcall::detail {
namespace {

// The fork page (fork_locks.h): one MADV_WIPEONFORK page, mapped with the handlers'
// registration, holding the owner mark, the runtimes' list lock and kForkPageSlots runtimes'
// ForkLocks. A child made by fork() or clone() finds it zero-filled.
// The process-wide locks prepare holds until the parent/child handler: the runtimes' list and
// processLock's (fork_safety.h).
struct ProcessLocks {
  std::mutex runtimes, gdbDescriptors, staticRegistry;
};
struct ForkPageHeader {
  std::atomic<uint8_t> ownerMark{0};  // see ownerMarkSet (fork_safety.h)
  ProcessLocks locks;
};
constexpr size_t kForkPageSize = 4096;
constexpr size_t kFirstSlot =
    (sizeof(ForkPageHeader) + alignof(ForkLocks) - 1) / alignof(ForkLocks) * alignof(ForkLocks);
constexpr size_t kForkPageSlots = (kForkPageSize - kFirstSlot) / sizeof(ForkLocks);
static_assert(kForkPageSlots >= 8 && kForkPageSlots <= 32);  // gSlotsTaken's bits

ForkPageHeader* gForkPage = nullptr;     // set once, before the handlers are registered
ProcessLocks gFallbackLocks;             // without a fork page
uint32_t gSlotsTaken = 0;                // bit i: slot i is a live runtime's (runtimesMutex())
std::vector<Runtime::Impl*> gRuntimes;   // live runtimes, in creation order
std::once_flag gAtforkOnce;
bool gForkPageWiped = false;             // MADV_WIPEONFORK took: the page's owner mark means something

// Without registering the handlers: they run only after the page was decided.
PATCHCALL_FORK_PATH ProcessLocks& processLocks() noexcept { return gForkPage != nullptr ? gForkPage->locks : gFallbackLocks; }
PATCHCALL_FORK_PATH std::mutex& runtimesMutex() noexcept { return processLocks().runtimes; }
PATCHCALL_FORK_PATH std::mutex& lockOnForkPage(ProcessLock which) noexcept {
  return which == ProcessLock::kGdbDescriptors ? processLocks().gdbDescriptors : processLocks().staticRegistry;
}

ForkLocks* slot(size_t i) noexcept {
  return reinterpret_cast<ForkLocks*>(reinterpret_cast<uint8_t*>(gForkPage) + kFirstSlot + i * sizeof(ForkLocks));
}

// Maps the fork page once. Without MADV_WIPEONFORK (Linux < 4.14) the page still holds the
// locks (copied at fork like any page) but no owner mark: getpid() decides.
void createForkPage() noexcept {
  void* page = mmap(nullptr, kForkPageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return;
  gForkPageWiped = madvise(page, kForkPageSize, MADV_WIPEONFORK) == 0;
  gForkPage = new (page) ForkPageHeader();
  if (gForkPageWiped) gForkPage->ownerMark.store(1, std::memory_order_relaxed);
}

// Takes every runtime's reclaimer pass lock, or none: a pass in flight runs user callbacks,
// which may call any runtime (whose locks prepare takes next) or create and destroy runtimes
// (which takes the runtimes' list prepare holds), so waiting for one here could deadlock.
PATCHCALL_FORK_PATH bool tryLockEveryPass() noexcept {
  for (size_t i = 0; i < gRuntimes.size(); ++i) {
    if (gRuntimes[i]->reclaimer->tryLockPassForFork()) continue;
    while (i-- > 0) gRuntimes[i]->reclaimer->unlockPassForFork();
    return false;
  }
  return true;
}

// Quiescent in every domain before waiting for any lock: a grace period in flight (and the
// reclaimer pass that waits for it) may wait for this thread.
PATCHCALL_FORK_PATH void goOfflineEverywhere() noexcept {
  ThreadRecord* self = currentThread();
  for (Runtime::Impl* r : gRuntimes) {
    ForkState& p = r->forkState;
    storeIfDifferent(p.wentOffline, self != nullptr && self->domain == r->quiescence.get() && self->ctr.load() != 0 &&
                                        r->quiescence->offline(self).isOk());
  }
}

PATCHCALL_FORK_PATH void comeBackOnline() noexcept {
  for (Runtime::Impl* r : gRuntimes) {
    if (r->forkState.wentOffline) (void)r->quiescence->online(currentThread());
  }
}

// Between attempts of prepare, holding no lock: yields first (a pass is usually short), then
// sleeps up to 1 ms.
void backOff(int attempt) noexcept {
  if (attempt < 8) {
    sched_yield();
    return;
  }
  timespec pause{0, std::min<long>(1000000, 10000L << std::min(attempt - 8, 7))};
  nanosleep(&pause, nullptr);
}

// The handlers run on the forking thread with runtimesMutex() held from prepare to the end,
// so they pass per-runtime state through Impl::forkState.
// ForkState's fields are stored only where they change (fork_reset.h): the page they share
// with the rest of the runtime is write-protected again by every fork.
PATCHCALL_FORK_PATH void prepare() noexcept {
  // A pass in flight is waited out without holding anything it may need: every attempt takes
  // the process-wide locks, goes offline and tries every pass lock; a failed one undoes all
  // of it. Unbounded, as fork() has no deadline: a callback that never returns holds it up.
  for (int attempt = 0;; ++attempt) {
    lockOnForkPage(ProcessLock::kStaticRegistry).lock();  // first: an AOT batch never waits for a runtime's lock
    runtimesMutex().lock();
    goOfflineEverywhere();
    if (tryLockEveryPass()) break;
    comeBackOnline();  // while the list is held: a runtime may be destroyed before the next try
    runtimesMutex().unlock();
    lockOnForkPage(ProcessLock::kStaticRegistry).unlock();
    backOff(attempt);
  }
  for (Runtime::Impl* r : gRuntimes) {
    Runtime::Impl& rt = *r;
    ForkState& p = rt.forkState;
    // Lock order as everywhere else: the reclaimer's pass (taken above), the text mutex, the
    // reservations, the arena, the reclaimer's queue (innermost: taken under the text mutex).
    storeIfDifferent(p.textHeldBefore, rt.textMutexHeldHere());
    if (!p.textHeldBefore) rt.textMutex.lock();
    rt.installer.reservationsMutex().lock();
    rt.arena->lockForFork();
    rt.reclaimer->lockQueueForFork();
    // Breakpoint rounds run only under a text mutex, so with every text mutex held no other
    // thread is inside one: the process-wide trap table holds no other thread's entries.
    TestHooks* hooks = testHooks();
    storeIfDifferent(p.copySkipped, hooks != nullptr && hooks->skipForkCopy.load());
    // Shared until first written (code_arena_fork.cpp), unless a reservation is outstanding
    // (its owner writes it under no lock) or this thread holds the text mutex (a fork from a
    // patch observer: the update it interrupts goes on writing in both processes without
    // asking for a copy). Then the child gets a copy made now.
    storeIfDifferent(p.copied, !p.copySkipped && (rt.installer.hasReservationsLocked() || p.textHeldBefore));
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
  lockOnForkPage(ProcessLock::kGdbDescriptors).lock();
}

PATCHCALL_FORK_PATH void unlockAfterFork(Runtime::Impl& rt, const ForkState& p) {
  rt.arena->unlockForFork();
  rt.installer.reservationsMutex().unlock();
  if (!p.textHeldBefore) rt.textMutex.unlock();
  rt.reclaimer->unlockForFork();
  if (p.wentOffline) (void)rt.quiescence->online(currentThread());
}

PATCHCALL_FORK_PATH void parent() noexcept {
  lockOnForkPage(ProcessLock::kGdbDescriptors).unlock();
  for (size_t i = gRuntimes.size(); i-- > 0;) {
    Runtime::Impl& rt = *gRuntimes[i];
    rt.arena->dropForkCopy();
    if (!rt.forkState.copy.isOk()) rt.forkState.copy = Status::ok();
    unlockAfterFork(rt, rt.forkState);
  }
  runtimesMutex().unlock();
  lockOnForkPage(ProcessLock::kStaticRegistry).unlock();
}

// The child's perf map and jitdump (perf keys both by pid) start with everything it inherited.
void reannounceCode(Runtime::Impl& rt, pid_t parent) {
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
  rt.observer.afterForkInChild(parent, live);
}

void diagnoseChildFailure(Runtime::Impl& rt) noexcept {
  rt.diagnose([&] { return "patchcall: fork: the child's runtime is unusable: " + rt.forkState.childFailure.message(); });
}

PATCHCALL_FORK_PATH void child() noexcept {
  // Held by this thread since prepare. A write first: a read of the wiped page would map the
  // zero page and the first write fault again to replace it. (Zero bytes already when wiped.)
  ProcessLocks& locks = processLocks();
  new (&locks.runtimes) std::mutex();
  resetAfterFork(locks.gdbDescriptors);
  resetAfterFork(locks.staticRegistry);
  // The process whose /proc/self/mem descriptors this one inherited open (ProcSelfMem). If it
  // has exited already, the child's parent is another process and they are left open.
  pid_t pid = getpid(), parentPid = getppid();
  for (Runtime::Impl* r : gRuntimes) {
    Runtime::Impl& rt = *r;
    ForkState& p = rt.forkState;
    Status s = !p.copied ? Status::ok() : p.copy.isOk() ? rt.arena->adoptForkCopy() : std::move(p.copy);
    if (!p.copy.isOk()) p.copy = Status::ok();
    if (p.copied && !s.isOk()) rt.arena->refuseWritesInChild(s);  // it maps the parent's code
    if (s.isOk() && !p.copySkipped) {
      // The parent's /proc/self/mem names the parent: foreign sites are patched here. Without
      // foreign sites the open waits for the first registration (a fork stays cheaper).
      s = rt.writer.afterForkInChild(/*needNow=*/!rt.foreign.empty(), parentPid);
    }
    rt.quiescence->afterForkInChild();
    rt.forkLocks->recreateInChild(p.textHeldBefore, rt.reclaimer->processingHere(), pid);
    // An emulator's translations came with the fork: those of bytes written but not yet synced
    // (an int3 fill of freed code) are stale. The copy-at-fork path's re-map dropped them.
    if (!p.copied && rt.writer.sync().method() == SyncMethod::kEmulatorRemap) (void)rt.arena->remapRx();
    rt.publication.afterForkInChild();
    if (!s.isOk()) {
      p.childFailure = std::move(s);  // every mutating call of this runtime refuses from now on
      p.failedAtThisFork = true;
    }
    if (TestHooks* hooks = testHooks(); hooks != nullptr && hooks->betweenForkChildRuntimes.load() != nullptr) {
      hooks->betweenForkChildRuntimes.load()();
    }
  }
  resetAfterFork(lifetimeMutex());  // thread records' lifetime lock (thread_scope.cpp)
  // Every runtime's ownerPid is this process (recreateInChild) and the kernel wiped the mark.
  if (gForkPageWiped) gForkPage->ownerMark.store(1, std::memory_order_release);
  aot::StaticRegistry::forkChild(parentPid);
  // User code (diagnostic sinks, observers) runs only from here, once every runtime and lock
  // is the child's, and no thread of the child's but this one runs yet.
  for (Runtime::Impl* r : gRuntimes) {
    Runtime::Impl& rt = *r;
    try {
      reannounceCode(rt, parentPid);
    } catch (...) {  // out of memory: the child's profile misses names, nothing else
    }
    if (rt.forkState.failedAtThisFork) {
      rt.forkState.failedAtThisFork = false;
      diagnoseChildFailure(rt);
    }
  }
  // Last: a reclaimer thread started here runs retire callbacks at once, which may call any
  // runtime.
  for (Runtime::Impl* r : gRuntimes) {
    Runtime::Impl& rt = *r;
    ForkState& p = rt.forkState;
    if (Status s = rt.reclaimer->afterForkInChild(/*startThread=*/p.childFailure.isOk()); !s.isOk()) {
      p.childFailure = std::move(s);
      diagnoseChildFailure(rt);
    }
    if (p.wentOffline) (void)rt.quiescence->online(currentThread());
  }
}

// The child handler's libc calls, made once here in the parent. A call's first use binds its
// PLT slot lazily: in the child that binding looks the name up in every loaded library (~15
// page faults, ~30 us here, on the child's way to running) and, made there, it never reaches
// the parent, so every child pays it again (BM_ForkChild's child_minflt: 38 -> 22).
void bindChildHandlerCalls() noexcept {
  (void)getpid();
  (void)getppid();
}

}  // namespace

Status ensureForkHandlers() {
  static int registered = -1;
  std::call_once(gAtforkOnce, [] {
    createForkPage();
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
  // (A runtime created in a child of a raw fork system call finds the mark wiped: getpid().)
  std::lock_guard<std::mutex> lock(runtimesMutex());
  gRuntimes.push_back(rt);
  return Status::ok();
}

PATCHCALL_FORK_PATH void ForkLocks::recreateInChild(bool textHeld, bool reclaimPassHeld, pid_t pid) noexcept {
  new (&text) FairMutex();
  new (&reservations) std::mutex();
  new (&arena) std::mutex();
  new (&reclaimPass) std::timed_mutex();
  new (&reclaimQueue) std::mutex();
  resetAfterFork(reclaimWake);  // zero already on the wiped page: libstdc++'s constructor is not run
  storeIfDifferent(reclaimThreadHere, false);
  if (textHeld) text.lock();  // a fork from a patch observer: the update goes on in both
  if (reclaimPassHeld) reclaimPass.lock();  // a fork from a retire callback
  ownerPid = pid;
}

ForkLocksPtr takeForkLocks() {
  (void)ensureForkHandlers();  // maps the fork page
  {
    std::lock_guard<std::mutex> lock(runtimesMutex());
    for (size_t i = 0; gForkPage != nullptr && i < kForkPageSlots; ++i) {
      if ((gSlotsTaken & (1u << i)) == 0) {
        gSlotsTaken |= 1u << i;
        return ForkLocksPtr(new (slot(i)) ForkLocks());
      }
    }
  }
  return ForkLocksPtr(new (std::nothrow) ForkLocks());
}

void GiveBackForkLocks::operator()(ForkLocks* l) const noexcept {
  if (l == nullptr) return;
  for (size_t i = 0; gForkPage != nullptr && i < kForkPageSlots; ++i) {
    if (l != slot(i)) continue;
    l->~ForkLocks();
    std::lock_guard<std::mutex> lock(runtimesMutex());
    gSlotsTaken &= ~(1u << i);
    return;
  }
  delete l;
}

std::mutex& processLock(ProcessLock which) noexcept {
  (void)ensureForkHandlers();  // maps the fork page (once; a failed registration is said elsewhere)
  return lockOnForkPage(which);
}

bool ownerMarkSet() noexcept {
  // gForkPage and gForkPageWiped are set once, before the first runtime exists.
  return gForkPageWiped && gForkPage->ownerMark.load(std::memory_order_acquire) != 0;
}

void untrackForFork(Runtime::Impl* rt) noexcept {
  std::lock_guard<std::mutex> lock(runtimesMutex());
  gRuntimes.erase(std::remove(gRuntimes.begin(), gRuntimes.end(), rt), gRuntimes.end());
}

}  // namespace patchcall::detail
