// Bad input gets a clear error value, never a crash or a silent wrong patch. Each test
// asserts the exact Error code, a non-empty message, and that no code byte changed (the
// runtime's code is snapshotted, the patch observer counts writes).
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "isa.h"
#include "patchcall/jit.h"
#include "patchcall/static_call.h"

namespace patchcall {
namespace {


__attribute__((noinline)) int cxxSeven() { return 7; }

// A runtime with one key (target: a JIT `mov eax, 1; ret`), a caller blob with a Direct
// site bound to it, and an observer counting code writes.
class BadInput : public ::testing::Test {
 protected:
  void start(Options o = {}) {
    o.patchObserver = [this](const PatchEvent& e) {
      ++writes_;
      if (onPatch_) onPatch_(e);
    };
    Result<Runtime> r = Runtime::create(std::move(o));
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    rt_.emplace(std::move(*r));
    one_ = returner(1);
    two_ = returner(2);
    Result<Key> k = rt().createKey(one_, "victim");
    ASSERT_TRUE(k.isOk()) << k.status().toString();
    key_ = *k;
    caller_ = installCaller(key_);
    ASSERT_NE(caller_, nullptr);
    writes_ = 0;
  }
  Runtime& rt() { return *rt_; }

  const void* returner(int id) {
    jit::Assembler a(rt());
    test::emitSetResult(a, id);
    test::emitRet(a);
    Result<Blob> b = jit::install(a);
    EXPECT_TRUE(b.isOk()) << b.status().toString();
    return b.isOk() ? b->code : nullptr;
  }
  // sub rsp,8 ; call <key> ; add rsp,8 ; ret
  int (*installCaller(Key key))() {
    jit::Assembler a(rt());
    test::emitEnter(a);
    EXPECT_TRUE(jit::emitCall(a, key).isOk());
    test::emitLeave(a);
    test::emitRet(a);
    Result<Blob> b = jit::install(a);
    EXPECT_TRUE(b.isOk()) << b.status().toString();
    return b.isOk() ? reinterpret_cast<int (*)()>(b->code) : nullptr;
  }

  // The used part of the arena: every site, trampoline and veneer lives in it.
  std::vector<uint8_t> snapshot() {
    ArenaInfo a = rt().arenaInfo();
    auto* p = static_cast<const uint8_t*>(a.rxBase);
    return std::vector<uint8_t>(p, p + std::min<size_t>(a.size, size_t{1} << 20));
  }
  // The failed call must leave every code byte, the key's target and the counters alone.
  void expectNothingPatched(const std::vector<uint8_t>& before, const RuntimeStats& statsBefore) {
    std::vector<uint8_t> after = snapshot();
    ASSERT_EQ(before.size(), after.size());
    for (size_t i = 0; i < before.size(); ++i) {
      ASSERT_EQ(before[i], after[i]) << "arena byte at offset " << i << " changed";
    }
    EXPECT_EQ(writes_, 0) << "the patch observer saw writes";
    RuntimeStats s = rt().stats();
    EXPECT_EQ(s.siteWrites, statsBefore.siteWrites);
    EXPECT_EQ(s.updates, statsBefore.updates);
    EXPECT_EQ(rt().target(key_).value(), one_) << "the key's target changed";
    EXPECT_EQ(caller_(), 1) << "the site no longer calls the original target";
  }

