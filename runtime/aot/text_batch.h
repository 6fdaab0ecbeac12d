// patchcall — AotTextWriter: rewrites the instructions of AOT static keys and calls in
// compiled text. On aarch64 each site is one aligned word, stored by one 4-byte write, and one
// sync follows the batch (AotTextWriter::storeEach). On x86-64 a site is 5 bytes, rewritten
// with the breakpoint protocol, all of one batch together: int3 on every first byte, sync every core,
// every tail, sync, every first byte. A thread reaching a site mid-batch traps and the SIGTRAP
// handler (TrapTable) continues it as the new instruction would. The kernel's text_poke_bp
// syncs a third time, after the first bytes, only so it can withdraw its int3 handler's
// entries; here they stay until the batch after next (TrapTable::openLingering), so a batch
// costs two syncs and still returns only when no core can run the old instruction.
//
// Text stays read-execute: writes go through /proc/self/mem. Each phase writes nearby sites
// with one pwrite (a run of sites whose pages touch, from its first page's start: the bytes
// between them are written back unchanged, so a run never covers a page without a site),
// which makes a batch cost three pwrites per run plus two syncs instead of three pwrites per
// site. The kernel's copy (memcpy; rep movsb with fast short moves) is not promised to be one
// store, so no single-store shortcut is ever taken here. Every write's result is checked.
//
// Process-wide (one per process, under the AOT registry's mutex): the /proc/self/mem
// descriptor (reopened by a fork child before its first batch) and the cross-core sync.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <vector>
#include <string>

#include "../arch/arch.h"
#include "../cross_core_sync.h"
#include "../proc_self_mem.h"
#include "../trap_table.h"
#include "patchcall/status.h"

namespace patchcall::detail::aot {

struct TextPatch {
  uintptr_t address = 0;
  uint8_t from[arch::kStaticSiteSize] = {};  // what the site holds now
  uint8_t to[arch::kStaticSiteSize] = {};
  // Where a thread that meets the site's int3 continues, and how (planTrap fills them, once
  // per patch: a cached plan does not decode its sites again on every flip).
  uintptr_t resume = 0;
  TrapTable::Emulate resumeAs = TrapTable::Emulate::kJump;
};

// Fills p.resume/resumeAs from p.to: a call or jump goes to its destination, the NOP to the
// next instruction.
void planTrap(TextPatch& p);

class AotTextWriter {
 public:
  // Sorted by address, non-overlapping, each `from` as read just before and its trap target
  // planned (planTrap: done once where the patch is made). Larger batches run
  // as several protocol rounds of TrapTable::kMaxBatch sites. On a failed write or sync the
  // error names it. A round that fails before its tails puts every first byte back (the sites
  // are as they were); after that, a site that could not be completed keeps its trap entry
  // for good (the handler goes on emulating it), so no thread ever meets an unowned int3.
  Status apply(std::span<const TextPatch> patches);
  // For data-only changes (the trampoline's indirect target): one sync, after which every
  // core sees the change.
  Status syncOnly();
  // An empty batch still performs the sync an earlier batch's failed sync left pending.
  uint64_t batches() const noexcept { return batches_; }
  uint64_t sitesWritten() const noexcept { return sitesWritten_; }
  uint64_t writes() const noexcept { return writes_; }
  uint64_t syncs() const noexcept { return sync_.count(); }
  // In a fork child (the atfork handler): the parent's /proc/self/mem, closed without a write.
  void closeInherited(pid_t parent) const noexcept { mem_.closeInherited(parent); }

 private:
  Status ready();
  Status syncPending();
  Status round(std::span<const TextPatch> patches);       // x86-64: one breakpoint-protocol round
  Status storeEach(std::span<const TextPatch> patches);   // aarch64: one store per site, one sync
  // The runs of nearby sites and their text, read once per round.
  void planRuns(std::span<const TextPatch> patches);
  // kInt3s writes every int3, kTails every tail of `to`, kHeads every first byte of `to`;
  // kUndoInt3s puts every first byte of `from` back (a batch that failed before its tails).
  enum Phase { kInt3s, kTails, kHeads, kUndoInt3s };
  Status writePhase(std::span<const TextPatch> patches, int phase);

  ProcSelfMem mem_;
  bool syncReady_ = false;
  bool unsynced_ = false;          // written, but the sync after it failed
  bool dropTranslations_ = false;  // PATCHCALL_SYNC=emulator-remap: qemu-user must see the writes
  CrossCoreSync sync_;
  uint64_t batches_ = 0;
  uint64_t rounds_ = 0;                     // its parity is the generation of a round's entries
  Status broken_;                           // a failed round's int3s could not all be kept
  uint64_t sitesWritten_ = 0;
  uint64_t writes_ = 0;
  struct Run {
    uintptr_t lo = 0;          // the start of the first site's page
    size_t first = 0, last = 0;  // its patches: [first, last)
    std::string bytes;         // the text of [lo, last site's end), as the next pwrite writes it
  };
  std::vector<Run> runs_;
};

}  // namespace patchcall::detail::aot
