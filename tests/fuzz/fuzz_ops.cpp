// api_fuzz: the operations an input decodes into, each with the results the model allows.
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_code.h"
#include "fuzz_session.h"
#include "patchcall/static_call.h"

namespace patchcall::fuzz {

// ---- operations ------------------------------------------------------------------------------

// `what` failed with kArenaExhausted: a reservation of `need` bytes must fail too.
void Session::crossCheckExhausted(size_t need, const std::string& what) {
  Result<CodeReservation> r = rt().reserveCode(need);
  if (r) rt().abandonCode(*r);
  FUZZ_CHECK(!r, what + " reported kArenaExhausted but reserveCode(" + std::to_string(need) + ") succeeded");
}

void Session::opNewReturner() {
  if (blobs_.size() >= kMaxBlobs) return;
  uint32_t value = nextValue_++;
  jit::Assembler a(rt());
  code::emitReturner(a, value);
  Result<Blob> b = jit::install(a);
  log("new returner " + std::to_string(value) + " -> " + str(b.status()));
  expectCodes("install(returner)", b.status(), kOk | bit(Error::kArenaExhausted));
  if (!b) return crossCheckExhausted(64, "install(returner)");
  FUZZ_CHECK(reinterpret_cast<uintptr_t>(b->code) % 64 == 0, "blob not 64-byte aligned: " + hex(b->code));
  BlobM m;
  m.blob = *b;
  m.returner = true;
  m.value = value;
  blobs_.push_back(m);
  auto fn = reinterpret_cast<int (*)()>(b->code);
  FUZZ_CHECK(static_cast<uint32_t>(fn()) == value, "a fresh returner returned the wrong value");
}

void Session::opCreateKey() {
  if (keys_.size() >= kMaxKeys) return;
  std::string what;
  const void* t = pickTarget(&what);
  std::string name;
  switch (in_.below(4)) {
    case 0: break;
    case 1: name = "key"; break;
    case 2: name = std::string(300, 'n'); break;
    default: name = std::string("nul\0inside", 10); break;
  }
  Codes v = validateCodes(t, SIZE_MAX, false), allowed = v & ~kOk;
  if ((v & kOk) != 0) {
    if (keysCreated_ >= options_.maxKeys) allowed |= bit(Error::kInvalidArgument);
    else allowed |= bit(Error::kArenaExhausted) | reachCodes(t, false);
  }
  Result<Key> k = rt().createKey(t, name);
  log("createKey(" + what + " " + hex(t) + ") -> " + str(k.status()));
  expectCodes("createKey(" + what + ")", k.status(), allowed);
  if (k.code() == Error::kArenaExhausted) crossCheckExhausted(4096, "createKey");
  if (!k) return;
  ++keysCreated_;
  Result<const void*> tramp = rt().trampoline(*k);
  FUZZ_CHECK(tramp.isOk(), "trampoline of a fresh key: " + str(tramp.status()));
  auto entry = static_cast<const uint8_t*>(*tramp);
  FUZZ_CHECK(inArena(entry) && layout::trampolineEntryAligned(entry),
             "trampoline " + hex(entry) + " outside the arena or its jump's field unaligned");
  keys_.push_back(KeyM{*k, true, t, entry});
}

void Session::opStaticCall() {
  if (keys_.size() >= kMaxKeys) return;
  using Sc = StaticCall<int()>;
  bool null = in_.below(4) == 0;
  const CxxTarget& first = cxxTargets()[in_.below(kCxxTargets)];
  const CxxTarget& second = cxxTargets()[in_.below(kCxxTargets)];
  Result<Sc> sc = Sc::create(rt(), null ? nullptr : reinterpret_cast<Sc::Fn>(const_cast<void*>(first.fn)));
  log(std::string("StaticCall::create(") + (null ? "null" : "cxx") + ") -> " + str(sc.status()));
  const void* t = null ? nullptr : first.fn;
  Codes v = validateCodes(t, SIZE_MAX, false), allowed = v & ~kOk;
  if ((v & kOk) != 0) {
    allowed |= keysCreated_ >= options_.maxKeys ? bit(Error::kInvalidArgument)
                                                : bit(Error::kArenaExhausted) | reachCodes(t, false);
  }
  expectCodes("StaticCall::create", sc.status(), allowed);
  if (!sc) return;
  ++keysCreated_;
  keys_.push_back(KeyM{sc->key(), true, first.fn, reinterpret_cast<const uint8_t*>(sc->trampoline())});
  FUZZ_CHECK(static_cast<uint32_t>((*sc)()) == first.value, "StaticCall returned the wrong value");
  Result<Sc::Fn> bad = sc->update(nullptr);
  expectCodes("StaticCall::update(null)", bad.status(), bit(Error::kNullTarget));
  Result<Sc::Fn> old = sc->update(reinterpret_cast<Sc::Fn>(const_cast<void*>(second.fn)));
  Codes v2 = validateCodes(second.fn, keys_.size() - 1, false);
  expectCodes("StaticCall::update", old.status(), (v2 & ~kOk) | ((v2 & kOk) != 0 ? reachCodes(second.fn, false) : 0));
  if (!old) return;
  FUZZ_CHECK(reinterpret_cast<const void*>(*old) == first.fn, "StaticCall::update returned the wrong previous target");
  if (second.fn != first.fn) ++updates_;  // to the current target: a no-op, not counted
  keys_.back().target = second.fn;
  FUZZ_CHECK(static_cast<uint32_t>((*sc)()) == second.value && sc->target() == reinterpret_cast<Sc::Fn>(const_cast<void*>(second.fn)),
             "StaticCall after update does not call the new target");
}

void Session::afterUpdate(size_t k, const void* target) {
  keys_[k].target = target;
  ++updates_;
}

void Session::opUpdate() {
  size_t k;
  Key key = pickKey(&k);
  std::string what;
  const void* t = pickTarget(&what);
  Codes allowed;
  bool live = k != SIZE_MAX && keys_[k].live;
  if (!live) {
    allowed = bit(Error::kUnknownKey);
  } else {
    Codes v = validateCodes(t, k, false);
    allowed = v & ~kOk;
    if ((v & kOk) != 0) {
      allowed |= reachCodes(t, foreign_ && foreign_->key == k);
      if (keyHasToggles(k) && (helperStuck() || options_.backgroundReclaimer)) {
        if (helperStuck() && timeoutsLeft_-- <= 0) return;  // keep the input's run time bounded
        allowed |= bit(Error::kTimeout);
      }
    }
  }
  Result<const void*> old = rt().update(key, t);
  log("update(key " + std::to_string(key.id) + ", " + what + " " + hex(t) + ") -> " + str(old.status()));
  expectCodes("update(" + what + ")", old.status(), allowed);
  if (old.code() == Error::kArenaExhausted) crossCheckExhausted(4096, "update");
  if (!old) return;
  FUZZ_CHECK(*old == keys_[k].target, "update returned previous " + hex(*old) + ", model " + hex(keys_[k].target));
  if (t != keys_[k].target) afterUpdate(k, t);  // to the current target: a no-op, not counted
}

void Session::opBatch() {
  size_t n = in_.below(6);
  std::vector<KeyUpdate> batch;
  std::vector<size_t> index;
  std::string desc;
  Codes allowed = 0;
  bool okPossible = true, waits = false;
  std::vector<size_t> seen;
  for (size_t i = 0; i < n; ++i) {
    size_t k;
    Key key = pickKey(&k);
    std::string what;
    const void* t = pickTarget(&what);
    batch.push_back({key, t});
    index.push_back(k);
    desc += " {" + std::to_string(key.id) + ", " + what + "}";
    if (!okPossible) continue;
    if (k == SIZE_MAX || !keys_[k].live) {
      allowed |= bit(Error::kUnknownKey), okPossible = false;
    } else if (std::find(seen.begin(), seen.end(), k) != seen.end()) {
      allowed |= bit(Error::kInvalidArgument), okPossible = false;
    } else {
      seen.push_back(k);
      Codes c = validateCodes(t, k, true);
      if ((c & kOk) != 0) c = (c & ~kOk) | reachCodes(t, foreign_ && foreign_->key == k);
      allowed |= c & ~kOk;
      if ((c & kOk) == 0) okPossible = false;
      waits |= keyHasToggles(k);
    }
  }
  if (okPossible) {
    allowed |= kOk;
    if (waits && (helperStuck() || options_.backgroundReclaimer)) {
      if (helperStuck() && timeoutsLeft_-- <= 0) return;
      allowed |= bit(Error::kTimeout);
    }
  }
  Status s = rt().updateBatch(batch);
  log("updateBatch(" + desc + " ) -> " + str(s));
  expectCodes("updateBatch", s, allowed);
  if (s.code() == Error::kArenaExhausted) crossCheckExhausted(4096, "updateBatch");
  if (!s.isOk()) return;
  // A batch that moves no key is a no-op (nothing written, not counted); otherwise every key counts.
  bool moves = false;
  for (size_t i = 0; i < n; ++i) moves = moves || batch[i].target != keys_[index[i]].target;
  for (size_t i = 0; i < n && moves; ++i) afterUpdate(index[i], batch[i].target);
}

void Session::opDestroyKey() {
  size_t k;
  Key key = pickKey(&k);
  Codes allowed;
  if (k == SIZE_MAX || !keys_[k].live) allowed = bit(Error::kUnknownKey);
  else if (keyHasSites(k, false)) allowed = bit(Error::kStillTargeted);
  else if (keyHasSites(k, true)) allowed = bit(Error::kStillTargeted) | kOk;
  else allowed = kOk;
  Status s = rt().destroyKey(key);
  log("destroyKey(" + std::to_string(key.id) + ") -> " + str(s));
  expectCodes("destroyKey", s, allowed);
  if (!s.isOk()) return;
  keys_[k].live = false;
  // Its sites are gone, so every retired blob holding one has been freed.
  for (BlobM& b : blobs_) {
    if (b.state != BlobState::kRetired) continue;
    for (const SiteM& site : b.sites) if (site.key == k) b.state = BlobState::kFreed;
  }
}

// A blob through jit::Assembler: enter (acc = 0); per site [nops][poll]call[acc = acc*31 + result];
// leave (return acc). fuzz_code.h has each ISA's instructions.
void Session::opEmitBlob() {
  if (blobs_.size() >= kMaxBlobs) return;
  jit::Assembler a(rt());
  code::emitCallerEnter(a);
  size_t nsites = in_.below(6);
  std::vector<SiteM> sites;
  Codes allowed = 0;
  bool okPossible = true;
  std::string desc;
  for (size_t i = 0; i < nsites; ++i) {
    for (uint32_t p = in_.below(8); p > 0; --p) a.nop();
    if (in_.below(4) == 0) {
      Status poll = jit::emitSafepointPoll(a);
      FUZZ_CHECK(poll.isOk(), "emitSafepointPoll: " + str(poll));
    }
    size_t k;
    Key key = pickKey(&k);
    static const SiteForm kForms[] = {SiteForm::kDirect, SiteForm::kToggle, SiteForm::kBreakpoint, SiteForm::kAuto};
    uint32_t f = in_.below(9);
    SiteForm form = f < 8 ? kForms[f % 4] : static_cast<SiteForm>(4 + in_.below(250));
    size_t before = a.offset();
    size_t specsBefore = a.sites().size();
    Status e = jit::emitCall(a, key, form);
    desc += " {key " + std::to_string(key.id) + " form " + std::to_string(static_cast<int>(form)) + " @" +
            std::to_string(before) + " -> " + str(e) + "}";
    if (!key.valid()) {
      expectCodes("emitCall(Key{0})", e, bit(Error::kUnknownKey));
      FUZZ_CHECK(a.offset() == before && a.sites().size() == specsBefore, "a refused emitCall emitted code");
      continue;
    }
    // A form this ISA does not have (aarch64: kToggle, kBreakpoint) is refused, nothing emitted.
    expectCodes("emitCall", e, layout::formRefused(form) ? bit(Error::kInvalidArgument)
                                                         : kOk | (static_cast<int>(form) > 3 ? bit(Error::kInvalidArgument) : 0));
    if (!e.isOk()) {
      FUZZ_CHECK(a.offset() == before && a.sites().size() == specsBefore, "a refused emitCall emitted code");
      continue;
    }
    FUZZ_CHECK(a.sites().size() == specsBefore + 1, "emitCall recorded no site");
    const SiteSpec& spec = a.sites().back();
    SiteForm expectForm = form == SiteForm::kAuto ? layout::autoForm(before) : form;
    FUZZ_CHECK(spec.form == expectForm && spec.offset >= before && spec.offset < before + 4,
               "emitCall recorded form " + std::to_string(static_cast<int>(spec.form)) + " at " + std::to_string(spec.offset) +
                   " for a call emitted at " + std::to_string(before));
    code::emitAccumulate(a);
    if (okPossible) {
      if (k == SIZE_MAX || !keys_[k].live) {
        allowed |= bit(Error::kUnknownKey), okPossible = false;
      } else if (static_cast<int>(form) > 3) {
        allowed |= bit(Error::kInvalidArgument), okPossible = false;
      } else {
        Codes c = reachCodes(keys_[k].target, false);
        allowed |= c & ~kOk;
        if ((c & kOk) == 0) okPossible = false;
      }
    }
    sites.push_back(SiteM{nullptr, k, expectForm});
    sites.back().at = reinterpret_cast<const uint8_t*>(uintptr_t{spec.offset});  // offset until installed
  }
  if (in_.below(8) == 0) expectCodes("emitFixedCall(null)", jit::emitFixedCall(a, nullptr), bit(Error::kNullTarget));
  code::emitCallerLeave(a);
  if (okPossible) {
    size_t live = liveSites(), maybe = maybeSites();
    if (live + sites.size() > options_.maxSites) allowed |= bit(Error::kTooManySites);
    else if (live + maybe + sites.size() > options_.maxSites) allowed |= bit(Error::kTooManySites) | kOk;
    else allowed |= kOk;
  }
  allowed |= bit(Error::kArenaExhausted);  // reserving the blob comes first
  Result<Blob> b = jit::install(a);
  log("emit blob" + desc + " -> " + str(b.status()));
  expectCodes("jit::install", b.status(), allowed);
  if (b.code() == Error::kArenaExhausted) {
    FUZZ_CHECK(!a.installed(), "a failed install marked the Assembler installed");
    return crossCheckExhausted(a.codeHolder().codeSize(), "jit::install");
  }
  if (!b) return;
  FUZZ_CHECK(a.installed(), "installed() is false after a successful install");
  expectCodes("install twice", jit::install(a).status(), bit(Error::kInvalidArgument));
  expectCodes("emitCall after install", jit::emitCall(a, keys_.empty() ? Key{1} : keys_[0].key), bit(Error::kInvalidArgument));
  BlobM m;
  m.blob = *b;
  for (SiteM& s : sites) s.at = static_cast<const uint8_t*>(b->code) + reinterpret_cast<uintptr_t>(s.at);
  m.sites = std::move(sites);
  blobs_.push_back(std::move(m));
}

// The same shape of blob as opEmitBlob, written by hand and installed with installCode, with
// optional corruption of the site list (which must then be refused as a whole).
void Session::opRawBlob() {
  if (blobs_.size() >= kMaxBlobs) return;
  std::vector<uint8_t> code;
  code::rawEnter(code);
  std::vector<SiteSpec> specs;
  std::vector<SiteM> sites;
  size_t nsites = in_.below(6);
  bool unknownKey = false, refusedForm = false;
  for (size_t i = 0; i < nsites; ++i) {
    for (uint32_t p = in_.below(8); p > 0; --p) code::rawNop(code);
    size_t k;
    Key key = pickKey(&k);
    static const SiteForm kForms[] = {SiteForm::kDirect, SiteForm::kToggle, SiteForm::kBreakpoint};
    SiteForm form = kForms[in_.below(3)];
    specs.push_back({code::rawSite(code, form), key, form});
    code::rawAccumulate(code);
    unknownKey |= k == SIZE_MAX || !keys_[k].live;
    refusedForm |= layout::formRefused(form);  // aarch64: the list is invalid like a corrupted one
    sites.push_back(SiteM{reinterpret_cast<const uint8_t*>(uintptr_t{specs.back().offset}), k, form});
  }
  code::rawLeave(code);
  // Corruptions, each of which makes the site list invalid.
  std::string corruption;
  if (!specs.empty() && in_.below(3) == 0) {
    SiteSpec& s = specs[in_.below(static_cast<uint32_t>(specs.size()))];
    switch (in_.below(5)) {
      case 0: s.offset += 1 + in_.below(4), corruption = "shifted"; break;
      case 1: s.form = SiteForm::kAuto, corruption = "kAuto"; break;
      case 2: specs.push_back(s), corruption = "duplicate"; break;
      case 3: s.offset = static_cast<uint32_t>(code.size() - 2 + in_.below(8)), corruption = "past the end"; break;
      default:
        if (s.form == SiteForm::kToggle) s.form = SiteForm::kDirect, corruption = "toggle as direct";
        else s.form = SiteForm::kToggle, corruption = "call as toggle";
        break;
    }
  }
  Codes allowed = bit(Error::kArenaExhausted);
  if (!corruption.empty() || refusedForm) {
    allowed |= bit(Error::kInvalidArgument) | (unknownKey ? bit(Error::kUnknownKey) : 0);
    for (const SiteM& s : sites) if (s.key != SIZE_MAX && keys_[s.key].live) allowed |= reachCodes(keys_[s.key].target, false) & ~kOk;
  } else if (unknownKey) {
    allowed |= bit(Error::kUnknownKey);
    for (const SiteM& s : sites) if (s.key != SIZE_MAX && keys_[s.key].live) allowed |= reachCodes(keys_[s.key].target, false) & ~kOk;
  } else {
    bool okPossible = true;
    for (const SiteM& s : sites) {
      Codes c = reachCodes(keys_[s.key].target, false);
      allowed |= c & ~kOk;
      okPossible &= (c & kOk) != 0;
    }
    if (okPossible) {
      size_t live = liveSites(), maybe = maybeSites();
      if (live + sites.size() > options_.maxSites) allowed |= bit(Error::kTooManySites);
      else if (live + maybe + sites.size() > options_.maxSites) allowed |= bit(Error::kTooManySites) | kOk;
      else allowed |= kOk;
    }
  }
  Result<Blob> b = rt().installCode(code, specs);
  log("installCode(" + std::to_string(code.size()) + " bytes, " + std::to_string(specs.size()) + " sites" +
      (corruption.empty() ? "" : ", corrupted: " + corruption) + ") -> " + str(b.status()));
  expectCodes("installCode", b.status(), allowed);
  if (b.code() == Error::kArenaExhausted) return crossCheckExhausted(code.size(), "installCode");
  if (!b) return;
  BlobM m;
  m.blob = *b;
  for (SiteM& s : sites) s.at = static_cast<const uint8_t*>(b->code) + reinterpret_cast<uintptr_t>(s.at);
  m.sites = std::move(sites);
  blobs_.push_back(std::move(m));
}

// Malformed code calls: empty/huge reservations, forged reservations, empty Assemblers.
void Session::opBadCode() {
  switch (in_.below(6)) {
    case 0: {
      Result<CodeReservation> r = rt().reserveCode(0);
      log("reserveCode(0) -> " + str(r.status()));
      expectCodes("reserveCode(0)", r.status(), bit(Error::kInvalidArgument));
      if (r) rt().abandonCode(*r);
      break;
    }
    case 1: {
      size_t huge = in_.flag() ? options_.arenaSize + 4096 : SIZE_MAX - in_.below(63);
      Result<CodeReservation> r = rt().reserveCode(huge);
      log("reserveCode(" + std::to_string(huge) + ") -> " + str(r.status()));
      if (r) rt().abandonCode(*r);
      expectCodes("reserveCode(huge)", r.status(), bit(Error::kArenaExhausted) | bit(Error::kInvalidArgument));
      break;
    }
    case 2: {
      CodeReservation forged{nullptr, nullptr, 64};
      if (in_.flag()) forged.rx = forged.rw = reinterpret_cast<uint8_t*>(arenaHi_ + 4096);
      Result<Blob> b = rt().commitCode(forged, {});
      log("commitCode(reservation outside the arena) -> " + str(b.status()));
      expectCodes("commitCode(forged)", b.status(), bit(Error::kInvalidArgument));
      break;
    }
    case 3: {
      jit::Assembler a(rt());
      Result<Blob> b = jit::install(a);
      log("install(empty Assembler) -> " + str(b.status()));
      expectCodes("install(empty)", b.status(), bit(Error::kInvalidArgument));
      break;
    }
    case 4: {
      Result<Blob> b = rt().installCode({}, {});
      log("installCode(no bytes) -> " + str(b.status()));
      expectCodes("installCode(empty)", b.status(), bit(Error::kInvalidArgument));
      break;
    }
    default: {
      // A range that is not an outstanding reservation (a live blob's): committing it is
      // refused, abandoning it is ignored (the invariants and calls that follow check the blob).
      const BlobM* live = nullptr;
      for (const BlobM& b : blobs_) if (b.state == BlobState::kLive) live = &b;
      if (live == nullptr) break;
      CodeReservation forged{static_cast<uint8_t*>(live->blob.code), nullptr, live->blob.size};
      forged.rw = static_cast<uint8_t*>(const_cast<void*>(rt().arenaInfo().rwBase)) + (forged.rx - reinterpret_cast<uint8_t*>(arenaLo_));
      if (in_.flag()) {
        log("abandonCode(live blob's range)");
        rt().abandonCode(forged);
        FUZZ_CHECK(!code::startsWithFill(live->code()) || live->blob.size == 0, "abandonCode of a live blob trap-filled it");
        break;
      }
      Result<Blob> b = rt().commitCode(forged, {});
      log("commitCode(live blob's range) -> " + str(b.status()));
      expectCodes("commitCode(a live blob's range)", b.status(), bit(Error::kInvalidArgument));
      break;
    }
  }
}

void Session::opCall() {
  uint32_t which = in_.below(3);
  if (which == 0 && !blobs_.empty()) {
    const BlobM& b = blobs_[in_.below(static_cast<uint32_t>(blobs_.size()))];
    if (b.state != BlobState::kLive) return;
    std::optional<uint32_t> v = b.returner ? std::optional<uint32_t>(b.value) : blobValue(b, 0);
    if (!v) return;
    auto got = static_cast<uint32_t>(reinterpret_cast<int (*)()>(b.blob.code)());
    log("call blob " + hex(b.blob.code) + " -> " + std::to_string(got));
    FUZZ_CHECK(got == *v, "blob " + hex(b.blob.code) + " returned " + std::to_string(got) + ", model " + std::to_string(*v));
  } else if (which == 1 && !keys_.empty()) {
    const KeyM& k = keys_[pickKeyIndex()];
    std::optional<uint32_t> v = valueAt(k.trampoline, 0);
    if (!v) return;
    auto got = static_cast<uint32_t>(reinterpret_cast<int (*)()>(const_cast<uint8_t*>(k.trampoline))());
    log("call trampoline of key " + std::to_string(k.key.id) + " -> " + std::to_string(got));
    FUZZ_CHECK(got == *v, "trampoline of key " + std::to_string(k.key.id) + " returned " + std::to_string(got) + ", model " + std::to_string(*v));
  } else if (foreign_) {
    std::optional<uint32_t> v = valueAt(keys_[foreign_->key].target, 0);
    if (!v) return;
    auto got = static_cast<uint32_t>(foreignCode()->fn()());
    log("call foreign code -> " + std::to_string(got));
    FUZZ_CHECK(got == *v, "foreign site returned " + std::to_string(got) + ", model " + std::to_string(*v));
  }
}

void Session::opRetireBlob() {
  Blob handle;
  BlobM* m = nullptr;
  uint32_t r = in_.below(8);
  if (r < 6 && !blobs_.empty()) {
    m = &blobs_[in_.below(static_cast<uint32_t>(blobs_.size()))];
    handle = m->blob;
  } else if (r == 6) {
    handle = Blob{};  // id 0
  } else {
    handle = blobs_.empty() ? Blob{12345, nullptr, 64} : Blob{blobs_[0].blob.id, const_cast<uint8_t*>(blobs_[0].code()) + 64, 64};
  }
  Codes allowed;
  if (m == nullptr) {
    allowed = bit(Error::kInvalidArgument);
  } else if (m->state != BlobState::kLive) {
    allowed = bit(Error::kDoubleRetire);
  } else {
    allowed = kOk;
    for (const KeyM& k : keys_) if (k.live && m->covers(k.target)) allowed = bit(Error::kStillTargeted);
  }
  Status s = rt().retire(handle);
  log("retire(blob " + std::to_string(handle.id) + " " + hex(handle.code) + ") -> " + str(s));
  expectCodes("retire(Blob)", s, allowed);
  if (!s.isOk()) return;
  m->state = BlobState::kRetired;
  ++blobsRetired_;
}

void Session::opRetireCallback() {
  uint32_t kind = in_.below(4);
  std::function<void()> cb;
  if (kind != 0) {
    Shared* shared = &shared_;
    Runtime* rt = &*rt_;
    bool nested = kind == 3;
    cb = [shared, rt, nested] {
      if (nested) {  // waiting from inside a callback would deadlock: refused
        Status s = rt->synchronize(milliseconds(0));
        if (s.code() != Error::kWouldDeadlock) shared->report("synchronize() inside a retire callback returned " + str(s));
        s = rt->barrier(milliseconds(0));
        if (s.code() != Error::kWouldDeadlock) shared->report("barrier() inside a retire callback returned " + str(s));
      }
      shared->callbacksRun.fetch_add(1);
    };
  }
  Status s = rt().retire(std::move(cb));
  log("retire(callback kind " + std::to_string(kind) + ") -> " + str(s));
  expectCodes("retire(callback)", s, kind == 0 ? bit(Error::kInvalidArgument) : kOk);
  if (s.isOk()) ++callbacksRetired_;
}

void Session::opBarrierOrPoll() {
  RuntimeStats before = rt().stats();
  if (in_.flag()) {
    size_t n = rt().poll();
    RuntimeStats after = rt().stats();
    log("poll() -> " + std::to_string(n));
    if (!options_.backgroundReclaimer) {
      uint64_t progress = (after.callbacksRun - before.callbacksRun) + (after.blobsFreed - before.blobsFreed) +
                          (after.veneersFreed - before.veneersFreed);
      FUZZ_CHECK(progress == n, "poll() returned " + std::to_string(n) + " but ran/freed " + std::to_string(progress));
    }
    return;
  }
  static const int kDeadlines[] = {0, 1, 3, 20};
  milliseconds d(kDeadlines[in_.below(4)]);
  bool pending = before.callbacksRun < before.callbacksRetired || before.blobsFreed < before.blobsRetired ||
                 before.veneersFreed < before.veneersRetired;  // unused veneers ride on the same queue
  Codes allowed = kOk;
  // kTimeout: a stuck thread, a racing reclaimer, a conservative stack hit, or (deadline < 20 ms)
  // blobs retired after an earlier poll() started a round: barrier needs a second pass for them.
  if (pending && (helperStuck() || options_.backgroundReclaimer || d.count() < 20 ||
                  (before.blobsFreed < before.blobsRetired && anyRegistered()))) {
    allowed |= bit(Error::kTimeout);
  }
  Status s = rt().barrier(d);
  log("barrier(" + std::to_string(d.count()) + " ms) -> " + str(s));
  expectCodes("barrier", s, allowed);
  if (!s.isOk()) return;
  RuntimeStats after = rt().stats();
  FUZZ_CHECK(after.callbacksRun >= before.callbacksRetired && after.blobsFreed >= before.blobsRetired &&
                 after.veneersFreed >= before.veneersRetired,
             "barrier returned ok with work retired before it still pending: run " + std::to_string(after.callbacksRun) + "/" +
                 std::to_string(before.callbacksRetired) + ", freed " + std::to_string(after.blobsFreed) + "/" +
                 std::to_string(before.blobsRetired));
}

void Session::opSynchronize() {
  static const int kDeadlines[] = {0, 1, 2};
  uint32_t r = in_.below(4);
  Codes allowed = helperStuck() ? bit(Error::kTimeout) : options_.backgroundReclaimer ? kOk | bit(Error::kTimeout) : kOk;
  if (r == 3 && helperStuck() && timeoutsLeft_-- <= 0) return;
  Status s = r == 3 ? rt().synchronize() : rt().synchronize(milliseconds(kDeadlines[r]));
  log("synchronize(" + (r == 3 ? std::string("default") : std::to_string(kDeadlines[r])) + ") -> " + str(s));
  expectCodes("synchronize", s, allowed);
  FUZZ_CHECK(isThreadRegistered() == self_.active(), "synchronize changed the caller's registration");
}

void Session::opSelfThread() {
  switch (in_.below(6)) {
    case 0: {
      uint32_t threads = (self_.active() ? 1 : 0) + (helperRegistered_ ? 1 : 0);
      Codes allowed = self_.active() ? bit(Error::kInvalidArgument)
                                     : threads >= options_.maxThreads ? bit(Error::kTooManyThreads) : kOk;
      Result<ThreadScope> r = rt().registerThread(in_.flag() ? "fuzzer" : "");
      log("registerThread(self) -> " + str(r.status()));
      expectCodes("registerThread(self)", r.status(), allowed);
      if (r) self_ = std::move(*r), selfOnline_ = true;
      break;
    }
    case 1:
      log("unregister(self)");
      self_.reset();
      selfOnline_ = false;
      break;
    case 2: {
      Status s = goOffline();
      log("goOffline -> " + str(s));
      expectCodes("goOffline", s, !self_.active() ? bit(Error::kNotRegistered) : selfOnline_ ? kOk : bit(Error::kInvalidArgument));
      if (s.isOk()) selfOnline_ = false;
      break;
    }
    case 3: {
      Status s = goOnline();
      log("goOnline -> " + str(s));
      expectCodes("goOnline", s, !self_.active() ? bit(Error::kNotRegistered) : !selfOnline_ ? kOk : bit(Error::kInvalidArgument));
      if (s.isOk()) selfOnline_ = true;
      break;
    }
    case 4:
      log("safepoint(self)");
      safepoint();
      break;
    default: {
      log("OfflineScope");
      OfflineScope offline;
      // Inside the scope the thread is offline (or was already): going offline again is refused.
      Status again = goOffline();
      expectCodes("goOffline inside an OfflineScope", again,
                  self_.active() ? bit(Error::kInvalidArgument) : bit(Error::kNotRegistered));
      break;
    }
  }
  FUZZ_CHECK(isThreadRegistered() == self_.active(), "isThreadRegistered disagrees with the ThreadScope");
}

void Session::opHelperThread() {
  using Cmd = HelperThread::Cmd;
  if (!helper_) helper_.emplace(rt());
  uint32_t r = in_.below(5);
  Cmd cmd = static_cast<Cmd>(r);
  Codes allowed = kOk;
  uint32_t threads = (self_.active() ? 1 : 0) + (helperRegistered_ ? 1 : 0);
  switch (cmd) {
    case Cmd::kRegister:
      allowed = helperRegistered_ ? bit(Error::kInvalidArgument) : threads >= options_.maxThreads ? bit(Error::kTooManyThreads) : kOk;
      break;
    case Cmd::kOffline:
      allowed = !helperRegistered_ ? bit(Error::kNotRegistered) : helperOnline_ ? kOk : bit(Error::kInvalidArgument);
      break;
    case Cmd::kOnline:
      allowed = !helperRegistered_ ? bit(Error::kNotRegistered) : !helperOnline_ ? kOk : bit(Error::kInvalidArgument);
      break;
    default: break;
  }
  Status s = helper_->run(cmd);
  log("helper cmd " + std::to_string(r) + " -> " + str(s));
  expectCodes("helper command " + std::to_string(r), s, allowed);
  if (!s.isOk()) return;
  if (cmd == Cmd::kRegister) helperRegistered_ = true, helperOnline_ = true;
  if (cmd == Cmd::kUnregister) helperRegistered_ = false, helperOnline_ = false;
  if (cmd == Cmd::kOffline) helperOnline_ = false;
  if (cmd == Cmd::kOnline) helperOnline_ = true;
}

void Session::opForeignSite() {
  ForeignCode* fc = foreignCode();
  if (fc->page == nullptr) return;
  uint32_t r = in_.below(6);
  if (r == 0) {
    Status s = rt().unregisterForeignSite(fc->call());
    log("unregisterForeignSite -> " + str(s));
    expectCodes("unregisterForeignSite", s, foreign_ ? kOk : bit(Error::kUnknownSite));
    if (s.isOk()) foreign_.reset();
    return;
  }
  void* at = fc->call();
  Codes allowed;
  size_t k;
  Key key = pickKey(&k);
  if (r == 1) {
    at = nullptr, allowed = bit(Error::kInvalidArgument);
  } else if (r == 2) {
    at = reinterpret_cast<void*>(arenaLo_ + 64), allowed = bit(Error::kInvalidArgument);
  } else if (k == SIZE_MAX || !keys_[k].live) {
    allowed = bit(Error::kUnknownKey);
  } else if (r == 3) {
    // The caller's first instruction, not a call; while the call after it is registered, it
    // overlaps that call's bytes first where it starts inside them (x86: the call at +1).
    bool overlaps = foreign_ && code::kForeignCallOffset < layout::siteSize(layout::foreignForm());
    at = fc->page, allowed = bit(overlaps ? Error::kInvalidArgument : Error::kUnsupportedSite);
  } else if (foreign_) {
    allowed = bit(Error::kInvalidArgument);  // already registered
  } else {
    Codes c = reachCodes(keys_[k].target, true);
    allowed = c & ~kOk;
    if ((c & kOk) != 0) {
      if (liveSites() + 1 > options_.maxSites) allowed |= bit(Error::kTooManySites);
      else if (liveSites() + maybeSites() + 1 > options_.maxSites) allowed |= bit(Error::kTooManySites) | kOk;
      else allowed |= kOk;
    }
  }
  Status s = rt().registerForeignSite(at, key);
  log("registerForeignSite(" + hex(at) + ", key " + std::to_string(key.id) + ") -> " + str(s));
  expectCodes("registerForeignSite", s, allowed);
  if (s.code() == Error::kArenaExhausted) crossCheckExhausted(4096, "registerForeignSite");
  if (!s.isOk()) return;
  foreign_ = SiteM{fc->call(), k, layout::foreignForm()};  // the key itself is not updated
}

void Session::opSiteQuery() {
  const void* p = nullptr;
  Codes allowed = bit(Error::kUnknownSite);
  switch (in_.below(4)) {
    case 0: p = nullptr; break;
    case 1: p = cxxTargets()[0].fn; break;
    case 2:
      if (!blobs_.empty()) {
        const BlobM& b = blobs_[in_.below(static_cast<uint32_t>(blobs_.size()))];
        p = b.code() + in_.below(static_cast<uint32_t>(b.blob.size));
        if (b.state != BlobState::kLive || liveBlobCovering(p) == nullptr) allowed |= kOk;  // freed, maybe reused
        for (const BlobM& o : blobs_) for (const SiteM& s : o.sites) if (s.at == p) allowed |= kOk;
      }
      break;
    default: p = reinterpret_cast<const void*>(arenaLo_ + 64); break;
  }
  Result<SiteInfo> s = rt().site(p);
  expectCodes("site(" + hex(p) + ")", s.status(), allowed);
}

// The patch observer re-enters the update path (must be refused) for the next operations.
void Session::opObserver() {
  reenterFromObserver_ = in_.flag();
  log(std::string("observer re-entry ") + (reenterFromObserver_ ? "on" : "off"));
}

}  // namespace patchcall::fuzz
