// patchcall-stress — per-key version cells and the rule that decides whether a call was valid.
//
// Every target is JIT code returning `tag(key, version)` = (key index + 1) << 32 | version in
// the return register (rax, x0). For each key the updater publishes two cells (64-bit, tagged the same way):
//
//   begin  the newest version an update has STARTED to install   (stored before any write)
//   end    the newest version whose update has COMPLETED           (stored after update() returned)
//
// Updater, for one key moving from version v to v+1:
//   begin := v+1  ->  [pool mode: the target's data cell := v+1]  ->  rt.updateBatch(...)  ->  end := v+1
//
// Caller, around every call through a site of that key:
//   pre := end  ->  call  ->  post := begin  ->  valid iff  pre <= returned <= post  (as 64-bit
//   numbers, which also checks the key half: another key's tag is off by >= 2^32)
//
// Why every version in [pre, post] was current at some moment between the two reads, and
// why a correct protocol never returns anything else:
//  * Lower bound. `end == pre` was stored after update(pre) returned, i.e. after its last
//    cross-core sync, which serialized every core after the last code write of that update.
//    The caller's read of `end` comes after that serialization in its own instruction stream,
//    so every instruction it fetches from then on (the toggle, the call, the int3 the
//    breakpoint protocol may show) belongs to version pre or later. A thread already between
//    a toggle and its call read `pre` before the toggle, so the old call it still makes is a
//    version >= pre as well: that is exactly what the toggle's grace-period rule protects.
//  * Strict window (invariant 3). Direct and Breakpoint sites read `pre` right before the
//    call instruction, so the lower bound already says "no call started after update()
//    returned enters an older target". A toggle's call starts after the toggle; with
//    --strict-toggle (strict updates) each toggle site re-reads `end` into `pre` between the
//    toggle and call A (a per-key stub in the stall gap), holding toggles to the same rule.
//  * Upper bound. Every write that can make a site call version w (the rel32, the toggle flip,
//    the trap-table entry the SIGTRAP handler emulates) is a store issued after `begin := w`.
//    x86 stores become visible in program order, so a caller that ran version w's code and
//    then reads `begin` (program order after the call returned) reads w or later (TSO: on
//    x86-64 program order is all the caller and updater need).
//  * aarch64 (bench/stress/aarch64/emit.cpp): loads and stores may be reordered, and no data
//    barrier orders an instruction fetch, so each step above gets its ordering explicitly.
//    Updater: a full fence (dmb ish) after `begin := w` and the pool cell store, before the
//    update's code writes (a release store orders what comes before it, not later stores), and
//    `end` stored with release after update() returned. The code writes are cleaned to the
//    point of unification (dc cvau, ic ivau, dsb ish) and membarrier SYNC_CORE makes every
//    core take a context synchronization event before update() returns. Caller:
//      ldar pre, [end] ; isb ; bl site ; isb ; ldr post, [begin]
//    and every pool target starts with an isb before it loads its cell.
//    - Lower bound: the caller's ldar read an `end` stored after update(pre)'s sync, so in its
//      program order it comes after the context synchronization that sync forced on its core
//      (the membarrier IPI's smp_mb stands between), and so does the BL after it: the BL is
//      fetched after the write was made visible, as version pre or later. ldar (acquire)
//      also keeps the target's cell load and the `post` load from being satisfied before it.
//      The isb after it is that serializing instruction made explicit: redundant on hardware,
//      needed under qemu-user, where the sync cannot interrupt a vCPU inside a translated
//      block that holds the ldar and a BL translated before the write (without it the driver
//      saw calls one version below pre there).
//    - Upper bound: a caller that ran version w's code fetched a BL written after the fence
//      that follows `begin := w`; the isb after the call completes only once the BL and its
//      target have completed, and the `begin` load after it is then satisfied after that fetch
//      (the ldar of `pre` alone would not do: it orders data accesses, and a speculated
//      `begin` load could be satisfied before the rewritten BL was fetched). With Armv8's
//      other-multi-copy atomicity, a store visible to one observer is visible to all, so
//      `begin` (fenced before the code write) is >= w once the fetch saw version w.
//    - Pool cells: a target reached through a BL rewritten before its sync completed is
//      newer than pre; the cell it returns was stored before that rewrite (the fence), and the
//      target's leading isb keeps the cell load after the fetch that reached it.
//    Under qemu-user (the cross build's tests) guest loads and stores run as x86 host ones and
//    code changes become visible only at the emulator remap sync: the sequence is exercised
//    there, the hardware reordering it guards against is not.
//  * Versions are consecutive per key (a key appears at most once per batch), so the interval
//    is exactly the set of versions that were current during [pre read, post read].
// A stale call (executing a target older than pre), a torn rel32 (landing anywhere else), a
// wrong key, or running a freed (int3-filled) target all fall outside the interval or trap.
#pragma once

#include <atomic>
#include <cstdint>

namespace stress {

inline uint64_t tag(uint32_t keyIndex, uint32_t version) {
  return (uint64_t{keyIndex} + 1) << 32 | version;
}
inline uint32_t tagKey(uint64_t t) { return static_cast<uint32_t>(t >> 32) - 1; }
inline uint32_t tagVersion(uint64_t t) { return static_cast<uint32_t>(t); }

// The JIT callers read these with 64-bit loads at [base + 16*key] and [base + 16*key + 8]
// (plain on x86-64; ldar for `end` on aarch64).
struct alignas(16) KeyCells {
  std::atomic<uint64_t> end;    // +0: last completed version ("pre" is read from here)
  std::atomic<uint64_t> begin;  // +8: last started version  ("post" is read from here)
};
static_assert(sizeof(KeyCells) == 16);

}  // namespace stress
