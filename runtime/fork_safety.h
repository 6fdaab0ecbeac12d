// patchcall — fork(): a child gets a private, consistent copy of everything patchcall owns.
//
// Process-wide state (documented in the README's "Process-wide state"): the list of live
// runtimes below, one pthread_atfork registration and the fork page (fork_locks.h: the owner
// mark, the list's lock and the runtimes' fork-held locks, wiped in every child). Before
// fork() the forking thread steps offline and takes, for every runtime, the reclaimer's
// locks, the text mutex and the arena locks (so no update, install, breakpoint round or
// reclamation is half done), then marks the arena shared: parent and child keep its pages
// until each one's first code write, which gives that process its own copy
// (CodeArena::unshare). With a code reservation outstanding the copy is made here instead
// and the child maps it before running on. The child reopens /proc/self/mem when it has
// foreign sites, forgets the parent's other threads and restarts its reclaimer when it needs
// it. Neither process's later writes reach the other.
#pragma once

#include <mutex>

#include "patchcall/runtime.h"

namespace patchcall::detail {

// Registers the process's one set of atfork handlers (runtimes, then the AOT registry of
// static keys and calls: runtime/aot/static_registry.h) on first use.
Status ensureForkHandlers();
// Adds a runtime to the list the atfork handlers walk (registering them on first use).
// Fails (kOutOfMemory) only if pthread_atfork could not register the handlers.
Status trackForFork(Runtime::Impl* rt);
void untrackForFork(Runtime::Impl* rt) noexcept;

// The process-wide locks the atfork handlers hold across fork() besides the runtimes' list:
// gdb's JIT descriptor list (observe::GdbJit) and the AOT registry (aot::StaticRegistry). On
// the fork page, so a child finds them unlocked on its zero-filled copy without writing a
// page of the parent's (a copy-on-write fault each, where they were statics); statics when
// the page could not be mapped. Registers the handlers on first use.
enum class ProcessLock { kGdbDescriptors, kStaticRegistry };
std::mutex& processLock(ProcessLock which) noexcept;

// True while no child of a fork that skipped the atfork handlers can be running this code:
// a byte on a MADV_WIPEONFORK page, which the kernel zero-fills in every child made by fork
// or clone without CLONE_VM (a raw fork system call included), set when the handlers are
// registered (before the first runtime exists) and again by the atfork child handler. While
// it holds, every runtime's ownerPid is this process and Runtime::Impl::checkOwnProcess
// needs no getpid() (a system call, ~100 ns here). False without MADV_WIPEONFORK
// (Linux < 4.14): then getpid() decides. Process-wide.
bool ownerMarkSet() noexcept;

}  // namespace patchcall::detail
