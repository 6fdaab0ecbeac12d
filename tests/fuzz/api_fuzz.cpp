// libFuzzer target over the public API. The input bytes are decoded into a sequence of
// operations on one Runtime (options chosen by the first bytes): create/update/batch/destroy
// keys with good and bad targets, emit and install blobs with every site form at random
// offsets (through jit::Assembler and through raw installCode, correct and corrupted), call
// them, retire blobs and callbacks, barrier/poll/synchronize with tiny deadlines, register
// threads, foreign sites, and bad arguments of every kind.
//
// A model tracks what the runtime should hold. After every operation:
//   - each error is one the model allows for that input (and carries a message);
//   - every live site decodes (Zydis) and reports (Runtime::site) its key's current target,
//     Direct sites keep a 4-byte aligned rel32, toggles are well formed;
//   - every trampoline jumps to its key's target (directly or through a veneer);
//   - RuntimeStats agrees with the model (keys, blobs, sites, updates, retirements);
//   - code the model can evaluate is called and must return the value the model computes.
// Build and run: docs/sanitizers.md ("Fuzzing"). Replay a file: api_fuzz <file>.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "disasm.h"
#include "fuzz_fixtures.h"
#include "fuzz_support.h"
#include "patchcall/jit.h"
#include "patchcall/static_call.h"

namespace patchcall::fuzz {
namespace {

namespace x86 = asmjit::x86;
using std::chrono::milliseconds;

using Codes = uint32_t;  // a set of Error values
constexpr Codes bit(Error e) { return Codes{1} << static_cast<int>(e); }
constexpr Codes kOk = bit(Error::kOk);

std::string codesText(Codes c) {
  std::string s;
  for (int i = 0; i < 32; ++i) {
    if ((c & (Codes{1} << i)) != 0) s += std::string(s.empty() ? "" : "|") + errorName(static_cast<Error>(i));
  }
  return s.empty() ? "<none>" : s;
}

void expectCodes(const std::string& what, const Status& s, Codes allowed) {
  FUZZ_CHECK((allowed & bit(s.code())) != 0, what + " returned " + str(s) + "; allowed: " + codesText(allowed));
  FUZZ_CHECK(s.isOk() || !s.message().empty(), what + ": error without a message");
}

enum class Reach { kNear, kFar, kMaybe };
// Whether every call ending in [lo, hi] reaches t with a rel32 (kNear), none does (kFar).
Reach reachFrom(uintptr_t lo, uintptr_t hi, uintptr_t t) {
  uint64_t worst = t >= hi ? t - lo : t <= lo ? hi - t : std::max(t - lo, hi - t);
  uint64_t best = t >= hi ? t - hi : t <= lo ? lo - t : 0;
  if (worst < 0x7FFF0000ull) return Reach::kNear;
  if (best > 0x80010000ull) return Reach::kFar;
  return Reach::kMaybe;
}
bool fitsRel32(const void* next, const void* target) {
  int64_t d = reinterpret_cast<intptr_t>(target) - reinterpret_cast<intptr_t>(next);
  return d >= INT32_MIN && d <= INT32_MAX;
}

struct KeyM {
  Key key;
  bool live = true;
  const void* target = nullptr;
  const uint8_t* trampoline = nullptr;
};
struct SiteM {
  const uint8_t* at;
  size_t key;  // index into keys_
  SiteForm form;
};
enum class BlobState { kLive, kRetired, kFreed };  // kRetired: maybe freed already
struct BlobM {
  Blob blob;
  bool returner = false;
  uint32_t value = 0;  // returners
  std::vector<SiteM> sites;
  BlobState state = BlobState::kLive;
  const uint8_t* code() const { return static_cast<const uint8_t*>(blob.code); }
  bool covers(const void* p) const { return p >= blob.code && p < code() + blob.size; }
};

// What the callbacks and the patch observer report back (they may run on other threads).
struct Shared {
  std::atomic<uint64_t> callbacksRun{0};
  std::atomic<uint64_t> patchEvents{0};
  std::mutex mu;
  std::string violation;  // first wrong result seen inside a callback or the observer
  void report(const std::string& what) {
    std::lock_guard<std::mutex> lock(mu);
    if (violation.empty()) violation = what;
  }
};

class Session {
 public:
  explicit Session(Input& in) : in_(in) {}
  ~Session() {
    helper_.reset();
    self_.reset();
    rt_.reset();
    if (!shared_.violation.empty()) fail(__LINE__, shared_.violation);
  }
  bool start();
  void step();
  bool done() const { return in_.empty() || ops_ >= kMaxOps; }

