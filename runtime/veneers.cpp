// patchcall — Veneers (see veneers.h for the life of a veneer).
#include <cstring>
#include <string>

#include "format.h"
#include "reclaimer.h"
#include "veneers.h"

namespace patchcall::detail {

namespace {
using arch::kVeneerSize;

}  // namespace

Result<uintptr_t> Veneers::planVeneer(uintptr_t insn, uintptr_t target) {
  uintptr_t next = insn + arch::kCallSize;  // messages name the call's end
  if (!allowed_) {
    return Status(Error::kOutOfRange, "target " + hex(target) + " is out of " + std::string(arch::kFieldName) + " reach of the call ending at " +
                                          hex(next) + " and veneers are disabled");
  }
  uintptr_t v = 0;
  if (auto it = byTarget_.find(target); it != byTarget_.end()) v = it->second;
  for (auto& [t, slot] : planned_) {
    if (v == 0 && t == target) v = slot;
  }
  if (v == 0) {
    {
      std::lock_guard<std::mutex> lock(freeMutex_);
      if (!freeSlots_.empty()) {
        v = freeSlots_.back();
        freeSlots_.pop_back();
      }
    }
    if (v == 0) {
      Result<uintptr_t> s = pool_.take(arena_, kVeneerSize);
      if (!s) return s.status();
      v = *s;
    }
    try {
      planned_.emplace_back(target, v);
    } catch (...) {
      recycle(v);
      throw;
    }
  }
  if (!arch::inReach(insn, v)) {
    return Status(Error::kOutOfRange, "neither target " + hex(target) + " nor its veneer " + hex(v) +
                                          " is within " + std::string(arch::kFieldName) + " reach of the call ending at " + hex(next));
  }
  return v;
}

void Veneers::recycle(uintptr_t v) noexcept {
  std::lock_guard<std::mutex> lock(freeMutex_);
  try {
    freeSlots_.push_back(v);
  } catch (...) {
    // Out of memory: the 16 bytes stay unused (int3 fill) for the runtime's life.
  }
}

void Veneers::dropPlanned() noexcept {
  for (auto& p : planned_) recycle(p.second);
  planned_.clear();
}

Status Veneers::publishPlanned() {
  if (planned_.empty()) return Status::ok();
  // Allocate first: nothing below can fail.
  byTarget_.reserve(byTarget_.size() + planned_.size());
  users_.reserve(users_.size() + planned_.size());
  for (auto& [target, v] : planned_) {
    uint8_t code[kVeneerSize];
    arch::encodeVeneer(target, code);
    (void)writer_.write(v, code, sizeof code);
    byTarget_.emplace(target, v);
    users_.emplace(v, 0);
    if (observer_.filesEnabled()) observer_.codeLoaded(v, kVeneerSize, "veneer:" + hex(target));
  }
  planned_.clear();
  return writer_.sync().syncOrError("veneer");  // every core sees the veneers before any call can be pointed at them
}

void Veneers::reserveUser(uintptr_t field, uintptr_t destination, uintptr_t target) {
  // The only allocation: a user entry (0 = none yet; harmless if the update then fails).
  if (destination != target) userOf_.try_emplace(field, 0);
}

void Veneers::noteUser(uintptr_t field, uintptr_t destination, uintptr_t target) noexcept {
  bool viaVeneer = destination != target;
  if (userOf_.empty()) return;  // the common case: no veneer anywhere
  auto it = userOf_.find(field);
  if (it == userOf_.end() || it->second == destination) return;
  if (viaVeneer) {
    uintptr_t old = it->second;
    it->second = destination;
    ++users_.find(destination)->second;  // published: the entry exists
    if (old != 0) release(old);
  } else {
    uintptr_t old = it->second;
    userOf_.erase(it);
    release(old);
  }
}

void Veneers::forgetUser(uintptr_t field) noexcept {
  if (userOf_.empty()) return;
  auto it = userOf_.find(field);
  if (it == userOf_.end()) return;
  uintptr_t v = it->second;
  userOf_.erase(it);
  release(v);
}

void Veneers::release(uintptr_t v) noexcept {
  auto it = users_.find(v);
  if (it == users_.end() || --it->second != 0) return;
  if (!freeOutsideArena_ && !arena_.contains(reinterpret_cast<const void*>(arch::veneerTarget(v)))) return;  // pinned
  // Its entries stay until retireOrphans: a branch noted later in the same update may point
  // at it again (noteUser then finds the entry; nothing here may allocate or fail).
  try {
    orphans_.push_back(v);
  } catch (...) {
    // Out of memory: it stays live with no user (intact; a later far call may reuse it).
  }
}

void Veneers::retireOrphans() noexcept {
  for (uintptr_t v : orphans_) {
    auto it = users_.find(v);
    if (it == users_.end() || it->second != 0) continue;  // pointed at again later in the same update
    users_.erase(it);
    // No new user: a later far call to its target gets a fresh veneer.
    if (auto t = byTarget_.find(arch::veneerTarget(v)); t != byTarget_.end() && t->second == v) byTarget_.erase(t);
    try {
      retired_.fetch_add(1, std::memory_order_release);
      (void)reclaimer_->retire([this, v] {
        arena_.fill(v, kVeneerSize);  // under no text mutex: the arena defers it while shared
        recycle(v);
        freed_.fetch_add(1, std::memory_order_relaxed);
      });
    } catch (...) {
      // Out of memory: this veneer is never freed (16 bytes), but nothing runs freed code.
    }
  }
  orphans_.clear();
}

}  // namespace patchcall::detail
