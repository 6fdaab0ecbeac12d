// api_fuzz: the Session (one Runtime driven by one input) and its model of what the runtime
// should hold. fuzz_model.cpp: model queries, pickers, invariant checks; fuzz_ops.cpp: the
// operations; api_fuzz.cpp: the libFuzzer entry point.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "fuzz_fixtures.h"
#include "fuzz_layout.h"
#include "fuzz_support.h"
#include "patchcall/jit.h"

namespace patchcall::fuzz {

using std::chrono::milliseconds;
using layout::Reach;
using layout::reachFrom;

using Codes = uint32_t;  // a set of Error values
constexpr Codes bit(Error e) { return Codes{1} << static_cast<int>(e); }
constexpr Codes kOk = bit(Error::kOk);

inline std::string codesText(Codes c) {
  std::string s;
  for (int i = 0; i < 32; ++i) {
    if ((c & (Codes{1} << i)) != 0) s += std::string(s.empty() ? "" : "|") + errorName(static_cast<Error>(i));
  }
  return s.empty() ? "<none>" : s;
}

inline void expectCodes(const std::string& what, const Status& s, Codes allowed) {
  FUZZ_CHECK((allowed & bit(s.code())) != 0, what + " returned " + str(s) + "; allowed: " + codesText(allowed));
  FUZZ_CHECK(s.isOk() || !s.message().empty(), what + ": error without a message");
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
    // The whole 16-byte slot is trampoline memory (fuzz_layout.h).
    for (const KeyM& k : keys_) {
      if (p >= k.trampoline - layout::kSlotBeforeEntry && p < k.trampoline + layout::kSlotAfterEntry) return true;
    }
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
  // forKey: the key being updated (SIZE_MAX: a new key); inBatch: other keys may change too.
  Codes validateCodes(const void* t, size_t forKey, bool inBatch) const;
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
  void checkBranch(const uint8_t* insn, bool call, const void* target, const std::string& what);
  void checkSite(const SiteM& s, bool foreign);

  Input& in_;
  Shared shared_;
  Options options_;
  std::optional<Runtime> rt_;
  std::optional<HelperThread> helper_;
  ThreadScope self_;
  uintptr_t arenaLo_ = 0, arenaHi_ = 0;
  const void* sharedTargets_[2] = {nullptr, nullptr};  // noopTarget(), returnZeroTarget(): callable

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

}  // namespace patchcall::fuzz
