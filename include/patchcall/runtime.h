// patchcall — the Runtime: code arena, static-call keys, sites, retargeting, quiescence.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "patchcall/code_info.h"
#include "patchcall/options.h"
#include "patchcall/quiescence.h"
#include "patchcall/status.h"

namespace patchcall {

namespace detail {
struct RuntimeAccess;
}  // namespace detail

// A static-call key: a current target, every site bound to it and a trampoline.
// A plain handle; valid while its Runtime lives and until destroyKey().
struct Key {
  uint32_t id = 0;  // 0 is never a valid key
  bool valid() const noexcept { return id != 0; }
  friend bool operator==(Key, Key) = default;
};

// A blob of installed code in the arena. A handle; retire it through Runtime::retire.
struct Blob {
  uint32_t id = 0;
  void* code = nullptr;  // RX address of the first byte
  size_t size = 0;
  bool valid() const noexcept { return id != 0; }
};

// Where a site sits in a blob that is being installed (offset of its first byte).
struct SiteSpec {
  uint32_t offset = 0;
  Key key;
  SiteForm form = SiteForm::kDirect;  // kAuto is resolved by the emitter, not here
};

// Space reserved in the arena for code that is about to be installed: relocate the code
// to `rx`, write it through `rw`, then commitCode().
struct CodeReservation {
  uint8_t* rx = nullptr;
  uint8_t* rw = nullptr;
  size_t size = 0;
};

struct KeyUpdate {
  Key key;
  const void* target = nullptr;
};

// What holds when update() / updateBatch() returns OK, per site form of the key:
//  - Direct sites, the trampoline, the target cell and Breakpoint sites: every thread has
//    executed a serializing instruction after the last code write, so no thread starts a
//    call to the old target through them any more (a call already started -- the call
//    instruction executed, the trap being emulated -- may still be running the old target).
//  - Toggle sites: a thread that executed the toggle before the flip and has not reached
//    its next safepoint (or gone offline) can still make the old call, i.e. enter the old
//    target after update() returned. Invariant 3 holds for toggles only with `strict`.
// When an update's writes are made visible to every core (see UpdateOptions::publish).
enum class Publish : uint8_t {
  kNow = 0,       // update() returns after the cross-core sync (the guarantees above)
  kDeferred = 1,  // update() returns after the writes, before the final sync (below)
};

struct UpdateOptions {
  // Also wait, after the flip, for a grace period: update() returns only when no thread can
  // still enter the old target through any of the keys' sites. Costs a grace period when a
  // key has toggle sites (nothing more otherwise). On kTimeout the update HAS taken effect
  // (every site, the trampoline and target() name the new target); only the wait for the
  // stragglers failed: a later synchronize() completes it.
  bool strict = false;
  // Bound for that wait (and for waiting on another thread's sync); default Options::graceDeadline.
  std::optional<std::chrono::milliseconds> deadline;
  // kDeferred: the sites, the trampoline and the target cell are written and update()
  // returns without the final cross-core sync (a Direct-only update then costs a few
  // stores). Until that sync every call lands on a target that was current at some moment
  // since the call's window began: the old one or the new one (a core may still run the old
  // bytes), never anything else. After publish() returns -- or after any later immediate
  // update, synchronize(), barrier(), or the start of the grace period of any retire() --
  // the guarantees above hold for it. Code a deferred update moved calls away from is never
  // freed before a sync made the move visible everywhere (every grace period starts with
  // one). Toggle sites defer only their last sync (the flip's); breakpoint sites are not
  // deferred at all (their trap entries must outlive the final sync, and the trap table is
  // shared by the whole process). Strict updates (strict, KeyOptions::strictUpdates)
  // publish now. Unpublished updates are published by the background reclaimer within
  // Options::publishDelay (manual mode: by poll()).
  Publish publish = Publish::kNow;
};

// Per-key settings, fixed at createKey.
struct KeyOptions {
  // Every update of this key (or of a batch containing it) is strict (UpdateOptions::strict).
  bool strictUpdates = false;
  // A null target (createKey, update) means Runtime::noopTarget(): every call through the
  // key returns at once (the kernel's static_call_cond, for keys of void functions);
  // target() then reports nullptr.
  bool nullIsNoop = false;
};

struct SiteInfo {
  const void* address = nullptr;  // first byte of the instruction (the toggle for kToggle)
  Key key;
  SiteForm form = SiteForm::kDirect;
  const void* target = nullptr;   // what the site's active call decodes to right now
  bool foreign = false;           // registered with registerForeignSite
};

struct ArenaInfo {
  const void* rxBase = nullptr;
  const void* rwBase = nullptr;
  size_t size = 0;
  size_t used = 0;
  int64_t distanceFromText = 0;  // RX base minus the executable's text start
  bool nearText = false;         // from every arena byte, a direct call (rel32, BL) reaches the executable's text
  // Bytes of the arena from which a direct call reaches all of the executable's text, counted
  // from the end handed out first (A64: BL's +-128 MiB covers part of the default 256 MiB
  // arena; that part is allocated first). Calls from beyond it to C++ go through veneers.
  size_t directReach = 0;
  SyncMethod sync = SyncMethod::kMembarrier;  // what create() settled on
  // After fork(), parent and child share the arena's pages until each one's first code write,
  // which first copies the used bytes into a memfd of that process's own (README: fork).
  // True in between: nothing written since the fork, no copy made yet.
  bool sharedAfterFork = false;
};

// One key, as keys() lists it.
struct KeyInfo {
  Key key;
  std::string name;
  const void* target = nullptr;  // as target() reports it
  const void* trampoline = nullptr;
  size_t sites = 0;  // sites bound to it (foreign ones included)
};

// One installed blob (live or retired, not yet freed), as blobs() lists it.
struct BlobInfo {
  struct Range {
    uint32_t offset = 0, size = 0;
    std::string name;
  };
  Blob blob;
  std::string name;  // as installed (empty: unnamed)
  std::vector<Range> ranges;
  FrameLayout frameLayout = FrameLayout::kNone;
  bool retired = false;
  size_t sites = 0;
};

// A snapshot taken under the text mutex: keys, sites, blobs, veneers, siteMetadataBytes,
// updates, siteWrites, updatesDeferred and blobsFreed are exact with each other (no install,
// update or free is half-counted). The other counters also change on threads that do not
// hold that mutex (syncs and publishSyncs: a Direct-only update's last sync runs unlocked;
// grace periods, traps, retire callbacks, veneers freed by them): each is a value it held
// during the snapshot.
struct RuntimeStats {
  uint64_t keys = 0, sites = 0, blobs = 0, veneers = 0;  // veneers: live ones (in use, or pinned: Options::freeVeneersOutsideArena)
  // Veneers no call names any more: retired (on the reclaimer's queue, not counted in
  // callbacksRetired/Run) and freed after a grace period (barrier() waits for them too).
  uint64_t veneersRetired = 0, veneersFreed = 0;
  uint64_t updates = 0, siteWrites = 0, syncs = 0;
  // Deferred updates, and the syncs that published update batches outside an update's own
  // protocol (publish(), shared syncs of concurrent updaters, grace-period starts).
  uint64_t updatesDeferred = 0, publishSyncs = 0;
  uint64_t trapsEmulated = 0;
  uint64_t gracePeriods = 0, toggleGraceWaits = 0;
  uint64_t callbacksRetired = 0, callbacksRun = 0;
  uint64_t blobsRetired = 0, blobsFreed = 0, blobsPinnedByStacks = 0;
  uint64_t siteMetadataBytes = 0;  // registry bytes spent on sites (keys' site lists included)
  // Copies of the arena this process made at its first code write after a fork (sharedAfterFork).
  uint64_t codeCopiesAfterFork = 0;
};

class Runtime {
 public:
  struct Impl;

