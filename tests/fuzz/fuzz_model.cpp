// api_fuzz: what the model expects (targets, reach, values) and the invariants checked after
// every operation.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_session.h"

namespace patchcall::fuzz {

// ---- model queries --------------------------------------------------------------------------

size_t Session::liveSites() const {
  size_t n = foreign_ ? 1 : 0;
  for (const BlobM& b : blobs_) if (b.state == BlobState::kLive) n += b.sites.size();
  return n;
}
size_t Session::maybeSites() const {
  size_t n = 0;
  for (const BlobM& b : blobs_) if (b.state == BlobState::kRetired) n += b.sites.size();
  return n;
}
bool Session::keyHasToggles(size_t k) const {
  for (const BlobM& b : blobs_) {
    if (b.state == BlobState::kFreed) continue;
    for (const SiteM& s : b.sites) if (s.key == k && s.form == SiteForm::kToggle) return true;
  }
  return false;
}
bool Session::keyHasSites(size_t k, bool includeRetired) const {
  if (foreign_ && foreign_->key == k) return true;
  for (const BlobM& b : blobs_) {
    if (b.state == BlobState::kFreed || (b.state == BlobState::kRetired && !includeRetired)) continue;
    for (const SiteM& s : b.sites) if (s.key == k) return true;
  }
  return false;
}

std::optional<uint32_t> Session::valueAt(const void* p, int depth) const {
  if (p == nullptr || depth > 4) return std::nullopt;
  for (int i = 0; i < kCxxTargets; ++i) if (cxxTargets()[i].fn == p) return cxxTargets()[i].value;
  if (p == farFunction()) return kFarValue;
  for (const BlobM& b : blobs_) {
    if (b.state == BlobState::kLive && b.blob.code == p) return b.returner ? std::optional<uint32_t>(b.value) : blobValue(b, depth);
  }
  for (const KeyM& k : keys_) if (k.trampoline == p) return valueAt(k.target, depth + 1);
  return std::nullopt;
}

std::optional<uint32_t> Session::blobValue(const BlobM& b, int depth) const {
  uint32_t acc = 0;
  for (const SiteM& s : b.sites) {
    std::optional<uint32_t> v = valueAt(keys_[s.key].target, depth + 1);
    if (!v) return std::nullopt;
    acc = acc * 31 + *v;
  }
  return acc;
}

Codes Session::validateCodes(const void* t, size_t forKey, bool inBatch) const {
  auto a = reinterpret_cast<uintptr_t>(t);
  if (a == 0) return bit(Error::kNullTarget);
  if (options_.targetAlignment > 1 && a % options_.targetAlignment != 0) return bit(Error::kMisalignedTarget);
  if (a % layout::instructionAlign() != 0) return bit(Error::kMisalignedTarget);  // aarch64: no instruction starts there
  if (!inArena(t)) return kOk;
  if (a < arenaLo_ + 4096) {  // the runtime page: only its two shared targets may be called
    return t == sharedTargets_[0] || t == sharedTargets_[1] ? kOk : bit(Error::kInvalidArgument);
  }
  if (trampolineSlotCovering(t)) {
    // Only a live key's entry is callable, and only if the chain of trampolines it starts
    // does not lead back to the key being updated (in a batch, other entries may change the
    // chain: either outcome).
    size_t k = 0;
    while (k < keys_.size() && keys_[k].trampoline != t) ++k;
    if (k == keys_.size() || !keys_[k].live) return bit(Error::kInvalidArgument);
    for (size_t steps = 0; k < keys_.size(); ++steps) {
      if (k == forKey || steps > keys_.size()) return bit(Error::kInvalidArgument) | (inBatch ? kOk : 0);
      size_t next = 0;
      while (next < keys_.size() && keys_[next].trampoline != keys_[k].target) ++next;
      k = next;
    }
    return inBatch ? kOk | bit(Error::kInvalidArgument) : kOk;
  }
  if (const BlobM* b = liveBlobCovering(t)) {
    for (const SiteM& s : b->sites) {
      const uint8_t* p = static_cast<const uint8_t*>(t);
      if (p > s.at && p < s.at + layout::siteSize(s.form)) return bit(Error::kInvalidArgument);
    }
    return kOk;
  }
  // Freed ranges may have been reused for a trampoline or veneer chunk.
  if (retiredBlobCovering(t)) return bit(Error::kRetiredTarget) | bit(Error::kInvalidArgument) | kOk;
  return bit(Error::kRetiredTarget) | bit(Error::kInvalidArgument);
}

Codes Session::reachCodes(const void* t, bool includeForeign) const {
  auto a = reinterpret_cast<uintptr_t>(t);
  Codes c = 0;
  auto one = [&](Reach r, Reach veneerReach) {
    if (r == Reach::kNear) return c |= kOk;
    if (r == Reach::kMaybe) c |= kOk;
    if (!options_.allowVeneers) return c |= bit(Error::kOutOfRange);
    c |= bit(Error::kArenaExhausted);  // a new veneer chunk may not fit
    if (veneerReach != Reach::kFar) c |= kOk;
    if (veneerReach != Reach::kNear) c |= bit(Error::kOutOfRange);
    return c;
  };
  one(reachFrom(arenaLo_, arenaHi_, a), Reach::kNear);
  if (includeForeign && foreignCode()->page != nullptr) {
    uintptr_t next = layout::displacementOrigin(foreignCode()->call());
    one(reachFrom(next, next, a), reachFrom(arenaLo_, arenaHi_, next));
  }
  // kOk only if every call can be made to reach.
  bool allOk = true;
  auto check = [&](Reach r, Reach vr) {
    if (r == Reach::kFar && (!options_.allowVeneers || vr == Reach::kFar)) allOk = false;
  };
  check(reachFrom(arenaLo_, arenaHi_, a), Reach::kNear);
  if (includeForeign && foreignCode()->page != nullptr) {
    uintptr_t next = layout::displacementOrigin(foreignCode()->call());
    check(reachFrom(next, next, a), reachFrom(arenaLo_, arenaHi_, next));
  }
  if (!allOk) c &= ~kOk;
  return c;
}

// ---- pickers ------------------------------------------------------------------------------

const void* Session::pickTarget(std::string* what) {
  auto blobPick = [&](bool returner, bool live) -> const BlobM* {
    std::vector<const BlobM*> c;
    for (const BlobM& b : blobs_) {
      if (b.returner == returner && (b.state == BlobState::kLive) == live) c.push_back(&b);
    }
    return c.empty() ? nullptr : c[in_.below(static_cast<uint32_t>(c.size()))];
  };
  switch (in_.below(14)) {
    case 0: case 1: case 2: {
      const BlobM* b = blobPick(true, true);
      if (b != nullptr) return *what = "returner " + std::to_string(b->value), b->blob.code;
      [[fallthrough]];
    }
    case 3: {
      int i = static_cast<int>(in_.below(kCxxTargets));
      return *what = "cxx" + std::to_string(i), cxxTargets()[i].fn;
    }
    case 4:
      if (farFunction() != nullptr) return *what = "far function", farFunction();
      return *what = "null", nullptr;
    case 5:
      if (!keys_.empty()) {
        size_t k = pickKeyIndex();
        return *what = "trampoline of key#" + std::to_string(k), keys_[k].trampoline;
      }
      return *what = "null", nullptr;
    case 6: return *what = "null", nullptr;
    case 7: {
      const BlobM* b = blobPick(true, true);
      const void* base = b != nullptr ? b->blob.code : cxxTargets()[0].fn;
      return *what = "misaligned (+1)", static_cast<const uint8_t*>(base) + 1 + in_.below(15);
    }
    case 8: {
      const BlobM* b = blobPick(true, false);
      if (b == nullptr) b = blobPick(false, false);
      if (b != nullptr) return *what = "retired blob", b->blob.code;
      return *what = "runtime page", reinterpret_cast<const void*>(arenaLo_ + 128);
    }
    case 9: {  // any 64-byte line of the runtime page but the two shared targets' (448, 512)
      size_t line = in_.below(62);
      return *what = "runtime page", reinterpret_cast<const void*>(arenaLo_ + 64 * (line < 7 ? line : line + 2));
    }
    case 10: return *what = "low unmapped", reinterpret_cast<const void*>(uintptr_t{0x10000});
    case 11: {
      const BlobM* b = blobPick(false, true);
      if (b != nullptr) return *what = "caller blob", b->blob.code;
      return *what = "cxx0", cxxTargets()[0].fn;
    }
    case 12: {
      const BlobM* b = blobPick(false, true);
      if (b != nullptr) return *what = "blob interior", b->code() + 1 + in_.below(static_cast<uint32_t>(b->blob.size - 1));
      return *what = "null", nullptr;
    }
    default:
      if (!keys_.empty()) return *what = "trampoline interior", keys_[pickKeyIndex()].trampoline + 1 + in_.below(4);
      return *what = "cxx1", cxxTargets()[1].fn;
  }
}

Key Session::pickKey(size_t* index) {
  uint32_t r = in_.below(8);
  if (keys_.empty() || r == 6 || r == 7) {
    *index = SIZE_MAX;
    return r == 6 ? Key{} : Key{100000u + in_.u8()};
  }
  *index = pickKeyIndex();
  return keys_[*index].key;
}

// ---- invariants -------------------------------------------------------------------------------

void Session::checkBranch(const uint8_t* insn, bool call, const void* target, const std::string& what) {
  layout::Branch d = layout::readBranch(insn, call);
  FUZZ_CHECK(d.ok, what + " at " + hex(insn) + " decodes as '" + d.text + "'");
  const uint8_t* dest = d.destination;
  if (dest == target) return;
  // Through a veneer (fuzz_layout.h) in the arena.
  FUZZ_CHECK(inArena(dest), what + " at " + hex(insn) + " ('" + d.text + "') goes to " + hex(dest) +
                                ", neither the key's target " + hex(target) + " nor a veneer in the arena");
  std::optional<uint64_t> veneer = layout::veneerTarget(dest);
  FUZZ_CHECK(veneer && *veneer == reinterpret_cast<uint64_t>(target),
             what + " at " + hex(insn) + " goes to " + hex(dest) + " which is no veneer for " + hex(target));
  FUZZ_CHECK(!layout::inDirectReach(insn, target), what + " at " + hex(insn) + " uses a veneer for a target in direct reach");
}

void Session::checkSite(const SiteM& s, bool foreign) {
  const KeyM& k = keys_[s.key];
  std::string what = "site " + hex(s.at) + " (key " + std::to_string(k.key.id) + ", form " +
                     std::to_string(static_cast<int>(s.form)) + ")";
  Result<SiteInfo> info = rt().site(s.at);
  FUZZ_CHECK(info.isOk(), what + ": site() -> " + str(info.status()));
  FUZZ_CHECK(info->key == k.key && info->form == s.form && info->foreign == foreign && info->address == s.at,
             what + ": site() reports key " + std::to_string(info->key.id) + " form " + std::to_string(static_cast<int>(info->form)));
  FUZZ_CHECK(info->target == k.target, what + ": site() reports target " + hex(info->target) + ", model " + hex(k.target));
  const uint8_t* call = s.at;
  if (s.form == SiteForm::kToggle) {
    std::string problem;
    call = layout::toggleSelectedCall(s.at, &problem);
    FUZZ_CHECK(call != nullptr, what + ": " + problem);
  }
  if (s.form == SiteForm::kDirect) {
    FUZZ_CHECK(layout::directFieldAligned(s.at), what + ": Direct site's field not 4-byte aligned");
  }
  checkBranch(call, true, k.target, what);
}

void Session::checkAll() {
  FUZZ_CHECK(shared_.violation.empty(), shared_.violation);
  size_t liveKeys = 0;
  for (const KeyM& k : keys_) {
    std::string what = "key " + std::to_string(k.key.id);
    Result<const void*> t = rt().target(k.key);
    if (!k.live) {
      expectCodes(what + " (destroyed) target()", t.status(), bit(Error::kUnknownKey));
      expectCodes(what + " (destroyed) targetCell()", rt().targetCell(k.key).status(), bit(Error::kUnknownKey));
      continue;
    }
    ++liveKeys;
    FUZZ_CHECK(t.isOk() && *t == k.target, what + ": target() " + str(t.status()) + " " + (t ? hex(*t) : "") + ", model " + hex(k.target));
    Result<const void*> tr = rt().trampoline(k.key);
    FUZZ_CHECK(tr.isOk() && *tr == k.trampoline, what + ": trampoline moved");
    checkBranch(k.trampoline, false, k.target, what + " trampoline");
    Result<const void* const*> cell = rt().targetCell(k.key);
    FUZZ_CHECK(cell.isOk() && reinterpret_cast<uintptr_t>(*cell) % 8 == 0 && **cell == k.target,
               what + ": target cell " + str(cell.status()) + " holds " + (cell ? hex(**cell) : "") + ", model " + hex(k.target));
  }
  for (const BlobM& b : blobs_) {
    if (b.state != BlobState::kLive) continue;
    for (const SiteM& s : b.sites) checkSite(s, false);
  }
  if (foreign_) checkSite(*foreign_, true);

  RuntimeStats st = rt().stats();
  size_t liveBlobs = 0;
  for (const BlobM& b : blobs_) liveBlobs += b.state == BlobState::kLive ? 1 : 0;
  FUZZ_CHECK(st.keys == liveKeys, "stats.keys " + std::to_string(st.keys) + ", model " + std::to_string(liveKeys));
  FUZZ_CHECK(st.updates == updates_, "stats.updates " + std::to_string(st.updates) + ", model " + std::to_string(updates_));
  FUZZ_CHECK(st.blobsRetired == blobsRetired_, "stats.blobsRetired " + std::to_string(st.blobsRetired));
  FUZZ_CHECK(st.blobsFreed <= st.blobsRetired, "more blobs freed than retired");
  // stats() is not one snapshot: the reclaimer thread frees blobs under the text mutex and
  // counts them after it, so in background mode only bounds hold.
  uint64_t unfreed = st.blobsRetired - st.blobsFreed;
  FUZZ_CHECK(st.blobs == liveBlobs + unfreed ||
                 (options_.backgroundReclaimer && st.blobs >= liveBlobs && st.blobs <= liveBlobs + st.blobsRetired),
             "stats.blobs " + std::to_string(st.blobs) + ", model live " + std::to_string(liveBlobs) + " + unfreed " +
                 std::to_string(st.blobsRetired - st.blobsFreed));
  // Sites first: stats() counts them before it reads blobsFreed, so a blob freed in between
  // (background reclaimer) is still counted here although blobsFreed already says freed.
  size_t live = liveSites(), maybe = maybeSites();
  FUZZ_CHECK(st.sites >= live && st.sites <= live + maybe,
             "stats.sites " + std::to_string(st.sites) + ", model " + std::to_string(live) + " (+" + std::to_string(maybe) + " maybe)");
  if (st.blobsFreed == st.blobsRetired) {
    for (BlobM& b : blobs_) if (b.state == BlobState::kRetired) b.state = BlobState::kFreed;
  }
  FUZZ_CHECK(st.callbacksRetired == callbacksRetired_, "stats.callbacksRetired " + std::to_string(st.callbacksRetired));
  uint64_t ran = shared_.callbacksRun.load();
  FUZZ_CHECK(st.callbacksRun <= st.callbacksRetired && (st.callbacksRun == ran || options_.backgroundReclaimer),
             "stats.callbacksRun " + std::to_string(st.callbacksRun) + ", callbacks counted " + std::to_string(ran));
  ArenaInfo a = rt().arenaInfo();
  FUZZ_CHECK(a.used <= a.size, "arena used " + std::to_string(a.used) + " > size");
  FUZZ_CHECK(isThreadRegistered() == self_.active(), "isThreadRegistered disagrees with the ThreadScope");
}

}  // namespace patchcall::fuzz
