// patchcall — the process-wide SIGTRAP handler for the breakpoint protocol.
//
// This is patchcall's one piece of process-wide state (a signal handler is per process):
// a fixed, never-freed open-addressing table of sites currently int3-protected (and two
// sorted arrays for AOT batches' entries, below), each with
// the target a trapping thread must be sent to and how: as a call (push site+5, jump to
// target: JIT and foreign call sites, AOT inline calls) or as a jump (AOT branches, tail calls
// and trampolines; a NOP5 is a jump to site+5). The handler is async-signal-safe (atomics
// only) and chains to the previous SIGTRAP handler for traps it does not own.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>

#include "patchcall/status.h"

namespace patchcall::detail {

class TrapTable {
 public:
  static constexpr size_t kCapacity = size_t{1} << 15;
  // Largest number of sites one protocol round protects (keeps probe chains short).
  static constexpr size_t kMaxBatch = kCapacity / 2;

  static TrapTable& instance();
  // Installs the handler once per process; later calls are no-ops.
  Status installHandler();

  // Writers hold this for a whole protocol round: rounds never overlap, so clear() can
  // empty the table without tombstones.
  std::mutex& roundMutex() noexcept { return roundMutex_; }
  // A round: publish every site, beginRound(), write the int3 bytes ... write the E8 bytes,
  // sync, endRound(). The handler compares the round sequence before and after it looks, so a
  // trap it handles late (across any number of rounds) is never mistaken for a foreign one.
  // Returns the slot used (for endRound), or -1 when the table is full.
  enum class Emulate : uint8_t { kCall, kJump };
  int64_t publish(uintptr_t site, uintptr_t target, Emulate how = Emulate::kCall) noexcept;
  void beginRound() noexcept;
  // Every site of the round holds its complete new call by now.
  void endRound(const uint32_t* slots, size_t count) noexcept;

  // AOT batches (aot/text_batch.*) leave out the protocol's last sync: once every core has
  // seen the int3s and the tails, a core can only run the new instruction or trap on a stale
  // int3, and a trap finds its entry here. So their entries outlive the round, in one of two
  // generations (the batch number's parity); the batch two later replaces its generation
  // before it writes, when the syncs of the batch in between have made every core see the
  // completed instructions (a late handler then finds no entry and re-executes the site).
  // A generation is a sorted array rewritten whole under a sequence lock: a batch's entries
  // are written in address order into consecutive lines (the hashed table scatters them, one
  // cache miss each), and the handler finds one by binary search. Same round protocol
  // otherwise: openLingering, putLingering..., closeLingering, beginRound, writes,
  // endLingeringRound.
  struct Entry {
    std::atomic<uintptr_t> site{0};
    std::atomic<uintptr_t> target{0};
    std::atomic<uint8_t> how{0};  // Emulate
  };
  struct Generation {
    std::atomic<uint64_t> seq{0};  // odd while its writer rewrites it: readers treat it as empty
    std::atomic<uint32_t> count{0};
    Entry entries[kMaxBatch];
  };
  // Empties `generation` (its old entries are obsolete: see above) for new ones.
  Generation& openLingering(unsigned generation) noexcept;
  // Entry i of an open generation; sites strictly ascending in i.
  static void putLingering(Generation& g, size_t i, uintptr_t site, uintptr_t target, Emulate how) noexcept {
    g.entries[i].site.store(site, std::memory_order_relaxed);
    g.entries[i].target.store(target, std::memory_order_relaxed);
    g.entries[i].how.store(static_cast<uint8_t>(how), std::memory_order_relaxed);
  }
  void closeLingering(Generation& g, size_t count) noexcept;
  void endLingeringRound() noexcept;
  uint64_t emulated() const noexcept;

  // True when the handler cannot emulate a call in this process: its threads run with a
  // shadow stack (arch::shadowStackEnabled, read once), or a test pretends so. Jumps and the
  // NOP are still emulated; callers refuse call sites that need it (JIT Breakpoint and
  // foreign sites) or leave them as they are (AOT inline calls keep their trampoline).
  static bool callEmulationBlocked() noexcept;

  // For the handler.
  bool lookup(uintptr_t site, uintptr_t* target, Emulate* how) const noexcept;

 private:
  TrapTable() = default;
  std::mutex roundMutex_;
  std::once_flag installOnce_;
  Status installStatus_;
};

}  // namespace patchcall::detail
