// patchcall — Runtime: creation, keys, quiescence front door, introspection.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "fork_safety.h"
#include "reclaimer.h"
#include "runtime_impl.h"
#include "test_hooks.h"
#include "trap_table.h"

namespace patchcall {

#ifdef PATCHCALL_TEST_HOOKS
detail::TestHooks* detail::testHooks() noexcept {
  static TestHooks hooks;
  return &hooks;
}
namespace testing {
void setSkipToggleGrace(bool skip) { detail::testHooks()->skipToggleGrace.store(skip); }
void setSkipSync(bool skip) { detail::testHooks()->skipSync.store(skip); }
void setSkipRetireGrace(bool skip) { detail::testHooks()->skipRetireGrace.store(skip); }
void setSkipForkCopy(bool skip) { detail::testHooks()->skipForkCopy.store(skip); }
void setSkipStackScan(bool skip) { detail::testHooks()->skipStackScan.store(skip); }
void setQuarantineScanSets(bool keep) { detail::testHooks()->quarantineScanSets.store(keep); }
uint64_t scansOfRetiredSets() { return detail::testHooks()->scansOfRetiredSets.load(); }
void setSkipStrictGrace(bool skip) { detail::testHooks()->skipStrictGrace.store(skip); }
void setBetweenByteWrites(void (*hook)(int)) { detail::testHooks()->betweenBytes.store(hook); }
void setSafepointSlowHook(void (*hook)()) { detail::testHooks()->inSafepointSlow.store(hook); }
void setTrapHandlerHook(void (*hook)(int)) { detail::testHooks()->inTrapHandler.store(hook); }
void setAfterBreakpointInt3Hook(void (*hook)()) { detail::testHooks()->afterBreakpointInt3.store(hook); }
void setSyncFailures(int attempts, int error) {
  detail::testHooks()->syncErrno.store(error);
  detail::testHooks()->syncFailures.store(attempts);
}
void setForeignWriteFailure(int successes) { detail::testHooks()->foreignWritesBeforeFailure.store(successes); }
void setFallbackEnvironment(const char* kernelRelease, const char* cpuFlags) {
  detail::testHooks()->fakeCpuFlags.store(cpuFlags);
  detail::testHooks()->fakeKernelRelease.store(kernelRelease);
}
// patchcall/testing.h is not included here (it pulls in asmjit): its SafepointSave has the
// values of arch::StateSave, which Emission.SafepointStubDecodesForEverySaveMethod checks.
enum class SafepointSave : uint8_t;
void setSafepointSave(SafepointSave save) { detail::testHooks()->stateSave.store(static_cast<uint8_t>(save)); }
SafepointSave safepointSaveMethod(const Runtime& rt) { return static_cast<SafepointSave>(rt.impl()->stateSave.method); }
uint32_t safepointSaveAreaSize(const Runtime& rt) { return rt.impl()->stateSave.areaSize; }
}  // namespace testing
#endif

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::Runtime(Runtime&&) noexcept = default;
Runtime& Runtime::operator=(Runtime&&) noexcept = default;
Runtime::~Runtime() = default;

Result<Runtime> Runtime::create(Options options) {
  return detail::catchOutOfMemory("create", [&]() -> Result<Runtime> {
    if (options.maxThreads == 0 || options.maxSites == 0 || options.maxKeys == 0) {
      return Status(Error::kInvalidArgument, "Options: maxThreads, maxSites and maxKeys must be > 0");
    }
    if (options.targetAlignment == 0 || (options.targetAlignment & (options.targetAlignment - 1)) != 0) {
      return Status(Error::kInvalidArgument, "Options::targetAlignment must be a power of two");
    }
    if (!options.diagnosticSink) {
      options.diagnosticSink = [](const std::string& m) { std::fprintf(stderr, "%s\n", m.c_str()); };
    }
    auto impl = std::make_unique<Impl>();
    impl->options = options;
    PATCHCALL_TRY(impl->sync.init(options.sync));
    if (options.sync == SyncMethod::kAuto && impl->sync.method() != SyncMethod::kMembarrier) {
      options.diagnosticSink("patchcall: membarrier SYNC_CORE refused by the kernel; using the mprotect-IPI fallback");
    }
    Result<std::unique_ptr<detail::CodeArena>> arena = detail::CodeArena::create(options.arenaSize, options.arenaHint);
    if (!arena) return arena.status();
    impl->arena = std::move(*arena);
    impl->procMemFd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    PATCHCALL_TRY(detail::TrapTable::instance().installHandler());

    // Runtime page: the poll flag on its own cache line, then the safepoint stub.
    Result<uint8_t*> page = impl->arena->allocate(4096);
    if (!page) return page.status();
    impl->pollFlagRx = reinterpret_cast<uintptr_t>(*page);
    impl->safepointStubRx = impl->pollFlagRx + 64;
    uint8_t* rw = impl->arena->toRw(*page);
    rw[0] = 0;
    auto wanted = arch::StateSave::kAuto;
    if (detail::TestHooks* hooks = detail::testHooks(); hooks != nullptr) {
      wanted = static_cast<arch::StateSave>(hooks->stateSave.load());
    }
    impl->stateSave = arch::detectStateSave(wanted);
    size_t stubSize =
        arch::encodeSafepointStub(rw + 64, impl->stateSave, &detail::safepointPending, &detail::safepointSlow);
    if (stubSize > arch::kSafepointStubMaxSize) {  // still inside the page: no harm done yet
      return Status(Error::kEmitFailed, "the safepoint stub grew past kSafepointStubMaxSize");
    }

    detail::Quiescence::Config qc{options.graceDeadline, options.graceSpin, options.maxThreads, options.diagnosticSink,
                                  options.reportUnregisteredThreads};
    impl->quiescence = std::make_unique<detail::Quiescence>(qc, rw);
    impl->keys.emplace_back();
    impl->sites.emplace_back();
    impl->blobs.emplace_back();
    impl->reclaimer = std::make_unique<detail::Reclaimer>(*impl, options.backgroundReclaimer);
    PATCHCALL_TRY(impl->sync.syncOrError("create"));
    impl->forkState.ownerPid = getpid();
    PATCHCALL_TRY(detail::trackForFork(impl.get()));
    return Runtime(std::move(impl));
  });
}

Status Runtime::Impl::checkOwnProcess() const {
  if (!forkState.childFailure.isOk()) return forkState.childFailure;
  pid_t pid = getpid();  // a system call (~50 ns): only on paths that write code
  if (pid == forkState.ownerPid) return Status::ok();
  return Status(Error::kForkedChild, "process " + std::to_string(pid) + " was created without fork()'s atfork handlers " +
                                         "(vfork, clone or a raw fork system call) and still maps the code of process " +
                                         std::to_string(forkState.ownerPid) + "; it cannot write code");
}

// ---- keys ------------------------------------------------------------------------------

Result<Key> Runtime::createKey(const void* initialTarget, std::string_view name) {
  return createKey(initialTarget, name, KeyOptions{});
}

Result<Key> Runtime::createKey(const void* initialTarget, std::string_view name, const KeyOptions& options) {
  return detail::catchOutOfMemory("createKey", [&]() -> Result<Key> {
    Impl& m = *impl_;
    PATCHCALL_TRY(m.refuseReentry("createKey"));
    PATCHCALL_TRY(m.checkOwnProcess());
    std::lock_guard<detail::FairMutex> lock(m.textMutex);
    PATCHCALL_TRY(m.validateTarget(initialTarget));
    if (m.keys.size() > m.options.maxKeys) {
      return Status(Error::kInvalidArgument, "Options::maxKeys (" + std::to_string(m.options.maxKeys) + ") reached");
    }
    Result<uintptr_t> slot = m.slot(m.trampolinePool, arch::kTrampolineSlotSize);
    if (!slot) return slot.status();
    // The slot's layout: runtime/arch/<isa>/stubs.h (cell and jump field both aligned).
    uintptr_t entry = arch::trampolineEntry(*slot);
    uintptr_t field = arch::branchField(entry);
    m.dropPendingVeneers();
    Result<uintptr_t> dest = m.reachable(entry, reinterpret_cast<uintptr_t>(initialTarget));
    if (!dest) {
      m.dropPendingVeneers();
      return dest.status();
    }
    m.reserveCallDestination(field, *dest, reinterpret_cast<uintptr_t>(initialTarget));
    // Allocate first: once the entry is in keyByTrampoline, validateTarget accepts it.
    detail::KeyRecord k;
    k.live = true;
    k.strictUpdates = options.strictUpdates;
    k.target = initialTarget;
    k.trampoline = entry;
    k.name = detail::MiString(name.data(), name.size());
    // A new veneer is written and synced before the jump names it.
    PATCHCALL_TRY(m.publishPendingVeneers());
    if (m.keys.size() == m.keys.capacity()) m.keys.reserve(2 * m.keys.size() + 1);
    m.keyByTrampoline.emplace(entry, static_cast<uint32_t>(m.keys.size()));
    m.noteCallDestination(field, *dest, reinterpret_cast<uintptr_t>(initialTarget));
    m.write(arch::trampolineCell(entry), &initialTarget, 8);
    std::span<const uint8_t> head = arch::trampolineJumpHead();
    m.write(entry, head.data(), head.size());
    m.storeField(field, arch::jumpFieldValue(field, *dest));
    m.keys.push_back(std::move(k));
    // Publish the fresh trampoline to every core; without that the key is not handed out.
    if (Status synced = m.sync.syncOrError("createKey"); !synced.isOk()) {
      m.keys.back().live = false;
      return synced;
    }
    return Key{static_cast<uint32_t>(m.keys.size() - 1)};
  });
}

Status Runtime::destroyKey(Key key) {
  Impl& m = *impl_;
  PATCHCALL_TRY(m.refuseReentry("destroyKey"));
  PATCHCALL_TRY(m.checkOwnProcess());
  std::lock_guard<detail::FairMutex> lock(m.textMutex);
  detail::KeyRecord* k = m.key(key);
  if (k == nullptr) return Status(Error::kUnknownKey, "destroyKey: key " + std::to_string(key.id) + " is not live");
  if (!k->sites.empty()) {
    return Status(Error::kStillTargeted, "destroyKey: " + std::to_string(k->sites.size()) +
                                             " sites are still bound to key " + std::to_string(key.id));
  }
  k->live = false;  // the trampoline slot stays (a stale function pointer still jumps somewhere valid)
  return Status::ok();
}

Result<const void*> Runtime::update(Key key, const void* target) { return update(key, target, UpdateOptions{}); }

Result<const void*> Runtime::update(Key key, const void* target, const UpdateOptions& options) {
  return detail::catchOutOfMemory("update", [&]() -> Result<const void*> {
    const void* previous = nullptr;
    KeyUpdate u{key, target};
    PATCHCALL_TRY(impl_->retarget(std::span<const KeyUpdate>(&u, 1), &previous, options));
    return previous;
  });
}

Status Runtime::updateBatch(std::span<const KeyUpdate> updates) { return updateBatch(updates, UpdateOptions{}); }

Status Runtime::updateBatch(std::span<const KeyUpdate> updates, const UpdateOptions& options) {
  return detail::catchOutOfMemory("updateBatch", [&] { return impl_->retarget(updates, nullptr, options); });
}

Result<const void*> Runtime::target(Key key) const {
  auto lock = impl_->readLock();
  detail::KeyRecord* k = impl_->key(key);
  if (k == nullptr) return Status(Error::kUnknownKey, "key " + std::to_string(key.id) + " is not live");
  return k->target;
}

Result<const void*> Runtime::trampoline(Key key) const {
  auto lock = impl_->readLock();
  detail::KeyRecord* k = impl_->key(key);
  if (k == nullptr) return Status(Error::kUnknownKey, "key " + std::to_string(key.id) + " is not live");
  return reinterpret_cast<const void*>(k->trampoline);
}

// ---- quiescence ----------------------------------------------------------------------------

Result<const void* const*> Runtime::targetCell(Key key) const {
  auto lock = impl_->readLock();
  detail::KeyRecord* k = impl_->key(key);
  if (k == nullptr) return Status(Error::kUnknownKey, "key " + std::to_string(key.id) + " is not live");
  return reinterpret_cast<const void* const*>(arch::trampolineCell(k->trampoline));
}

Result<ThreadScope> Runtime::registerThread(std::string_view name) {
  return detail::catchOutOfMemory("registerThread", [&]() -> Result<ThreadScope> {
    Result<detail::ThreadRecord*> r = impl_->quiescence->registerThread(name);
    if (!r) return r.status();
    return ThreadScope(*r);
  });
}

Status Runtime::synchronize(std::optional<std::chrono::milliseconds> deadline) {
  return detail::catchOutOfMemory("synchronize", [&] {
    return impl_->quiescence->synchronize(deadline.value_or(impl_->options.graceDeadline));
  });
}

Status Runtime::retire(std::function<void()> callback) {
  return detail::catchOutOfMemory("retire", [&] { return impl_->reclaimer->retire(std::move(callback)); });
}

Status Runtime::barrier(std::optional<std::chrono::milliseconds> deadline) {
  PATCHCALL_TRY(impl_->refuseReentry("barrier"));  // freeing blobs needs the text mutex
  PATCHCALL_TRY(impl_->checkOwnProcess());
  return detail::catchOutOfMemory("barrier", [&] {
    return impl_->reclaimer->barrier(deadline.value_or(impl_->options.graceDeadline));
  });
}

Status Runtime::retire(RetireNode* node, void (*fn)(RetireNode*)) noexcept {
  return impl_->reclaimer->retire(node, fn);
}

GracePeriodCookie Runtime::gracePeriodState() noexcept { return GracePeriodCookie{impl_->quiescence->cookie()}; }

GracePeriodCookie Runtime::startGracePeriod() noexcept {
  detail::Quiescence& q = *impl_->quiescence;
  uint64_t c = q.cookie();
  q.request(c);
  (void)q.tryAdvance();  // starts it unless one is in flight (then the next step does)
  if (!q.completed(c)) {
    try {
      impl_->reclaimer->wakeForGracePeriod();  // background mode: that thread completes it
    } catch (...) {  // std::system_error from the mutex: the next step still completes it
    }
  }
  return GracePeriodCookie{c};
}

bool Runtime::gracePeriodElapsed(GracePeriodCookie cookie) noexcept {
  detail::Quiescence& q = *impl_->quiescence;
  if (q.completed(cookie.value)) return true;
  q.request(cookie.value);
  (void)q.tryAdvance();
  return q.completed(cookie.value);
}

size_t Runtime::poll() {
  if (impl_->textMutexHeldHere() || !impl_->checkOwnProcess().isOk()) return 0;
  try {
    return impl_->reclaimer->poll();
  } catch (const std::bad_alloc&) {
    return 0;  // nothing was lost: queues are only changed after allocating (reclaimer.cpp)
  }
}

// ---- introspection ----------------------------------------------------------------------------

ArenaInfo Runtime::arenaInfo() const {
  const detail::CodeArena& a = *impl_->arena;
  return ArenaInfo{a.rxBase(), a.rwBase(), a.size(), a.used(), a.distanceFromText(), a.nearText(),
                   impl_->sync.method()};
}

RuntimeStats Runtime::stats() const {
  Impl& m = *impl_;
  RuntimeStats s;
  {
    auto lock = m.readLock();
    for (const auto& k : m.keys) {
      if (k.live) ++s.keys;
      s.siteMetadataBytes += k.sites.capacity() * sizeof(uint32_t);
    }
    for (const auto& b : m.blobs) {
      if (b.state != detail::BlobState::kFreed) ++s.blobs;
      s.siteMetadataBytes += b.sites.capacity() * sizeof(uint32_t);
    }
    s.siteMetadataBytes += m.sites.capacity() * sizeof(detail::SiteRecord) + m.freeSites.capacity() * 4;
    s.sites = m.liveSites;
    s.veneers = m.veneers.size();
  }
  s.updates = m.updateCount.load();
  s.siteWrites = m.siteWrites.load();
  s.syncs = m.sync.count();
  s.trapsEmulated = detail::TrapTable::instance().emulated();
  s.gracePeriods = m.quiescence->gracePeriods();
  s.toggleGraceWaits = m.toggleGraceWaits.load();
  // The embedder's callbacks: veneers ride on the same queue (read in this order so the
  // differences never go negative).
  uint64_t veneersFreed = m.veneersFreed.load(std::memory_order_acquire);
  s.veneersFreed = veneersFreed;
  s.callbacksRun = m.reclaimer->callbacksRun() - std::min(veneersFreed, m.reclaimer->callbacksRun());
  uint64_t veneersRetired = m.veneersRetired.load(std::memory_order_acquire);
  s.veneersRetired = veneersRetired;
  s.callbacksRetired = m.reclaimer->callbacksRetired() - std::min(veneersRetired, m.reclaimer->callbacksRetired());
  s.blobsRetired = m.reclaimer->blobsRetired();
  s.blobsFreed = m.reclaimer->blobsFreed();
  s.blobsPinnedByStacks = m.reclaimer->blobsPinned();
  return s;
}

const volatile uint8_t* Runtime::safepointFlag() const {
  return reinterpret_cast<const volatile uint8_t*>(impl_->pollFlagRx);
}

const void* Runtime::safepointStub() const { return reinterpret_cast<const void*>(impl_->safepointStubRx); }

}  // namespace patchcall
