// patchcall — Runtime: the public facade. Each entry point checks what every caller must
// (re-entry from a patch observer, a process that does not own the code), takes the lock
// and hands over to the object that owns the concept (runtime_impl.h lists them).
#include <algorithm>
#include <cstdio>
#include <cstring>

#include "reclaimer.h"
#include "runtime_access.h"
#include "runtime_impl.h"
#include "trap_table.h"

namespace patchcall {

using detail::TextMutexGuard;

Runtime::Runtime(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Runtime::Runtime(Runtime&&) noexcept = default;
Runtime& Runtime::operator=(Runtime&&) noexcept = default;
Runtime::~Runtime() = default;

Result<Runtime> Runtime::create(Options options) {
  return detail::catchOutOfMemory("create", [&]() -> Result<Runtime> {
    Result<std::unique_ptr<Impl>> impl = Impl::create(std::move(options));
    if (!impl) return impl.status();
    return Runtime(std::move(*impl));
  });
}

// ---- keys ------------------------------------------------------------------------------------

Result<Key> Runtime::createKey(const void* initialTarget, std::string_view name) {
  return createKey(initialTarget, name, KeyOptions{});
}

Result<Key> Runtime::createKey(const void* initialTarget, std::string_view name, const KeyOptions& options) {
  return detail::catchOutOfMemory("createKey", [&]() -> Result<Key> {
    PATCHCALL_TRY(impl_->checkMayWrite("createKey"));
    TextMutexGuard guard(impl_->textMutex, impl_.get());
    PATCHCALL_TRY(impl_->writer.ownCode());
    return impl_->registry.createKey(initialTarget, name, options);
  });
}

Status Runtime::destroyKey(Key key) {
  PATCHCALL_TRY(impl_->checkMayWrite("destroyKey"));
  TextMutexGuard guard(impl_->textMutex, impl_.get());  // no code write: no ownCode (its trampoline stays)
  return impl_->registry.destroyKey(key);
}

Result<const void*> Runtime::update(Key key, const void* target) { return update(key, target, UpdateOptions{}); }

Result<const void*> Runtime::update(Key key, const void* target, const UpdateOptions& options) {
  return detail::catchOutOfMemory("update", [&]() -> Result<const void*> {
    PATCHCALL_TRY(impl_->checkMayWrite("update"));
    const void* previous = nullptr;
    KeyUpdate u{key, target};
    TextMutexGuard guard(impl_->textMutex, impl_.get());  // the retargeter owns the code once it must write
    PATCHCALL_TRY(impl_->retargeter->update(guard, std::span<const KeyUpdate>(&u, 1), &previous, options));
    return previous;
  });
}

Status Runtime::updateBatch(std::span<const KeyUpdate> updates) { return updateBatch(updates, UpdateOptions{}); }

Status Runtime::updateBatch(std::span<const KeyUpdate> updates, const UpdateOptions& options) {
  return detail::catchOutOfMemory("updateBatch", [&]() -> Status {
    PATCHCALL_TRY(impl_->checkMayWrite("update"));
    if (updates.empty()) return Status::ok();
    TextMutexGuard guard(impl_->textMutex, impl_.get());  // the retargeter owns the code once it must write
    return impl_->retargeter->update(guard, updates, nullptr, options);
  });
}

Status Runtime::publish(std::optional<std::chrono::milliseconds> deadline) {
  return detail::catchOutOfMemory("publish", [&] {
    return impl_->publication.publishAll(std::chrono::steady_clock::now() + deadline.value_or(impl_->options.graceDeadline));
  });
}

namespace {
Status unknownKey(Key key) { return Status(Error::kUnknownKey, "key " + std::to_string(key.id) + " is not live"); }
}  // namespace

Result<const void*> Runtime::target(Key key) const {
  auto lock = impl_->readLock();
  const detail::KeyRecord* k = impl_->registry.key(key);
  if (k == nullptr) return unknownKey(key);
  return impl_->registry.reported(*k, k->target);
}

Result<const void*> Runtime::trampoline(Key key) const {
  auto lock = impl_->readLock();
  const detail::KeyRecord* k = impl_->registry.key(key);
  if (k == nullptr) return unknownKey(key);
  return reinterpret_cast<const void*>(k->trampoline);
}

Result<const void* const*> Runtime::targetCell(Key key) const {
  auto lock = impl_->readLock();
  const detail::KeyRecord* k = impl_->registry.key(key);
  if (k == nullptr) return unknownKey(key);
  return reinterpret_cast<const void* const*>(arch::trampolineCell(k->trampoline));
}

// ---- code ------------------------------------------------------------------------------------

Result<CodeReservation> Runtime::reserveCode(size_t size) {
  return detail::catchOutOfMemory("reserveCode", [&]() -> Result<CodeReservation> {
    PATCHCALL_TRY(impl_->checkOwnProcess());
    // Asked again only if another fork came between the copy and the reservation.
    for (int attempt = 0;; ++attempt) {
      bool mustUnshare = false;
      Result<CodeReservation> r = impl_->installer.reserve(size, &mustUnshare);
      if (!mustUnshare || attempt == 100) return r;
      auto lock = impl_->readLock();  // the text mutex: no code write runs during the copy
      PATCHCALL_TRY(impl_->writer.ownCode());
    }
  });
}

void Runtime::abandonCode(const CodeReservation& r) {
  if (!impl_->checkOwnProcess().isOk()) return;  // the int3 fill would land in the parent's code
  impl_->installer.abandon(r);
}

Result<Blob> Runtime::commitCode(const CodeReservation& r, std::span<const SiteSpec> sites) {
  return commitCode(r, sites, CodeInfo{});
}

Result<Blob> Runtime::commitCode(const CodeReservation& r, std::span<const SiteSpec> sites, const CodeInfo& info) {
  return detail::catchOutOfMemory("commitCode", [&]() -> Result<Blob> {
    PATCHCALL_TRY(impl_->checkMayWrite("commitCode"));
    TextMutexGuard guard(impl_->textMutex, impl_.get());
    // No ownCode(): an arena with a reservation outstanding is never shared (Installer::reserve),
    // and commit claims it under this mutex, which a fork's prepare takes too.
    return impl_->installer.commit(r, sites, info);
  });
}

Result<Blob> Runtime::installCode(std::span<const uint8_t> bytes, std::span<const SiteSpec> sites) {
  return installCode(bytes, sites, CodeInfo{});
}

Result<Blob> Runtime::installCode(std::span<const uint8_t> bytes, std::span<const SiteSpec> sites, const CodeInfo& info) {
  return detail::catchOutOfMemory("installCode", [&]() -> Result<Blob> {
    Result<CodeReservation> r = reserveCode(bytes.size());
    if (!r) return r.status();
    std::memcpy(r->rw, bytes.data(), bytes.size());
    Result<Blob> blob = commitCode(*r, sites, info);
    if (!blob) abandonCode(*r);
    return blob;
  });
}

Status Runtime::retire(Blob blob) {
  return detail::catchOutOfMemory("retire", [&]() -> Status {
    PATCHCALL_TRY(impl_->checkMayWrite("retire(Blob)"));
    {
      TextMutexGuard guard(impl_->textMutex, impl_.get());
      PATCHCALL_TRY(impl_->registry.markRetired(blob));
    }
    try {
      impl_->reclaimer->retireBlob(blob.id);
    } catch (const std::bad_alloc&) {
      TextMutexGuard guard(impl_->textMutex, impl_.get());
      impl_->registry.markLive(blob.id);  // not queued: leave it live for a retry
      throw;
    }
    return Status::ok();
  });
}

// ---- sites -----------------------------------------------------------------------------------

namespace {
SiteInfo siteInfoOf(const detail::Registry& registry, uint32_t id) {
  const detail::SiteRecord& s = registry.site(id);
  return SiteInfo{reinterpret_cast<const void*>(s.address), Key{s.key}, s.form,
                  reinterpret_cast<const void*>(registry.decodeTarget(s)), (s.flags & detail::kSiteForeign) != 0};
}

}  // namespace

Result<SiteInfo> Runtime::site(const void* address) const {
  return detail::catchOutOfMemory("site", [&]() -> Result<SiteInfo> {
    auto lock = impl_->readLock();
    auto a = reinterpret_cast<uintptr_t>(address);
    uint32_t id = impl_->foreign.siteAt(a);
    if (id == 0) id = impl_->registry.siteInBlobAt(a);
    if (id == 0) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%p", address);
      return Status(Error::kUnknownSite, std::string("no call site is registered at ") + buf);
    }
    return siteInfoOf(impl_->registry, id);
  });
}

Status Runtime::registerForeignSite(void* callInstruction, Key key) {
  return detail::catchOutOfMemory("registerForeignSite", [&]() -> Status {
    PATCHCALL_TRY(impl_->checkMayWrite("registerForeignSite"));
    auto a = reinterpret_cast<uintptr_t>(callInstruction);
    PATCHCALL_TRY(impl_->foreign.checkPlace(a));  // before reading a byte of it
    TextMutexGuard guard(impl_->textMutex, impl_.get());
    PATCHCALL_TRY(impl_->writer.ownCode());
    Result<uint32_t> id = impl_->foreign.add(a, key);
    if (!id) return id.status();
    // Point the call at the key's current target, under the same lock that read it: the key
    // itself is not updated (a concurrent update is either before or after this, never undone).
    Status patched = impl_->retargeter->patchSiteToKey(*id);
    if (!patched.isOk()) impl_->foreign.remove(a);
    return patched;
  });
}

Status Runtime::unregisterForeignSite(void* callInstruction) {
  return detail::catchOutOfMemory("unregisterForeignSite", [&]() -> Status {
    PATCHCALL_TRY(impl_->checkMayWrite("unregisterForeignSite"));
    TextMutexGuard guard(impl_->textMutex, impl_.get());
    PATCHCALL_TRY(impl_->writer.ownCode());
    return impl_->foreign.unregister(reinterpret_cast<uintptr_t>(callInstruction));
  });
}

// ---- quiescence ------------------------------------------------------------------------------

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

Status Runtime::retire(RetireNode* node, void (*fn)(RetireNode*)) noexcept { return impl_->reclaimer->retire(node, fn); }

Status Runtime::barrier(std::optional<std::chrono::milliseconds> deadline) {
  PATCHCALL_TRY(impl_->checkMayWrite("barrier"));  // freeing blobs needs the text mutex
  return detail::catchOutOfMemory("barrier", [&] {
    return impl_->reclaimer->barrier(deadline.value_or(impl_->options.graceDeadline));
  });
}

size_t Runtime::poll() {
  if (impl_->textMutexHeldHere() || !impl_->checkOwnProcess().isOk()) return 0;
  try {
    return impl_->reclaimer->poll();
  } catch (const std::bad_alloc&) {
    return 0;  // nothing was lost: queues are only changed after allocating (reclaimer.cpp)
  }
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

// ---- introspection ---------------------------------------------------------------------------

ArenaInfo Runtime::arenaInfo() const {
  const detail::CodeArena& a = *impl_->arena;
  return ArenaInfo{a.rxBase(), a.rwBase(), a.size(), a.used(), a.distanceFromText(), a.nearText(), a.directReach(),
                   impl_->writer.sync().method(), a.shared()};
}

RuntimeStats Runtime::stats() const {
  Impl& m = *impl_;
  RuntimeStats s;
  auto lock = m.readLock();  // everything below in one critical section (RuntimeStats)
  m.registry.countInto(s);
  s.updates = m.retargeter->updates();
  s.siteWrites = m.retargeter->siteWrites();
  s.syncs = m.writer.sync().count();
  s.trapsEmulated = detail::TrapTable::instance().emulated();
  s.gracePeriods = m.quiescence->gracePeriods();
  s.toggleGraceWaits = m.retargeter->toggleGraceWaits();
  s.updatesDeferred = m.retargeter->deferredUpdates();
  s.publishSyncs = m.publication.publishSyncs();
  // The embedder's callbacks: veneers ride on the same queue (read in this order so the
  // differences never go negative).
  uint64_t veneersFreed = m.veneers.freed();
  s.veneersFreed = veneersFreed;
  s.callbacksRun = m.reclaimer->callbacksRun() - std::min(veneersFreed, m.reclaimer->callbacksRun());
  uint64_t veneersRetired = m.veneers.retired();
  s.veneersRetired = veneersRetired;
  s.callbacksRetired = m.reclaimer->callbacksRetired() - std::min(veneersRetired, m.reclaimer->callbacksRetired());
  s.blobsRetired = m.reclaimer->blobsRetired();
  s.blobsFreed = m.reclaimer->blobsFreed();
  s.blobsPinnedByStacks = m.reclaimer->blobsPinned();
  s.codeCopiesAfterFork = m.arena->unshares();
  return s;
}

namespace {

// keys(), sites(), blobs(): `fill` appends to the vector under the text mutex.
template <typename T, typename Fill>
Result<std::vector<T>> snapshot(const Runtime::Impl& impl, const char* what, Fill&& fill) {
  return detail::catchOutOfMemory(what, [&]() -> Result<std::vector<T>> {
    std::vector<T> out;
    auto lock = impl.readLock();
    fill(impl.registry, out);
    return out;
  });
}

}  // namespace

Result<std::vector<KeyInfo>> Runtime::keys() const {
  return snapshot<KeyInfo>(*impl_, "keys", [](const detail::Registry& r, std::vector<KeyInfo>& out) {
    for (uint32_t id = 1; id < r.keyCount(); ++id) {
      const detail::KeyRecord& k = r.keyAt(id);
      if (!k.live) continue;
      out.push_back({Key{id}, std::string(r.keyName(id)), r.reported(k, k.target), reinterpret_cast<const void*>(k.trampoline),
                     k.sites.size()});
    }
  });
}

Result<std::vector<SiteInfo>> Runtime::sites() const {
  return snapshot<SiteInfo>(*impl_, "sites", [](const detail::Registry& r, std::vector<SiteInfo>& out) {
    out.reserve(r.liveSites());
    for (uint32_t id = 1; id < r.keyCount(); ++id) {
      const detail::KeyRecord& k = r.keyAt(id);
      if (!k.live) continue;
      size_t first = out.size();
      for (uint32_t s : k.sites) out.push_back(siteInfoOf(r, s));
      std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
                [](const SiteInfo& a, const SiteInfo& b) { return a.address < b.address; });
    }
  });
}

Result<std::vector<BlobInfo>> Runtime::blobs() const {
  return snapshot<BlobInfo>(*impl_, "blobs", [](const detail::Registry& r, std::vector<BlobInfo>& out) {
    for (uint32_t id = 1; id < r.blobCount(); ++id) {
      const detail::BlobRecord& b = r.blob(id);
      if (b.state == detail::BlobState::kFreed) continue;
      BlobInfo& info = out.emplace_back();
      info.blob = Blob{id, reinterpret_cast<void*>(b.rx), b.size};
      info.name = std::string(b.names.name);
      for (const detail::BlobRange& g : b.names.ranges) info.ranges.push_back({g.offset, g.size, std::string(g.name)});
      info.frameLayout = b.names.frameLayout;
      info.retired = b.state == detail::BlobState::kRetired;
      info.sites = b.sites.size();
    }
  });
}

const volatile uint8_t* Runtime::safepointFlag() const { return reinterpret_cast<const volatile uint8_t*>(impl_->page.pollFlag); }

const void* Runtime::noopTarget() const noexcept { return reinterpret_cast<const void*>(impl_->page.noopTarget); }
const void* Runtime::returnZeroTarget() const noexcept {
  return reinterpret_cast<const void*>(impl_->page.returnZeroTarget);
}

const void* Runtime::safepointStub() const { return reinterpret_cast<const void*>(impl_->page.safepointStub); }

}  // namespace patchcall
