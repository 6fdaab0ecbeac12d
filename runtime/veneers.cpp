// patchcall — veneers: stubs for targets out of a call's reach (their bytes:
// runtime/arch/<isa>/stubs.h; on x86-64 `jmp [rip+0]; .quad target`).
//
// Life of a veneer (every function here runs with the text mutex held):
//   1. planned  during validation (reachableViaVeneer): a slot is chosen, nothing written;
//               a refused batch drops it (dropPendingVeneers) and the arena is unchanged.
//   2. live     publishPendingVeneers writes it and syncs every core BEFORE any call is
//               pointed at it, so no core can reach a veneer it fetched as int3 fill.
//   3. orphan   refs (calls and trampoline jumps whose rel32 names it) fell to zero: it leaves
//               the far-target map at once and is retired after the update's last sync.
//   4. freed    a grace period later (the reclaimer's retire path) nobody can still be about
//               to execute it (a thread inside it has not passed a safepoint): int3-filled and
//               its slot reused by a later veneer.
// A toggle's inactive call counts as a user: a thread past the toggle may still take it.
// A foreign site keeps its reference when unregistered (its code still calls the veneer).
#include <cstring>

#include "format.h"
#include "reclaimer.h"
#include "runtime_impl.h"

namespace patchcall {

namespace {
using arch::kVeneerSize;
using detail::hex;
}  // namespace

Result<uintptr_t> Runtime::Impl::reachableViaVeneer(uintptr_t insn, uintptr_t target) {
  uintptr_t next = insn + arch::kCallSize;  // messages name the call's end
  if (!options.allowVeneers) {
    return Status(Error::kOutOfRange, "target " + hex(target) + " is out of rel32 reach of the call ending at " +
                                          hex(next) + " and veneers are disabled");
  }
  uintptr_t v = 0;
  if (auto it = veneers.find(target); it != veneers.end()) v = it->second;
  for (auto& [t, slot] : pendingVeneers) {
    if (v == 0 && t == target) v = slot;
  }
  if (v == 0) {
    {
      std::lock_guard<std::mutex> lock(veneerFreeMutex);
      if (!freeVeneerSlots.empty()) {
        v = freeVeneerSlots.back();
        freeVeneerSlots.pop_back();
      }
    }
    if (v == 0) {
      Result<uintptr_t> s = slot(veneerPool, kVeneerSize);
      if (!s) return s.status();
      v = *s;
    }
    try {
      pendingVeneers.emplace_back(target, v);
    } catch (...) {
      dropSlot(v);
      throw;
    }
  }
  if (!arch::inReach(insn, v)) {
    return Status(Error::kOutOfRange, "neither target " + hex(target) + " nor its veneer " + hex(v) +
                                          " is within rel32 reach of the call ending at " + hex(next));
  }
  return v;
}

void Runtime::Impl::dropSlot(uintptr_t v) noexcept {
  std::lock_guard<std::mutex> lock(veneerFreeMutex);
  try {
    freeVeneerSlots.push_back(v);
  } catch (...) {
    // Out of memory: the 16 bytes stay unused (int3 fill) for the runtime's life.
  }
}

void Runtime::Impl::dropPendingVeneers() noexcept {
  for (auto& p : pendingVeneers) dropSlot(p.second);
  pendingVeneers.clear();
}

Status Runtime::Impl::publishPendingVeneers() {
  if (pendingVeneers.empty()) return Status::ok();
  // Allocate first: nothing below can fail.
  veneers.reserve(veneers.size() + pendingVeneers.size());
  veneerRefs.reserve(veneerRefs.size() + pendingVeneers.size());
  for (auto& [target, v] : pendingVeneers) {
    uint8_t code[kVeneerSize];
    arch::encodeVeneer(target, code);
    write(v, code, sizeof code);
    veneers.emplace(target, v);
    veneerRefs.emplace(v, 0);
  }
  pendingVeneers.clear();
  return sync.syncOrError("veneer");  // every core sees the veneers before any call can be pointed at them
}

void Runtime::Impl::reserveCallDestination(uintptr_t rel32, uintptr_t destination, uintptr_t target) {
  // The only allocation: a user entry (0 = none yet; harmless if the update then fails).
  if (destination != target) veneerUsers.try_emplace(rel32, 0);
}

void Runtime::Impl::noteCallDestination(uintptr_t rel32, uintptr_t destination, uintptr_t target) noexcept {
  bool viaVeneer = destination != target;
  if (veneerUsers.empty()) return;  // the common case: no veneer anywhere
  auto it = veneerUsers.find(rel32);
  if (it == veneerUsers.end() || it->second == destination) return;
  if (viaVeneer) {
    uintptr_t old = it->second;
    it->second = destination;
    ++veneerRefs.find(destination)->second;  // published: the entry exists
    if (old != 0) releaseVeneer(old);
  } else {
    uintptr_t old = it->second;
    veneerUsers.erase(it);
    releaseVeneer(old);
  }
}

void Runtime::Impl::forgetCall(uintptr_t rel32) noexcept {
  if (veneerUsers.empty()) return;
  auto it = veneerUsers.find(rel32);
  if (it == veneerUsers.end()) return;
  uintptr_t v = it->second;
  veneerUsers.erase(it);
  releaseVeneer(v);
}

void Runtime::Impl::releaseVeneer(uintptr_t v) noexcept {
  auto it = veneerRefs.find(v);
  if (it == veneerRefs.end() || --it->second != 0) return;
  veneerRefs.erase(it);
  veneers.erase(arch::veneerTarget(v));  // no new user; a later far call to `target` gets a fresh veneer
  try {
    orphanVeneers.push_back(v);
  } catch (...) {
    // Out of memory: never freed (it stays unreachable and intact).
  }
}

void Runtime::Impl::retireOrphanVeneers() noexcept {
  for (uintptr_t v : orphanVeneers) {
    if (veneerRefs.count(v) != 0) continue;  // pointed at again later in the same update
    try {
      veneersRetired.fetch_add(1, std::memory_order_release);
      (void)reclaimer->retire([this, v] {
        std::memset(arena->toRw(reinterpret_cast<void*>(v)), arch::kFillByte, kVeneerSize);
        dropSlot(v);
        veneersFreed.fetch_add(1, std::memory_order_relaxed);
      });
    } catch (...) {
      // Out of memory: this veneer is never freed (16 bytes), but nothing runs freed code.
    }
  }
  orphanVeneers.clear();
}

}  // namespace patchcall