  // Maps the arena, registers membarrier SYNC_CORE, starts the reclaimer thread.
  static Result<Runtime> create(Options options = {});
  Runtime(Runtime&&) noexcept;
  Runtime& operator=(Runtime&&) noexcept;
  ~Runtime();

  // --- keys -------------------------------------------------------------------------
  // Targets (createKey, update, updateBatch): any address outside the arena (C++ code, other
  // JITs' code: not checked further), any address inside a live blob except the inside of a
  // call site, and a live key's trampoline() (calls chain to that key's target). Refused:
  // null (kNullTarget), misaligned (kMisalignedTarget), retired, freed or never-installed
  // arena memory (kRetiredTarget), and with kInvalidArgument the rest of patchcall's own
  // memory: the runtime page (safepointFlag, safepointStub), target cells and the rest of a
  // trampoline slot, a destroyed key's trampoline, veneers, the inside of a site, and a chain
  // of trampolines that leads back to the key being updated (a jmp loop).
  Result<Key> createKey(const void* initialTarget, std::string_view name = {});
  Result<Key> createKey(const void* initialTarget, std::string_view name, const KeyOptions& options);
  // Fails with kStillTargeted while sites are bound to the key.
  Status destroyKey(Key key);
  // Retargets the key's trampoline and every bound site with one cross-core sync;
  // returns the previous target. An update (or a batch) to the targets the keys have already
  // writes nothing and makes no sync of its own (an immediate one still publishes earlier
  // deferred updates). What holds on return: see UpdateOptions. A foreign site
  // that can no longer be written (see registerForeignSite) fails it with kUnsupportedSite
  // before the first write; a sync that keeps failing is kSystemError after the writes (they
  // are not undone).
  Result<const void*> update(Key key, const void* target);
  Result<const void*> update(Key key, const void* target, const UpdateOptions& options);
  // Many keys, one sync (three for breakpoint sites, one per protocol phase). Validated as
  // a whole first: on error nothing is written (except a strict wait's kTimeout, above).
  Status updateBatch(std::span<const KeyUpdate> updates);
  Status updateBatch(std::span<const KeyUpdate> updates, const UpdateOptions& options);
  // Makes every deferred update so far visible to every core (one sync, shared with
  // concurrent callers; none when nothing is pending). Errors: kTimeout (another thread's
  // sync did not finish by `deadline`), kSystemError (the sync keeps failing).
  Status publish(std::optional<std::chrono::milliseconds> deadline = std::nullopt);
  Result<const void*> target(Key key) const;
  // Entry of the key's out-of-line `jmp rel32` stub, callable from C++ (a fixed code address).
  Result<const void*> trampoline(Key key) const;
  // The key's target cell (read-only, 8-byte aligned, never moves): updated in the same
  // phase as the sites, so C++ can call the current target with one predicted indirect call.
  Result<const void* const*> targetCell(Key key) const;