 private:
  static constexpr int kMaxOps = 64;
  static constexpr size_t kMaxKeys = 24, kMaxBlobs = 24;

  Runtime& rt() { return *rt_; }
  void log(const std::string& s) { trace() += "  " + std::to_string(ops_) + ": " + s + "\n"; }

  // ---- model queries ----
  bool inArena(const void* p) const {
    auto a = reinterpret_cast<uintptr_t>(p);
    return a >= arenaLo_ && a < arenaHi_;
  }
  const BlobM* liveBlobCovering(const void* p) const {
    for (const BlobM& b : blobs_) if (b.state == BlobState::kLive && b.covers(p)) return &b;
    return nullptr;
  }
  bool retiredBlobCovering(const void* p) const {
    for (const BlobM& b : blobs_) if (b.state != BlobState::kLive && b.covers(p)) return true;
    return false;
  }
  bool trampolineSlotCovering(const void* p) const {
    // [target cell: 8][CC CC CC][E9 rel32]: the whole 16-byte slot is trampoline memory.
    for (const KeyM& k : keys_) if (p >= k.trampoline - 11 && p < k.trampoline + 5) return true;
    return false;
  }
  bool helperStuck() const { return helperRegistered_ && helperOnline_; }
  bool anyRegistered() const { return helperRegistered_ || self_.active(); }
  size_t liveSites() const;
  size_t maybeSites() const;  // sites of retired blobs that may not be freed yet
  bool keyHasToggles(size_t k) const;
  bool keyHasSites(size_t k, bool includeRetired) const;

  // The value a call to `p` returns, when the model can tell (nullopt: do not call it).
  std::optional<uint32_t> valueAt(const void* p, int depth) const;
  std::optional<uint32_t> blobValue(const BlobM& b, int depth) const;

  // Expected outcome of validateTarget and of making a call reach the target.
  Codes validateCodes(const void* t) const;
  Codes reachCodes(const void* t, bool includeForeign) const;

  // ---- pickers ----
  const void* pickTarget(std::string* what);
  size_t pickKeyIndex() { return keys_.empty() ? 0 : in_.below(static_cast<uint32_t>(keys_.size())); }
  Key pickKey(size_t* index);  // a model key (live or dead) or a bogus handle (index = SIZE_MAX)

  // ---- operations ----
  void opNewReturner();
  void opCreateKey();
  void opStaticCall();
  void opUpdate();
  void opBatch();
  void opDestroyKey();
  void opEmitBlob();
  void opRawBlob();
  void opBadCode();
  void opCall();
  void opRetireBlob();
  void opRetireCallback();
  void opBarrierOrPoll();
  void opSynchronize();
  void opSelfThread();
  void opHelperThread();
  void opForeignSite();
  void opSiteQuery();
  void opObserver();

  void crossCheckExhausted(size_t need, const std::string& what);
  void afterUpdate(size_t keyIndex, const void* target);
  void checkAll();
  void checkBranch(const uint8_t* insn, uint8_t opcode, const void* target, const std::string& what);
  void checkSite(const SiteM& s, bool foreign);

  Input& in_;
  Shared shared_;
  Options options_;
  std::optional<Runtime> rt_;
  std::optional<HelperThread> helper_;
  ThreadScope self_;
  uintptr_t arenaLo_ = 0, arenaHi_ = 0;

