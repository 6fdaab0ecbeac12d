// patchcall — Runtime::Impl: building the objects in order, and taking them down.
#include "runtime_impl.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "fork_safety.h"
#include "reclaimer.h"
#include "test_hooks.h"
#include "trap_table.h"

namespace patchcall {

thread_local const void* detail::tlsTextMutexOwner = nullptr;

Result<std::unique_ptr<Runtime::Impl>> Runtime::Impl::create(Options options) {
  if (options.maxThreads == 0 || options.maxSites == 0 || options.maxKeys == 0) {
    return Status(Error::kInvalidArgument, "Options: maxThreads, maxSites and maxKeys must be > 0");
  }
  if (options.targetAlignment == 0 || (options.targetAlignment & (options.targetAlignment - 1)) != 0) {
    return Status(Error::kInvalidArgument, "Options::targetAlignment must be a power of two");
  }
  if (!options.diagnosticSink) {
    options.diagnosticSink = [](const std::string& m) { std::fprintf(stderr, "%s\n", m.c_str()); };
  }
  detail::ForkLocksPtr forkLocks = detail::takeForkLocks();
  if (!forkLocks) return Status(Error::kOutOfMemory, "cannot allocate the runtime's locks");
  Result<std::unique_ptr<detail::CodeArena>> arena =
      detail::CodeArena::create(options.arenaSize, options.arenaHint, forkLocks->arena);
  if (!arena) return arena.status();
  auto impl = std::make_unique<Impl>(options, std::move(forkLocks), std::move(*arena));
  PATCHCALL_TRY(impl->writer.open(options.sync));
  if (options.sync == SyncMethod::kAuto && impl->writer.sync().method() == SyncMethod::kMprotectIpi) {
    options.diagnosticSink("patchcall: membarrier SYNC_CORE refused by the kernel; using the mprotect-IPI fallback");
  }
  PATCHCALL_TRY(detail::TrapTable::instance().installHandler());
  impl->observer.open();

  // The runtime page: the safepoint stub and the shared targets.
  Result<uint8_t*> page = impl->arena->allocate(4096);
  if (!page) return page.status();
  detail::RuntimePage& p = impl->page;
  p.base = reinterpret_cast<uintptr_t>(*page);
  p.pollFlag = reinterpret_cast<uintptr_t>(impl->arena->pollFlag());
  p.safepointStub = p.base + detail::RuntimePage::kStubOffset;
  p.noopTarget = p.base + detail::RuntimePage::kNoopOffset;
  p.returnZeroTarget = p.base + detail::RuntimePage::kReturnZeroOffset;
  impl->registry.setRuntimePage(p.base, p.noopTarget, p.returnZeroTarget);
  uint8_t* rw = impl->arena->toRw(*page);
  auto wanted = arch::StateSave::kAuto;
  if (detail::TestHooks* hooks = detail::testHooks(); hooks != nullptr) wanted = static_cast<arch::StateSave>(hooks->stateSave.load());
  p.stateSave = arch::detectStateSave(wanted);
  size_t stubSize = arch::encodeSafepointStub(rw + detail::RuntimePage::kStubOffset, p.stateSave, &detail::safepointPending,
                                              &detail::safepointSlow);
  static_assert(detail::RuntimePage::kStubOffset + arch::kSafepointStubMaxSize <= detail::RuntimePage::kNoopOffset);
  if (stubSize > arch::kSafepointStubMaxSize) {  // still inside the page: no harm done yet
    return Status(Error::kEmitFailed, "the safepoint stub grew past kSafepointStubMaxSize");
  }
  std::memcpy(rw + detail::RuntimePage::kNoopOffset, arch::noopStub().data(), arch::noopStub().size());
  std::memcpy(rw + detail::RuntimePage::kReturnZeroOffset, arch::returnZeroStub().data(), arch::returnZeroStub().size());
  p.safepointStubSize = stubSize;
  for (const observe::CodeEvent& e : detail::runtimePageCode(p)) impl->observer.codeLoaded(e.start, e.size, e.name);
  arch::codeWritten(p.base, 4096);  // the whole page: stub and shared targets

  detail::Quiescence::Config qc{options.graceDeadline, options.graceSpin, options.maxThreads, options.diagnosticSink,
                                options.reportUnregisteredThreads};
  impl->quiescence = std::make_unique<detail::Quiescence>(qc, impl->arena->pollFlag());
  impl->retargeter = std::make_unique<detail::Retargeter>(impl->options, impl->registry, impl->veneers, impl->writer,
                                                          impl->publication, impl->foreign, *impl->quiescence,
                                                          impl->observer);
  impl->reclaimer = std::make_unique<detail::Reclaimer>(*impl, options.backgroundReclaimer);
  impl->veneers.attach(*impl->reclaimer);
  // Every grace period starts with the deferred writes published, so nothing they moved
  // calls away from is retired or freed while a core may still run the old bytes.
  impl->quiescence->setPublication(&impl->publication);
  impl->publication.setWaker([](void* r) { static_cast<detail::Reclaimer*>(r)->wakeForPublish(); }, impl->reclaimer.get());
  PATCHCALL_TRY(impl->writer.sync().syncOrError("create"));
  impl->forkLocks->ownerPid = getpid();
  PATCHCALL_TRY(detail::trackForFork(impl.get()));
  return impl;
}

Runtime::Impl::Impl(const Options& o, detail::ForkLocksPtr l, std::unique_ptr<detail::CodeArena> a)
    : options(o), forkLocks(std::move(l)), arena(std::move(a)) {}

Runtime::Impl::~Impl() {
  detail::untrackForFork(this);  // no fork may copy a runtime being torn down
  if (reclaimer) reclaimer->stop();
  reclaimer.reset();
  retargeter.reset();
  quiescence.reset();
}

Status Runtime::Impl::checkOwnProcess() const {
  if (!forkState.childFailure.isOk()) return forkState.childFailure;
  PATCHCALL_TRY(arena->writeRefusal());
  if (detail::ownerMarkSet()) return Status::ok();  // no fork without our handlers since (fork_safety.h)
  pid_t pid = getpid();  // a system call (~100 ns here)
  if (pid == forkLocks->ownerPid) return Status::ok();
  return Status(Error::kForkedChild, "process " + std::to_string(pid) + " was created without fork()'s atfork handlers " +
                                         "(vfork, clone or a raw fork system call) and still maps the code of the process " +
                                         "that created this runtime; it cannot write code");
}

}  // namespace patchcall