  // --- code ---------------------------------------------------------------------------
  Result<CodeReservation> reserveCode(size_t size);
  // Writes each site's displacement for its key's current target and registers the sites.
  Result<Blob> commitCode(const CodeReservation& reservation, std::span<const SiteSpec> sites);
  // The same, with a name, named ranges and a frame layout (code_info.h): reported to the
  // perf map, jitdump and gdb (Options::perfMap, jitDump, gdbJit); a declared frame layout is
  // checked (kInvalidArgument, nothing installed) and its .eh_frame registered with the
  // unwinder until the blob is freed. Ranges outside the blob or overlapping: kInvalidArgument.
  Result<Blob> commitCode(const CodeReservation& reservation, std::span<const SiteSpec> sites, const CodeInfo& info);
  void abandonCode(const CodeReservation& reservation);
  // reserveCode + copy + commitCode for position-independent bytes.
  Result<Blob> installCode(std::span<const uint8_t> bytes, std::span<const SiteSpec> sites);
  Result<Blob> installCode(std::span<const uint8_t> bytes, std::span<const SiteSpec> sites, const CodeInfo& info);
  // Frees the blob after a grace period once no key targets it and no thread's stack holds
  // an address inside it. Errors: kStillTargeted, kDoubleRetire, kInvalidArgument (bad handle).
  Status retire(Blob blob);

  // --- sites ----------------------------------------------------------------------------
  Result<SiteInfo> site(const void* address) const;
  // An existing call in code patchcall did not emit (e.g. AOT code): x86-64 a 5-byte
  // `E8 rel32` at any alignment, patched with the breakpoint protocol (SiteInfo::form
  // kBreakpoint); aarch64 a `BL` (4-byte aligned, else kInvalidArgument), patched like a
  // Direct site by one aligned store of the whole instruction (form kDirect; the kernel's
  // /proc/self/mem write of 4 aligned bytes is one 32-bit store: runtime/arch/aarch64/branch.h).
  // Written through /proc/self/mem onto the key's current target (the key itself is not
  // updated, so a concurrent update is never undone). Below, "5 bytes" and "E8" are x86-64's;
  // on aarch64 read "4 bytes" and "BL".
  // Checked at registration: all 5 bytes outside the arena and in executable mappings of this
  // process (/proc/self/maps), no overlap with a registered foreign site's 5 bytes, byte 0 is
  // E8, and the kernel accepts a write there (the same bytes written back: shared mappings,
  // e.g. another JIT's MAP_SHARED code cache, are refused with kUnsupportedSite).
  // Checked before every later update writes it: still mapped, still exactly `E8 <the rel32
  // patchcall wrote>`, still writable; otherwise the update fails with kUnsupportedSite naming
  // the site, before its first write. Unregister a site before its code is unmapped (dlclose).
  // Not checked: that the 5 bytes are an instruction boundary (rather than bytes inside a
  // longer instruction or data in an executable mapping), that no other code jumps into the
  // rel32, and that nothing else rewrites the code between two updates.
  Status registerForeignSite(void* callInstruction, Key key);
  Status unregisterForeignSite(void* callInstruction);

