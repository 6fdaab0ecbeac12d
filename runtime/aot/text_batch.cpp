// patchcall — the breakpoint protocol over compiled text, through /proc/self/mem.
#include "text_batch.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "../format.h"
#include "../test_hooks.h"
#include "../trap_table.h"

namespace patchcall::detail::aot {
namespace {

constexpr uintptr_t kPage = 4096;
constexpr uintptr_t pageOf(uintptr_t a) { return a & ~(kPage - 1); }

}  // namespace

void planTrap(TextPatch& p) {
  uintptr_t dest = 0;
  switch (arch::decodeStaticSite(p.address, p.to, &dest)) {
    case arch::StaticInsn::kCall: p.resume = dest; p.resumeAs = TrapTable::Emulate::kCall; return;
    case arch::StaticInsn::kJump: p.resume = dest; p.resumeAs = TrapTable::Emulate::kJump; return;
    default: p.resume = p.address + arch::kStaticSiteSize; p.resumeAs = TrapTable::Emulate::kJump; return;  // the NOP
  }
}

Status AotTextWriter::ready() {
  if (mem_.isOpen()) return Status::ok();
  // A fork child's first batch: the parent's descriptor was closed by its atfork handler.
  if (!mem_.open()) {
    return Status(Error::kSystemError, std::string("AOT text: cannot open /proc/self/mem for writing: ") + std::strerror(errno));
  }
  if (!syncReady_) {
    Status s = sync_.init(SyncMethod::kAuto);
    if (!s) return s;
    if (arch::kBreakpointProtocol) {
      s = TrapTable::instance().installHandler();
      if (!s) return s;
    }
    dropTranslations_ = CrossCoreSync::emulatorRequested();
    syncReady_ = true;
  }
  return Status::ok();
}

Status AotTextWriter::syncPending() {
  if (!unsynced_) return Status::ok();
  if (Status s = ready(); !s) return s;
  if (int err = sync_.sync(); err != 0) {
    return Status(Error::kSystemError, std::string("AOT text: the cross-core sync of an earlier batch failed again: ") + std::strerror(err));
  }
  unsynced_ = false;
  return Status::ok();
}

Status AotTextWriter::syncOnly() {
  if (Status s = ready(); !s) return s;
  Status s = sync_.syncOrError("AOT static call target");
  if (s) unsynced_ = false;
  return s;
}

Status AotTextWriter::apply(std::span<const TextPatch> patches) {
  if (patches.empty()) return syncPending();
  if (!broken_) return broken_;
  if (Status s = ready(); !s) return s;
  ++batches_;
  sitesWritten_ += patches.size();
  if (!arch::kBreakpointProtocol) return storeEach(patches);
  for (size_t at = 0; at < patches.size(); at += TrapTable::kMaxBatch) {
    size_t n = std::min(TrapTable::kMaxBatch, patches.size() - at);
    if (Status s = round(patches.subspan(at, n)); !s) return s;
  }
  return Status::ok();
}

Status AotTextWriter::round(std::span<const TextPatch> patches) {
  TrapTable& traps = TrapTable::instance();
  std::lock_guard<std::mutex> roundLock(traps.roundMutex());
  // This generation's entries are two rounds old: the round in between synced twice since,
  // so every core has seen their sites complete.
  TrapTable::Generation& entries = traps.openLingering(static_cast<unsigned>(rounds_ & 1));
  for (size_t i = 0; i < patches.size(); ++i) {
    const TextPatch& p = patches[i];
    TrapTable::putLingering(entries, i, p.address, p.resume, p.resumeAs);
  }
  traps.closeLingering(entries, patches.size());
  planRuns(patches);
  traps.beginRound();
  // int3s, sync, tails, sync, heads: no sync after the heads (see TrapTable::openLingering),
  // so a batch costs two syncs.
  Status result = Status::ok();
  int phase = kInt3s;
  for (; phase <= kHeads; ++phase) {
    result = writePhase(patches, phase);
    if (!result || phase == kHeads) break;
    if (int err = sync_.sync(); err != 0) {
      result = Status(Error::kSystemError, std::string("AOT text: the cross-core sync failed: ") + std::strerror(err));
      break;
    }
    TestHooks* hooks = testHooks();
    if (phase == kInt3s && hooks != nullptr && hooks->afterBreakpointInt3.load() != nullptr) hooks->afterBreakpointInt3.load()();
  }
  if (!result && phase == kInt3s && writePhase(patches, kUndoInt3s)) {
    // The tails are untouched: with the first bytes put back every site is as it was. A
    // thread that meets a stale int3 meanwhile is sent on as the new instruction (its batch
    // has not returned: either is right for it); one more sync makes that end here.
    bool synced = sync_.sync() == 0;
    result = Status(result.code(), result.message() + (synced ? "; every site was put back as it was"
                                                              : "; every site was put back as it was, but until other cores "
                                                                "next serialize one may still run its int3 (sent on as the "
                                                                "new instruction)"));
  }
  traps.endLingeringRound();
  ++rounds_;
  if (!result) {
    // A site still an int3 keeps an entry for good (the handler goes on emulating it): its
    // generation will be replaced, so it moves to the permanent table.
    for (const TextPatch& p : patches) {
      if (*reinterpret_cast<const volatile uint8_t*>(p.address) != arch::kBreakpoint[0]) continue;
      if (traps.publish(p.address, p.resume, p.resumeAs) < 0) {
        broken_ = Status(Error::kTableFull, "AOT text: a failed write left int3s the trap table has no room to keep (" +
                                                result.message() + "); no further AOT batch will run");
        break;
      }
    }
  }
  return result;
}

// A64: every site is one aligned word that B, BL and NOP may replace while other cores run it
// (the Arm ARM's concurrent modification and execution rule), and the kernel's 4-byte copy is
// one aligned word store (runtime/arch/aarch64/branch.h): one pwrite per site, never a run
// (a longer copy may store a word with an unaligned wider store, which is not single-copy
// atomic), then one sync for the batch.
Status AotTextWriter::storeEach(std::span<const TextPatch> patches) {
  Status result = Status::ok();
  size_t written = 0;
  for (const TextPatch& p : patches) {
    ++writes_;
    if (!mem_.write(p.address, p.to, arch::kStaticSiteSize)) {
      result = Status(Error::kSystemError, "AOT text: writing the instruction at " + hex(p.address) + " through /proc/self/mem failed (" +
                                               std::strerror(errno) + "); every site holds its old or its new instruction");
      break;
    }
    ++written;
  }
  if (written == 0) return result;
  unsynced_ = true;
  if (dropTranslations_) {
    planRuns(patches.first(written));
    for (const Run& run : runs_) dropEmulatorTranslations(run.lo, run.bytes.size());
  }
  if (int err = sync_.sync(); err != 0) {
    // The sites are written; until a sync succeeds (the next batch's first), another core may
    // still run an old instruction, which is as valid as the new one.
    return Status(Error::kSystemError, std::string("AOT text: the cross-core sync failed: ") + std::strerror(err) +
                                           " (every site holds its new instruction; the next update syncs first)");
  }
  unsynced_ = false;
  return result;
}

void AotTextWriter::planRuns(std::span<const TextPatch> patches) {
  runs_.clear();
  size_t i = 0;
  while (i < patches.size()) {
    // A run: sites whose bytes start in the page of the previous one's end, or the next page
    // (so every page it covers holds a site: mapped, and patchcall's to write).
    // It starts at its first page's start: the kernel copies a /proc/self/mem write a page-sized
    // chunk at a time, and chunks that straddle pages cost twice the page lookups (measured:
    // 21,000 bytes from a page start 5.2 us, from mid-page 7.6 us).
    Run run;
    run.lo = pageOf(patches[i].address);
    uintptr_t hi = patches[i].address + arch::kStaticSiteSize;
    run.first = i;
    size_t j = i + 1;
    while (j < patches.size() && pageOf(patches[j].address) <= pageOf(hi - 1) + kPage) {
      hi = patches[j].address + arch::kStaticSiteSize;
      ++j;
    }
    run.last = j;
    run.bytes.assign(reinterpret_cast<const char*>(run.lo), hi - run.lo);  // the text as it is now
    runs_.push_back(std::move(run));
    i = j;
  }
}

Status AotTextWriter::writePhase(std::span<const TextPatch> patches, int phase) {
  // kInt3s: the int3 at byte 0; kTails: bytes 1..4 of `to`; kHeads: byte 0 of `to`;
  // kUndoInt3s: byte 0 of `from`. Each run's buffer holds what the text holds after the
  // previous phase, so a phase changes only its own bytes in it (the others are written back
  // as they are).
  constexpr size_t kHead = arch::kBreakpointSize, kTail = arch::kStaticSiteSize - kHead;
  for (Run& run : runs_) {
    char* buf = run.bytes.data();
    for (size_t k = run.first; k < run.last; ++k) {
      const TextPatch& p = patches[k];
      size_t at = p.address - run.lo;
      // Constant sizes: the compiler stores them inline (a memcpy call per site cost more).
      if (phase == kTails) {
        std::memcpy(buf + at + kHead, p.to + kHead, kTail);
      } else {
        std::memcpy(buf + at, phase == kInt3s ? arch::kBreakpoint : phase == kHeads ? p.to : p.from, kHead);
      }
    }
    ++writes_;
    if (!mem_.write(run.lo, run.bytes.data(), run.bytes.size())) {
      return Status(Error::kSystemError, "AOT text: writing " + std::to_string(run.bytes.size()) + " bytes at " + hex(run.lo) +
                                             " through /proc/self/mem failed (" + std::strerror(errno) + ")");
    }
  }
  return Status::ok();
}

}  // namespace patchcall::detail::aot