  std::vector<KeyM> keys_;
  std::vector<BlobM> blobs_;
  std::optional<SiteM> foreign_;
  uint64_t keysCreated_ = 0, updates_ = 0, callbacksRetired_ = 0, blobsRetired_ = 0;
  uint32_t nextValue_ = 7000;
  bool helperRegistered_ = false, helperOnline_ = false;
  bool selfOnline_ = false;
  bool reenterFromObserver_ = false;
  int timeoutsLeft_ = 6;  // each toggle-grace timeout costs graceDeadline: bound the input's time
  int ops_ = 0;
};

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

Codes Session::validateCodes(const void* t) const {
  auto a = reinterpret_cast<uintptr_t>(t);
  if (a == 0) return bit(Error::kNullTarget);
  if (options_.targetAlignment > 1 && a % options_.targetAlignment != 0) return bit(Error::kMisalignedTarget);
  if (!inArena(t) || trampolineSlotCovering(t) || liveBlobCovering(t) != nullptr) return kOk;
  // Freed ranges may have been reused for a trampoline chunk (accepted by the library).
  if (retiredBlobCovering(t)) return bit(Error::kRetiredTarget) | kOk;
  return bit(Error::kRetiredTarget);
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
    auto next = reinterpret_cast<uintptr_t>(foreignCode()->call() + 5);
    one(reachFrom(next, next, a), reachFrom(arenaLo_, arenaHi_, next));
  }
  // kOk only if every call can be made to reach.
  bool allOk = true;
  auto check = [&](Reach r, Reach vr) {
    if (r == Reach::kFar && (!options_.allowVeneers || vr == Reach::kFar)) allOk = false;
  };
  check(reachFrom(arenaLo_, arenaHi_, a), Reach::kNear);
  if (includeForeign && foreignCode()->page != nullptr) {
    auto next = reinterpret_cast<uintptr_t>(foreignCode()->call() + 5);
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
    case 9: return *what = "runtime page", reinterpret_cast<const void*>(arenaLo_ + 64 * in_.below(64));
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
  a.mov(x86::eax, value);
  a.ret();
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
  Codes v = validateCodes(t), allowed = v & ~kOk;
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
  FUZZ_CHECK(inArena(entry) && (reinterpret_cast<uintptr_t>(entry) + 1) % 4 == 0,
             "trampoline " + hex(entry) + " outside the arena or its rel32 unaligned");
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
  Codes v = validateCodes(t), allowed = v & ~kOk;
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
  Codes v2 = validateCodes(second.fn);
  expectCodes("StaticCall::update", old.status(), (v2 & ~kOk) | ((v2 & kOk) != 0 ? reachCodes(second.fn, false) : 0));
  if (!old) return;
  FUZZ_CHECK(reinterpret_cast<const void*>(*old) == first.fn, "StaticCall::update returned the wrong previous target");
  ++updates_;
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
    Codes v = validateCodes(t);
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
  afterUpdate(k, t);
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
      Codes c = validateCodes(t);
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
  for (size_t i = 0; i < n; ++i) afterUpdate(index[i], batch[i].target);
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

// A blob through jit::Assembler: push rbx; xor ebx,ebx; per site [nops][poll]call[ebx=ebx*31+eax]; ...
void Session::opEmitBlob() {
  if (blobs_.size() >= kMaxBlobs) return;
  jit::Assembler a(rt());
  a.push(x86::rbx);
  a.xor_(x86::ebx, x86::ebx);
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
    expectCodes("emitCall", e, kOk | (static_cast<int>(form) > 3 ? bit(Error::kInvalidArgument) : 0));
    if (!e.isOk()) continue;
    FUZZ_CHECK(a.sites().size() == specsBefore + 1, "emitCall recorded no site");
    const SiteSpec& spec = a.sites().back();
    SiteForm expectForm = form == SiteForm::kAuto ? ((before + 1) % 4 == 0 ? SiteForm::kDirect : SiteForm::kBreakpoint) : form;
    FUZZ_CHECK(spec.form == expectForm && spec.offset >= before && spec.offset < before + 4,
               "emitCall recorded form " + std::to_string(static_cast<int>(spec.form)) + " at " + std::to_string(spec.offset) +
                   " for a call emitted at " + std::to_string(before));
    a.imul(x86::ebx, x86::ebx, 31);
    a.add(x86::ebx, x86::eax);
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
  a.mov(x86::eax, x86::ebx);
  a.pop(x86::rbx);
  a.ret();
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
  std::vector<uint8_t> code = {0x53, 0x31, 0xDB};  // push rbx ; xor ebx, ebx
  std::vector<SiteSpec> specs;
  std::vector<SiteM> sites;
  size_t nsites = in_.below(6);
  bool unknownKey = false;
  for (size_t i = 0; i < nsites; ++i) {
    for (uint32_t p = in_.below(8); p > 0; --p) code.push_back(0x90);
    size_t k;
    Key key = pickKey(&k);
    static const SiteForm kForms[] = {SiteForm::kDirect, SiteForm::kToggle, SiteForm::kBreakpoint};
    SiteForm form = kForms[in_.below(3)];
    if (form == SiteForm::kDirect) while ((code.size() + 1) % 4 != 0) code.push_back(0x90);
    if (form == SiteForm::kToggle) {
      if (code.size() % 2 != 0) code.push_back(0x90);
      specs.push_back({static_cast<uint32_t>(code.size()), key, form});
      code.insert(code.end(), {0x66, 0x90, 0xE8, 0, 0, 0, 0, 0xEB, 0x05, 0xE8, 0, 0, 0, 0});
    } else {
      specs.push_back({static_cast<uint32_t>(code.size()), key, form});
      code.insert(code.end(), {0xE8, 0, 0, 0, 0});
    }
    code.insert(code.end(), {0x6B, 0xDB, 0x1F, 0x01, 0xC3});  // imul ebx, ebx, 31 ; add ebx, eax
    unknownKey |= k == SIZE_MAX || !keys_[k].live;
    sites.push_back(SiteM{reinterpret_cast<const uint8_t*>(uintptr_t{specs.back().offset}), k, form});
  }
  code.insert(code.end(), {0x89, 0xD8, 0x5B, 0xC3});  // mov eax, ebx ; pop rbx ; ret
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
  if (!corruption.empty()) {
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
        FUZZ_CHECK(live->code()[0] != 0xCC || live->blob.size == 0, "abandonCode of a live blob int3-filled it");
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
      uint64_t progress = (after.callbacksRun - before.callbacksRun) + (after.blobsFreed - before.blobsFreed);
      FUZZ_CHECK(progress == n, "poll() returned " + std::to_string(n) + " but ran/freed " + std::to_string(progress));
    }
    return;
  }
  static const int kDeadlines[] = {0, 1, 3, 20};
  milliseconds d(kDeadlines[in_.below(4)]);
  bool pending = before.callbacksRun < before.callbacksRetired || before.blobsFreed < before.blobsRetired;
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
  FUZZ_CHECK(after.callbacksRun >= before.callbacksRetired && after.blobsFreed >= before.blobsRetired,
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
    at = fc->page, allowed = bit(Error::kUnsupportedSite);  // push rbx, not a call
  } else if (foreign_) {
    allowed = bit(Error::kInvalidArgument);  // already registered
  } else {
    Codes c = reachCodes(keys_[k].target, true);
    allowed = c & ~kOk;
    if ((c & kOk) != 0) {
      if (liveSites() + 1 > options_.maxSites) allowed |= bit(Error::kTooManySites);
      else if (liveSites() + maybeSites() + 1 > options_.maxSites) allowed |= bit(Error::kTooManySites) | kOk;
      else allowed |= kOk;
      if ((allowed & kOk) != 0 && keyHasToggles(k) && (helperStuck() || options_.backgroundReclaimer)) {
        if (helperStuck() && timeoutsLeft_-- <= 0) return;
        allowed |= bit(Error::kTimeout);
      }
    }
  }
  Status s = rt().registerForeignSite(at, key);
  log("registerForeignSite(" + hex(at) + ", key " + std::to_string(key.id) + ") -> " + str(s));
  expectCodes("registerForeignSite", s, allowed);
  if (s.code() == Error::kArenaExhausted) crossCheckExhausted(4096, "registerForeignSite");
  if (!s.isOk()) return;
  foreign_ = SiteM{fc->call(), k, SiteForm::kBreakpoint};
  ++updates_;  // registration retargets the key onto its current target
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

// ---- invariants -------------------------------------------------------------------------------

void Session::checkBranch(const uint8_t* insn, uint8_t opcode, const void* target, const std::string& what) {
  test::Decoded d = test::decodeAt(insn);
  FUZZ_CHECK(d.ok && d.opcode == opcode && d.length == 5 && d.isRelative,
             what + " at " + hex(insn) + " decodes as '" + d.text + "'");
  auto dest = reinterpret_cast<const uint8_t*>(d.target);
  if (dest == target) return;
  // Through a veneer: jmp qword [rip+0] ; .quad target
  FUZZ_CHECK(inArena(dest), what + " at " + hex(insn) + " ('" + d.text + "') goes to " + hex(dest) +
                                ", neither the key's target " + hex(target) + " nor a veneer in the arena");
  uint64_t quad = 0;
  std::memcpy(&quad, dest + 6, 8);
  FUZZ_CHECK(dest[0] == 0xFF && dest[1] == 0x25 && dest[2] == 0 && dest[5] == 0 && quad == reinterpret_cast<uint64_t>(target),
             what + " at " + hex(insn) + " goes to " + hex(dest) + " which is no veneer for " + hex(target));
  FUZZ_CHECK(!fitsRel32(insn + 5, target), what + " at " + hex(insn) + " uses a veneer for a target in rel32 reach");
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
    bool a = s.at[0] == 0x66 && s.at[1] == 0x90, b = s.at[0] == 0xEB && s.at[1] == 7;
    FUZZ_CHECK((a || b) && s.at[2] == 0xE8 && s.at[7] == 0xEB && s.at[8] == 5 && s.at[9] == 0xE8,
               what + ": malformed toggle bytes");
    FUZZ_CHECK(reinterpret_cast<uintptr_t>(s.at) % 2 == 0, what + ": toggle not 2-byte aligned");
    call = b ? s.at + 9 : s.at + 2;
  }
  if (s.form == SiteForm::kDirect) {
    FUZZ_CHECK((reinterpret_cast<uintptr_t>(s.at) + 1) % 4 == 0, what + ": Direct rel32 not 4-byte aligned");
  }
  checkBranch(call, 0xE8, k.target, what);
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
    checkBranch(k.trampoline, 0xE9, k.target, what + " trampoline");
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
  if (st.blobsFreed == st.blobsRetired) {
    for (BlobM& b : blobs_) if (b.state == BlobState::kRetired) b.state = BlobState::kFreed;
  }
  size_t live = liveSites(), maybe = maybeSites();
  FUZZ_CHECK(st.sites >= live && st.sites <= live + maybe,
             "stats.sites " + std::to_string(st.sites) + ", model " + std::to_string(live) + " (+" + std::to_string(maybe) + " maybe)");
  FUZZ_CHECK(st.callbacksRetired == callbacksRetired_, "stats.callbacksRetired " + std::to_string(st.callbacksRetired));
  uint64_t ran = shared_.callbacksRun.load();
  FUZZ_CHECK(st.callbacksRun <= st.callbacksRetired && (st.callbacksRun == ran || options_.backgroundReclaimer),
             "stats.callbacksRun " + std::to_string(st.callbacksRun) + ", callbacks counted " + std::to_string(ran));
  ArenaInfo a = rt().arenaInfo();
  FUZZ_CHECK(a.used <= a.size, "arena used " + std::to_string(a.used) + " > size");
  FUZZ_CHECK(isThreadRegistered() == self_.active(), "isThreadRegistered disagrees with the ThreadScope");
}

// ---- driver ----------------------------------------------------------------------------------

bool Session::start() {
  static const size_t kArenas[] = {size_t{64} << 10, size_t{128} << 10, size_t{1} << 20, size_t{4} << 20};
  uint8_t o = in_.u8(), p = in_.u8();
  options_.arenaSize = kArenas[o & 3];
  options_.allowVeneers = (o & 4) == 0;
  options_.targetAlignment = (o & 8) != 0 ? 16 : 1;
  options_.backgroundReclaimer = (o & 0x30) == 0x30;
  options_.sync = (o & 0xC0) == 0xC0 ? SyncMethod::kMprotectIpi : SyncMethod::kAuto;
  options_.maxSites = (p & 3) == 0 ? 4 + (p >> 5) : 1u << 24;
  options_.maxThreads = (p & 4) != 0 ? 1 : 16;
  options_.maxKeys = (p & 8) != 0 ? 3 + ((p >> 4) & 7) : 1u << 20;
  options_.graceDeadline = milliseconds(10);  // timeouts are expected (stuck helper): keep them cheap
  options_.diagnosticSink = [](const std::string&) {};
  options_.patchObserver = [this](const PatchEvent& e) {
    shared_.patchEvents.fetch_add(1);
    if (!inArena(e.site) && !(foreign_ && e.site == foreign_->at) && e.site != foreignCode()->call()) {
      shared_.report("patch observer saw a write at " + hex(e.site) + " outside the arena and the foreign site");
    }
    if (!reenterFromObserver_ || keys_.empty()) return;
    Result<const void*> u = rt_->update(keys_[0].key, cxxTargets()[0].fn);
    if (u.code() != Error::kReentrantUpdate) shared_.report("update from the patch observer returned " + str(u.status()));
    Result<Key> k = rt_->createKey(cxxTargets()[0].fn);
    if (k.code() != Error::kReentrantUpdate) shared_.report("createKey from the patch observer returned " + str(k.status()));
    Result<Blob> b = rt_->installCode(std::vector<uint8_t>{0xC3}, {});
    if (b.code() != Error::kReentrantUpdate && b.code() != Error::kArenaExhausted) shared_.report("installCode from the patch observer returned " + str(b.status()));
  };
  trace() = "  options: arena " + std::to_string(options_.arenaSize) + ", veneers " + std::to_string(options_.allowVeneers) +
            ", align " + std::to_string(options_.targetAlignment) + ", background " + std::to_string(options_.backgroundReclaimer) +
            ", maxSites " + std::to_string(options_.maxSites) + ", maxThreads " + std::to_string(options_.maxThreads) +
            ", maxKeys " + std::to_string(options_.maxKeys) + "\n";
  Result<Runtime> r = Runtime::create(options_);
  FUZZ_CHECK(r.isOk(), "Runtime::create with valid options: " + str(r.status()));
  rt_.emplace(std::move(*r));
  ArenaInfo a = rt().arenaInfo();
  arenaLo_ = reinterpret_cast<uintptr_t>(a.rxBase);
  arenaHi_ = arenaLo_ + a.size;
  foreignCode()->reset(cxxTargets()[0].fn);
  return true;
}

void Session::step() {
  ++ops_;
  switch (in_.below(24)) {
    case 0: case 1: opNewReturner(); break;
    case 2: case 3: opCreateKey(); break;
    case 4: opStaticCall(); break;
    case 5: case 6: opUpdate(); break;
    case 7: opBatch(); break;
    case 8: opDestroyKey(); break;
    case 9: case 10: opEmitBlob(); break;
    case 11: opRawBlob(); break;
    case 12: opBadCode(); break;
    case 13: case 14: opCall(); break;
    case 15: opRetireBlob(); break;
    case 16: opRetireCallback(); break;
    case 17: opBarrierOrPoll(); break;
    case 18: opSynchronize(); break;
    case 19: opSelfThread(); break;
    case 20: opHelperThread(); break;
    case 21: opForeignSite(); break;
    case 22: opSiteQuery(); break;
    default: opObserver(); break;
  }
  checkAll();
}

}  // namespace
}  // namespace patchcall::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  patchcall::fuzz::Input in(data, size);
  patchcall::fuzz::Session session(in);
  if (!session.start()) return 0;
  while (!session.done()) session.step();
  return 0;
}