  // --- quiescence -----------------------------------------------------------------------
  Result<ThreadScope> registerThread(std::string_view name = {});
  // Waits for a grace period; bounded by `deadline` (default Options::graceDeadline).
  Status synchronize(std::optional<std::chrono::milliseconds> deadline = std::nullopt);
  // Runs `callback` after a grace period (never under the text mutex). Allocates a queue
  // node per call; retire(RetireNode*) does not.
  Status retire(std::function<void()> callback);
  // Runs fn(node) after a grace period; allocation-free (the node is the queue entry, see
  // RetireNode). One FIFO queue with retire(callback): callbacks run in retirement order,
  // each after a grace period that started after its own retire() call. A callback whose
  // grace period has not completed when the Runtime is destroyed is dropped (never called):
  // the node is the embedder's again. Errors: kInvalidArgument (node or fn null).
  Status retire(RetireNode* node, void (*fn)(RetireNode*)) noexcept;
  // Waits until every callback and blob retired before this call has been processed
  // (callbacks run, blobs freed); items retired meanwhile are not waited for. The deadline
  // is honoured even while the background reclaimer is busy. A registered caller is offline
  // while it waits (as in synchronize()). Errors: kTimeout, naming the cause (callbacks whose
  // grace period did not complete and the thread holding it, or blobs still on a stack),
  // kWouldDeadlock (from this runtime's retire callback).
  Status barrier(std::optional<std::chrono::milliseconds> deadline = std::nullopt);
  // Runs the callbacks and frees the blobs that completed grace periods allow, and takes one
  // non-blocking step of the grace period they need (starts it, or completes it once every
  // thread passed a safepoint), so in manual mode a loop of poll() makes progress alone.
  // Never waits: returns 0 while another pass runs, and from inside a retire callback.
  // A registered caller is offline (quiescent) inside poll(). Returns callbacks run + blobs freed.
  size_t poll();

  // --- polled grace periods (Linux's get_state / start_poll / poll_state_synchronize_rcu) ---
  // None of these blocks (a try-lock and one pass over the registered threads' counters); any
  // thread may call them, registered or not, also from a retire callback or a patch
  // observer. A registered, online caller is one of the threads a grace period waits for:
  // it must pass a safepoint (or call poll()) for a grace period to complete.
  // The cookie of the current moment (GracePeriodCookie); starts nothing.
  GracePeriodCookie gracePeriodState() noexcept;
  // The same cookie, and asks for a grace period that completes it: started at once if none
  // is in flight, else by the next step (poll, gracePeriodElapsed, a blocking wait). With the
  // background reclaimer, that thread drives it to completion; in manual mode poll() or
  // gracePeriodElapsed() must be called for it to complete.
  GracePeriodCookie startGracePeriod() noexcept;
  // True once `cookie` has elapsed. Otherwise it asks for its grace period and takes one
  // non-blocking step (as poll() does), so a loop of calls makes progress in manual mode.
  bool gracePeriodElapsed(GracePeriodCookie cookie) noexcept;

  // --- stacks (fibers; see switchStack in quiescence.h) -----------------------------------
  // Registers [lo, lo + size) as a stack registered threads may switch to: parked and empty
  // (nothing on it is scanned until a thread switches away from it). Register before the
  // first switch to it; the memory must stay mapped until unregisterStack returns.
  // Errors: kInvalidArgument (null, empty, wrapping, or overlapping a registered stack),
  // kOutOfMemory.
  Result<StackHandle> registerStack(void* lo, size_t size, std::string_view name = {});
  // Forgets a parked stack (waits out a scan of it in progress). Errors: kInvalidArgument
  // (running on a thread, stale, foreign or home handle).
  Status unregisterStack(StackHandle stack);

  // --- introspection --------------------------------------------------------------------
  ArenaInfo arenaInfo() const;
  RuntimeStats stats() const;
  // Snapshots for a runtime's own diagnostics, each taken under the text mutex (so an install
  // or update is in it completely or not at all), in id order (sites: keys' order, then
  // address). Error: kOutOfMemory.
  Result<std::vector<KeyInfo>> keys() const;
  Result<std::vector<SiteInfo>> sites() const;
  Result<std::vector<BlobInfo>> blobs() const;
  // Shared targets any key may take (the kernel's static_call parity): a function that
  // returns at once (for keys of void functions: the call becomes a no-op, still one store to
  // switch) and one that returns 0 (rax = 0: for integer, pointer and bool results, like
  // __static_call_return0). Fixed addresses in the runtime page, never retired.
  const void* noopTarget() const noexcept;
  const void* returnZeroTarget() const noexcept;
  // The byte JIT safepoint polls compare against zero: on a private data page right above the
  // arena's RX view (within rel32/ADRP reach of every arena byte; not code, not in the memfd,
  // so a grace period never writes pages shared after a fork).
  const volatile uint8_t* safepointFlag() const;
  // Shared out-of-line slow path for JIT polls: saves the caller-saved registers, rflags and
  // the whole XSAVE state, calls the safepoint slow path, restores them (see
  // jit::emitSafepointPoll). Callers step rsp 128 bytes down first to keep the red zone.
  const void* safepointStub() const;
 private:
  friend struct detail::RuntimeAccess;
  explicit Runtime(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace patchcall
