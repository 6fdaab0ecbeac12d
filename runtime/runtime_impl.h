// patchcall — Runtime::Impl: the objects behind the public Runtime handle, composed.
//
// Each concept is one object in its own file pair; Impl owns them, builds them in
// dependency order (each holds references to the ones above it, never below) and holds the
// text mutex that serializes them:
//
//   CodeArena      code_arena.h      the RX/RW views of the memfd, allocation
//   TextWriter     text_writer.h     every code write, /proc/self/mem, the cross-core sync
//   Publication    publication.h     which writes every core sees; shared (group) syncs
//   CodeObserver   code_observer.h   perf map, jitdump, gdb images, unwinder registration
//   Veneers        veneers.h         stubs for far targets and their life
//   Registry       registry.h        keys + trampolines, sites, blobs, target validation
//   ForeignSites   foreign_site.h    calls in code patchcall did not emit
//   Installer      code_install.h    reservations and committing code with its sites
//   Quiescence     quiescence.h      readers, grace periods, stack scans (QSBR)
//   Retargeter     retargeter.h      the update path
//   Reclaimer      reclaimer.h       retire queue, freeing blobs and veneers
// The trap table (trap_table.h) is process-wide: one SIGTRAP handler serves every runtime.
//
// Locking: `textMutex` guards the registry, the foreign sites, the veneers and every code
// write. Retire callbacks and grace-period waits never run under it.
#pragma once

#include <sys/types.h>

#include <array>
#include <memory>
#include <string>

#include "arch/arch.h"
#include "code_arena.h"
#include "code_install.h"
#include "code_observer.h"
#include "fair_mutex.h"
#include "foreign_site.h"
#include "fork_locks.h"
#include "patchcall/runtime.h"
#include "publication.h"
#include "quiescence.h"
#include "registry.h"
#include "retargeter.h"
#include "text_mutex.h"
#include "text_writer.h"
#include "veneers.h"

namespace patchcall {

namespace detail {

class Reclaimer;

// fork() bookkeeping (fork_safety.cpp).
struct ForkState {
  Status childFailure;  // set in a child whose copy could not be made: mutating calls refuse
  // Handed from the prepare handler to the parent/child handler (same thread, one fork).
  Status copy;
  bool wentOffline = false, textHeldBefore = false;
  bool copySkipped = false;  // test hook: the child writes the parent's code, as before fork support
  bool copied = false;       // the child adopts a copy made in prepare (else: shared; fork_safety.cpp)
  bool failedAtThisFork = false;  // child: childFailure set by this fork, not yet diagnosed
};

// The runtime page, the arena's first allocation: the safepoint stub and the two shared
// targets. The poll flag is not in it: it lives on the arena's private flag page
// (CodeArena::pollFlag), so a grace period never writes code pages.
struct RuntimePage {
  // Offsets in the page: the stub, then the two shared targets.
  static constexpr size_t kStubOffset = 64, kNoopOffset = 448, kReturnZeroOffset = 512;
  uintptr_t base = 0;
  uintptr_t pollFlag = 0;
  uintptr_t safepointStub = 0;
  uintptr_t noopTarget = 0, returnZeroTarget = 0;  // the only callable addresses of the page
  size_t safepointStubSize = 0;
  arch::StateSaveLayout stateSave;  // how the stub saves extended state (CPUID at create)
};

// The page's code as perf and jitdump name it (code_observer.h).
inline std::array<observe::CodeEvent, 3> runtimePageCode(const RuntimePage& p) {
  auto at = [](uintptr_t a) { return reinterpret_cast<const uint8_t*>(a); };
  return {observe::CodeEvent{p.safepointStub, p.safepointStubSize, kSafepointStubName, at(p.safepointStub)},
          observe::CodeEvent{p.noopTarget, arch::noopStub().size(), "patchcall_noop", at(p.noopTarget)},
          observe::CodeEvent{p.returnZeroTarget, arch::returnZeroStub().size(), "patchcall_return_zero", at(p.returnZeroTarget)}};
}

}  // namespace detail

struct Runtime::Impl {
  Impl(const Options& options, detail::ForkLocksPtr forkLocks, std::unique_ptr<detail::CodeArena> arena);
  ~Impl();
  // Maps the arena, sets up the sync, writes the runtime page, starts the reclaimer.
  static Result<std::unique_ptr<Impl>> create(Options options);

  const Options options;
  const detail::ForkLocksPtr forkLocks;  // first: every object below may hold one of them
  const std::unique_ptr<detail::CodeArena> arena;
  detail::TextWriter writer{*arena, options.patchObserver};
  detail::Publication publication{writer.sync()};
  detail::CodeObserver observer{options};
  detail::Veneers veneers{*arena, writer, observer, options.allowVeneers, options.freeVeneersOutsideArena};
  detail::Registry registry{options, *arena, writer, veneers, observer};
  detail::ForeignSites foreign{*arena, writer, registry};
  detail::Installer installer{*arena, writer, registry, veneers, observer, forkLocks->reservations};
  detail::RuntimePage page;
  std::unique_ptr<detail::Quiescence> quiescence;  // its readers poll the runtime page
  std::unique_ptr<detail::Retargeter> retargeter;
  std::unique_ptr<detail::Reclaimer> reclaimer;
  detail::ForkState forkState;
  detail::FairMutex& textMutex{forkLocks->text};

  // Re-entry from code that runs under the text mutex (a patch observer): mutating entry
  // points refuse with kReentrantUpdate; read-only ones read without relocking.
  bool textMutexHeldHere() const noexcept { return detail::tlsTextMutexOwner == this; }
  Status refuseReentry(const char* what) const {
    if (!textMutexHeldHere()) return Status::ok();
    return Status(Error::kReentrantUpdate, std::string(what) +
                                               " called while this thread holds the text mutex (from a patch observer); "
                                               "defer it until the update returns");
  }
  // Gives Options::diagnosticSink the message `make()` builds. From paths that must not fail
  // (fork handlers, retirement): a message that cannot be built or a sink that throws is
  // dropped.
  template <typename MakeMessage>
  void diagnose(MakeMessage&& make) const noexcept {
    if (!options.diagnosticSink) return;
    try {
      options.diagnosticSink(make());
    } catch (...) {
    }
  }
  // Refuses code writes in a process that does not own this runtime's code: a child made
  // without fork()'s atfork handlers (vfork, clone, a raw fork system call) still maps the
  // parent's arena, or a fork child whose copy failed.
  Status checkOwnProcess() const;
  // Both checks, for the entry points that write code.
  Status checkMayWrite(const char* what) const {
    PATCHCALL_TRY(refuseReentry(what));
    return checkOwnProcess();
  }
  std::unique_lock<detail::FairMutex> readLock() const {
    return textMutexHeldHere() ? std::unique_lock<detail::FairMutex>() : std::unique_lock<detail::FairMutex>(textMutex);
  }
};

}  // namespace patchcall