  std::optional<Runtime> rt_;
  const void* one_ = nullptr;
  const void* two_ = nullptr;
  Key key_;
  int (*caller_)() = nullptr;
  int writes_ = 0;
  std::function<void(const PatchEvent&)> onPatch_;
};

Status statusOf(const Status& s) { return s; }
template <typename T>
Status statusOf(const Result<T>& r) { return r.status(); }

// Asserts the exact error code and a non-empty message, for a Status or a Result<T>.
#define EXPECT_ERROR(expr, error)                                          \
  do {                                                                     \
    auto&& result_ = (expr);                                               \
    ASSERT_FALSE(result_.isOk()) << #expr " unexpectedly succeeded";       \
    Status status_ = statusOf(result_);                                    \
    EXPECT_EQ(status_.code(), error) << #expr ": " << status_.toString();  \
    EXPECT_FALSE(status_.message().empty()) << #expr ": empty message";    \
  } while (0)

TEST_F(BadInput, NullTarget) {
  start();
  auto before = snapshot();
  RuntimeStats stats = rt().stats();
  EXPECT_ERROR(rt().update(key_, nullptr), Error::kNullTarget);
  KeyUpdate batch[] = {{key_, nullptr}};
  EXPECT_ERROR(rt().updateBatch(batch), Error::kNullTarget);
  expectNothingPatched(before, stats);
  EXPECT_ERROR(rt().createKey(nullptr), Error::kNullTarget);
}

TEST_F(BadInput, MisalignedTarget) {
  Options o;
  o.targetAlignment = 16;
  start(o);
  auto before = snapshot();
  RuntimeStats stats = rt().stats();
  auto misaligned = static_cast<const uint8_t*>(two_) + 1;  // blobs are 64-aligned
  EXPECT_ERROR(rt().update(key_, misaligned), Error::kMisalignedTarget);
  EXPECT_ERROR(rt().update(key_, static_cast<const uint8_t*>(two_) + 8), Error::kMisalignedTarget);
  expectNothingPatched(before, stats);
  EXPECT_ERROR(rt().createKey(misaligned), Error::kMisalignedTarget);
  // The aligned target is accepted (the check is not simply refusing everything).
  ASSERT_TRUE(rt().update(key_, two_).isOk());
  EXPECT_EQ(caller_(), 2);
}

TEST_F(BadInput, InvalidOptions) {
  Options o;
  o.targetAlignment = 3;
  Result<Runtime> r = Runtime::create(o);
  EXPECT_ERROR(r, Error::kInvalidArgument);
  Options z;
  z.maxSites = 0;
  EXPECT_ERROR(Runtime::create(z), Error::kInvalidArgument);
}

// An RX page > 4 GiB from the arena (`result = 0xFA ; ret`).
class FarPage {
 public:
  explicit FarPage(const ArenaInfo& a) {
    constexpr uint64_t kGiB = uint64_t{1} << 30;
    uint64_t end = reinterpret_cast<uint64_t>(a.rxBase) + a.size;
    for (uint64_t gib = 16; gib <= 1024 && page_ == nullptr; gib *= 2) {
      void* p = mmap(reinterpret_cast<void*>((end + gib * kGiB) & ~uint64_t{4095}), 4096, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
      if (p == MAP_FAILED) continue;
      if (reinterpret_cast<uint64_t>(p) > end + 4 * kGiB) {
        page_ = static_cast<uint8_t*>(p);
      } else {
        munmap(p, 4096);
      }
    }
    if (page_ == nullptr) return;
    std::vector<uint8_t> code = test::returnerBytes(0xFA);
    std::memcpy(page_, code.data(), code.size());
    mprotect(page_, 4096, PROT_READ | PROT_EXEC);
  }
  ~FarPage() {
    if (page_ != nullptr) munmap(page_, 4096);
  }
  const void* fn() const { return page_; }

 private:
  uint8_t* page_ = nullptr;
};

TEST_F(BadInput, OutOfRangeWithVeneersDisabled) {
  Options o;
  o.allowVeneers = false;
  start(o);
  FarPage far(rt().arenaInfo());
  ASSERT_NE(far.fn(), nullptr) << "could not map a far page";
  auto before = snapshot();
  RuntimeStats stats = rt().stats();
  EXPECT_ERROR(rt().update(key_, far.fn()), Error::kOutOfRange);
  KeyUpdate batch[] = {{key_, far.fn()}};
  EXPECT_ERROR(rt().updateBatch(batch), Error::kOutOfRange);
  expectNothingPatched(before, stats);
  EXPECT_EQ(rt().stats().veneers, 0u);
  EXPECT_ERROR(rt().createKey(far.fn()), Error::kOutOfRange);
}

TEST_F(BadInput, ArenaExhaustedAndStillUsable) {
  Options o;
  o.arenaSize = size_t{1} << 20;
  start(o);
  EXPECT_ERROR(rt().reserveCode(size_t{2} << 20), Error::kArenaExhausted);
  std::vector<CodeReservation> held;
  Status last;
  for (int i = 0; i < 1000; ++i) {  // 1 MiB / 4 KiB: exhausted well before 1000
    Result<CodeReservation> r = rt().reserveCode(4096);
    if (!r.isOk()) {
      last = r.status();
      break;
    }
    held.push_back(*r);
  }
  ASSERT_FALSE(last.isOk()) << "reserved " << held.size() << " x 4 KiB out of a 1 MiB arena";
  EXPECT_ERROR(last, Error::kArenaExhausted);
  // Fill the remaining crumbs so nothing fits, then: install, createKey through new
  // trampoline chunks, veneers... all fail cleanly.
  while (true) {
    Result<CodeReservation> r = rt().reserveCode(64);
    if (!r.isOk()) break;
    held.push_back(*r);
  }
  {
    jit::Assembler a(rt());
    test::emitSetResult(a, 3);
    test::emitRet(a);
    EXPECT_ERROR(jit::install(a), Error::kArenaExhausted);
    EXPECT_FALSE(a.installed());
  }
  EXPECT_ERROR(rt().installCode(test::retBytes(), {}), Error::kArenaExhausted);
  Status keyStatus;
  for (int i = 0; i < 2000 && keyStatus.isOk(); ++i) {  // a trampoline chunk holds 512 keys
    Result<Key> k = rt().createKey(one_);
    if (!k.isOk()) keyStatus = k.status();
  }
  EXPECT_ERROR(keyStatus, Error::kArenaExhausted);

  // Usable afterwards: give memory back, install and call new code, retarget the old site.
  for (const CodeReservation& r : held) rt().abandonCode(r);
  EXPECT_EQ(caller_(), 1);
  const void* three = returner(3);
  ASSERT_NE(three, nullptr);
  ASSERT_TRUE(rt().update(key_, three).isOk());
  EXPECT_EQ(caller_(), 3);
  Result<Key> k = rt().createKey(one_);
  ASSERT_TRUE(k.isOk()) << k.status().toString();
  auto fn = installCaller(*k);
  ASSERT_NE(fn, nullptr);
  EXPECT_EQ(fn(), 1);
}

// jit::install when the arena is full: kArenaExhausted, nothing registered.
class InstallNoRoom : public BadInput {
 protected:
  void fillAndEmit() {
    Options o;
    o.arenaSize = size_t{1} << 20;
    start(o);
    while (true) {
      Result<CodeReservation> r = rt().reserveCode(64);
      if (!r.isOk()) break;
      held_.push_back(*r);
    }
    a_.emplace(rt());
    test::emitEnter(*a_);
    ASSERT_TRUE(jit::emitSafepointPoll(*a_).isOk());
    ASSERT_TRUE(jit::emitCall(*a_, key_).isOk());
    test::emitLeave(*a_);
    test::emitRet(*a_);
    uint64_t sitesBefore = rt().stats().sites;
    EXPECT_ERROR(jit::install(*a_), Error::kArenaExhausted);
    EXPECT_FALSE(a_->installed());
    EXPECT_EQ(rt().stats().sites, sitesBefore) << "a failed install registered sites";
  }
  void freeRoom() {
    for (const CodeReservation& r : held_) rt().abandonCode(r);
    held_.clear();
  }
  std::vector<CodeReservation> held_;
  std::optional<jit::Assembler> a_;
};

TEST_F(InstallNoRoom, ReturnsArenaExhausted) {
  fillAndEmit();
  freeRoom();
  EXPECT_EQ(caller_(), 1);
}

// The same Assembler (with a safepoint poll, whose slow path install() emits) installs once
// room is back (a regression test: install() used to re-bind the slow-path labels on every
// attempt and fail with kEmitFailed "LabelAlreadyBound").
TEST_F(InstallNoRoom, RetriesAfterRoomIsFreed) {
  fillAndEmit();
  freeRoom();
  Result<Blob> b = jit::install(*a_);
  ASSERT_TRUE(b.isOk()) << "retrying install after room was freed: " << b.status().toString();
  EXPECT_EQ(reinterpret_cast<int (*)()>(b->code)(), 1);
}

TEST_F(BadInput, ReentrantUpdateFromPatchObserver) {
  start();
  Result<Key> other = rt().createKey(one_);
  ASSERT_TRUE(other.isOk());
  std::vector<Status> nested;
  onPatch_ = [&](const PatchEvent&) {
    if (nested.empty()) {
      nested.push_back(rt().update(*other, two_).status());
      KeyUpdate batch[] = {{*other, two_}};
      nested.push_back(rt().updateBatch(batch));
      nested.push_back(rt().createKey(two_).status());
    }
  };
  Result<const void*> outer = rt().update(key_, two_);
  onPatch_ = nullptr;
  ASSERT_TRUE(outer.isOk()) << "the outer update must succeed: " << outer.status().toString();
  EXPECT_EQ(caller_(), 2);
  ASSERT_EQ(nested.size(), 3u) << "the observer was not called";
  for (const Status& s : nested) {
    EXPECT_EQ(s.code(), Error::kReentrantUpdate) << s.toString();
    EXPECT_FALSE(s.message().empty());
  }
  EXPECT_EQ(rt().target(*other).value(), one_) << "the nested update was applied";
  // Not wedged: the text mutex was released, further updates work.
  ASSERT_TRUE(rt().update(*other, two_).isOk());
}

TEST_F(BadInput, SiteNeverRegistered) {
  start();
  int onStack = 0;
  const void* notSites[] = {
      &onStack,                                                // stack
      reinterpret_cast<const void*>(&cxxSeven),                // C++ text
      rt().arenaInfo().rxBase,                                 // runtime page
      reinterpret_cast<const uint8_t*>(caller_) + 2,           // inside a blob, not a site start
      one_,                                                    // a blob without sites
      reinterpret_cast<const void*>(0x1000),                   // unmapped
      nullptr,
  };
  for (const void* p : notSites) {
    Result<SiteInfo> s = rt().site(p);
    EXPECT_ERROR(s, Error::kUnknownSite);
  }
  EXPECT_ERROR(rt().unregisterForeignSite(const_cast<void*>(one_)), Error::kUnknownSite);
}

TEST_F(BadInput, UnknownKey) {
  start();
  Result<Key> doomed = rt().createKey(one_);
  ASSERT_TRUE(doomed.isOk());
  ASSERT_TRUE(rt().destroyKey(*doomed).isOk());
  auto before = snapshot();
  RuntimeStats stats = rt().stats();
  for (Key k : {Key{0}, Key{987654}, *doomed}) {
    EXPECT_ERROR(rt().update(k, two_), Error::kUnknownKey);
    EXPECT_ERROR(rt().target(k), Error::kUnknownKey);
    EXPECT_ERROR(rt().trampoline(k), Error::kUnknownKey);
    EXPECT_ERROR(rt().destroyKey(k), Error::kUnknownKey);
    KeyUpdate batch[] = {{key_, two_}, {k, two_}};
    EXPECT_ERROR(rt().updateBatch(batch), Error::kUnknownKey);
  }
  expectNothingPatched(before, stats);
  // Emitting or installing a site bound to a dead key fails the same way.
  jit::Assembler a(rt());
  EXPECT_ERROR(jit::emitCall(a, Key{0}), Error::kUnknownKey);
  ASSERT_TRUE(jit::emitCall(a, *doomed).isOk());  // checked at install time
  test::emitRet(a);
  EXPECT_ERROR(jit::install(a), Error::kUnknownKey);
}

TEST_F(BadInput, DestroyKeyWithSitesIsStillTargeted) {
  start();
  EXPECT_ERROR(rt().destroyKey(key_), Error::kStillTargeted);
  EXPECT_EQ(caller_(), 1);
}

TEST_F(BadInput, RetiredTarget) {
  start();
  jit::Assembler a(rt());
  test::emitSetResult(a, 9);
  test::emitRet(a);
  Result<Blob> doomed = jit::install(a);
  ASSERT_TRUE(doomed.isOk());
  ASSERT_TRUE(rt().retire(*doomed).isOk());
  EXPECT_ERROR(rt().retire(*doomed), Error::kDoubleRetire);

  auto before = snapshot();
  RuntimeStats stats = rt().stats();
  EXPECT_ERROR(rt().update(key_, doomed->code), Error::kRetiredTarget);  // retired, maybe not yet freed
  Status b = rt().barrier(std::chrono::milliseconds(5000));
  ASSERT_TRUE(b.isOk()) << b.toString();
  EXPECT_GE(rt().stats().blobsFreed, 1u);
  EXPECT_EQ(*static_cast<const uint8_t*>(doomed->code), test::fillByte()) << "freed code must be filled (x86: int3, A64: udf)";
  before = snapshot();  // freeing rewrote the blob's bytes; compare from here
  EXPECT_ERROR(rt().update(key_, doomed->code), Error::kRetiredTarget);  // freed
  KeyUpdate batch[] = {{key_, doomed->code}};
  EXPECT_ERROR(rt().updateBatch(batch), Error::kRetiredTarget);
  expectNothingPatched(before, stats);
  EXPECT_ERROR(rt().createKey(doomed->code), Error::kRetiredTarget);
}

TEST_F(BadInput, RetireStillTargetedBlob) {
  start();
  jit::Assembler a(rt());
  test::emitSetResult(a, 9);
  test::emitRet(a);
  Result<Blob> blob = jit::install(a);
  ASSERT_TRUE(blob.isOk());
  ASSERT_TRUE(rt().update(key_, blob->code).isOk());
  EXPECT_ERROR(rt().retire(*blob), Error::kStillTargeted);
  EXPECT_EQ(caller_(), 9);
}

TEST_F(BadInput, DuplicateKeyInOneBatch) {
  start();
  Result<Key> other = rt().createKey(one_);
  ASSERT_TRUE(other.isOk());
  auto otherCaller = installCaller(*other);
  auto before = snapshot();
  RuntimeStats stats = rt().stats();
  KeyUpdate batch[] = {{*other, two_}, {key_, two_}, {key_, one_}};
  EXPECT_ERROR(rt().updateBatch(batch), Error::kInvalidArgument);
  expectNothingPatched(before, stats);
  EXPECT_EQ(otherCaller(), 1);
}

// Validation covers the whole batch before the first write: a bad entry at the end leaves
// the good entries before it (and their many sites) untouched.
TEST_F(BadInput, FailedBatchValidationLeavesEverySiteUnmodified) {
  start();
  std::vector<Key> keys;
  std::vector<int (*)()> callers;
  for (int i = 0; i < 8; ++i) {
    Result<Key> k = rt().createKey(one_);
    ASSERT_TRUE(k.isOk());
    keys.push_back(*k);
    for (int j = 0; j < 4; ++j) callers.push_back(installCaller(*k));
  }
  std::vector<KeyUpdate> batch;
  for (Key k : keys) batch.push_back({k, two_});
  auto before = snapshot();
  RuntimeStats stats = rt().stats();
  ArenaInfo arena = rt().arenaInfo();
  // The middle of the arena: code is handed out from one end (which one depends on where the
  // arena lies against the text), and this test uses far less than half of it.
  const void* unusedArenaByte = static_cast<const uint8_t*>(arena.rxBase) + (arena.size / 2 & ~size_t{63});
  for (const void* bad : {static_cast<const void*>(nullptr), unusedArenaByte}) {
    batch.push_back({key_, bad});
    Status s = rt().updateBatch(batch);
    EXPECT_FALSE(s.isOk());
    EXPECT_TRUE(s.code() == Error::kNullTarget || s.code() == Error::kRetiredTarget) << s.toString();
    EXPECT_FALSE(s.message().empty());
    batch.pop_back();
  }
  expectNothingPatched(before, stats);
  EXPECT_EQ(rt().stats().syncs, stats.syncs) << "a refused batch must not sync";
  for (Key k : keys) EXPECT_EQ(rt().target(k).value(), one_);
  for (auto fn : callers) EXPECT_EQ(fn(), 1);
  // The same batch without the bad entry goes through.
  ASSERT_TRUE(rt().updateBatch(batch).isOk());
  for (auto fn : callers) EXPECT_EQ(fn(), 2);
}

}  // namespace
}  // namespace patchcall
