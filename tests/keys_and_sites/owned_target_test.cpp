// Targets in patchcall's own memory: only a live blob's code (not the inside of a call site)
// and a live key's trampoline entry may be called; target cells, the rest of a trampoline
// slot, veneers and the runtime page are refused, and so is a trampoline chain that leads
// back to the key being updated (a call would jump in a loop forever).
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "error_checks.h"
#include "jit_targets.h"

namespace patchcall {
namespace {

using checks::callInt;
using checks::installCaller;
using checks::quietManualOptions;
using test::idOf;
using test::installTargets;

#define EXPECT_OWNED_REFUSED(expr, text)                                                          \
  do {                                                                                            \
    Status s_ = checks::statusOf(expr);                                                        \
    EXPECT_EQ(s_.code(), Error::kInvalidArgument) << #expr ": " << s_.toString();                 \
    EXPECT_NE(s_.message().find(text), std::string::npos) << #expr ": message lacks '" << (text) \
                                                          << "': " << s_.toString();              \
  } while (0)
// The same where an instruction may start at `at`; where none can (aarch64: every 4th byte),
// the target is refused as misaligned before anything else.
#define EXPECT_OWNED_OR_MISALIGNED(expr, at, text)                                 \
  do {                                                                             \
    if (reinterpret_cast<uintptr_t>(at) % test::instructionAlignment() != 0) {     \
      EXPECT_ERROR(expr, Error::kMisalignedTarget);                                \
    } else {                                                                       \
      EXPECT_OWNED_REFUSED(expr, text);                                            \
    }                                                                              \
  } while (0)

const uint8_t* bytes(const void* p) { return static_cast<const uint8_t*>(p); }

class OwnedTarget : public ::testing::Test {
 protected:
  void SetUp() override {
    Options o = quietManualOptions();
    o.targetAlignment = 1;  // every byte is a candidate: alignment must not be what refuses them
    Result<Runtime> r = Runtime::create(o);
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    rt_.emplace(std::move(*r));
    targets_ = installTargets(rt(), 3, 90);
    ASSERT_EQ(targets_.size(), 3u);
    for (int i = 0; i < 2; ++i) {
      Result<Key> k = rt().createKey(targets_[i], i == 0 ? "a" : "b");
      ASSERT_TRUE(k.isOk()) << k.status().toString();
      keys_.push_back(*k);
      Result<Blob> c = installCaller(rt(), *k);
      ASSERT_TRUE(c.isOk()) << c.status().toString();
      callers_.push_back(c->code);
    }
  }
  Runtime& rt() { return *rt_; }
  // Every refusal leaves both keys where they were.
  void expectUnchanged() {
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(rt().target(keys_[i]).value(), targets_[i]);
      EXPECT_EQ(callInt(callers_[i]), idOf(targets_[i]));
    }
  }
  std::optional<Runtime> rt_;
  std::vector<const void*> targets_;
  std::vector<Key> keys_;
  std::vector<const void*> callers_;
};

TEST_F(OwnedTarget, TrampolineSlotsOtherThanALiveEntryAreRefused) {
  Key a = keys_[0], b = keys_[1];
  auto tramp = bytes(rt().trampoline(a).value());
  auto cell = bytes(rt().targetCell(a).value());
  // update(k, trampoline(k)) used to return OK: the next call looped forever.
  EXPECT_OWNED_REFUSED(rt().update(a, tramp), "own trampoline");
  // A key pointed at its own target cell used to crash on the next call.
  EXPECT_OWNED_REFUSED(rt().update(a, cell), "trampoline slot");
  for (const uint8_t* p = cell; p < tramp + test::callSize(); ++p) {
    if (p == tramp) continue;
    SCOPED_TRACE("slot byte " + std::to_string(p - cell));
    EXPECT_OWNED_OR_MISALIGNED(rt().update(b, p), p, "trampoline slot");
    EXPECT_OWNED_OR_MISALIGNED(rt().createKey(p), p, "trampoline slot");
    KeyUpdate batch[] = {{b, targets_[2]}, {a, p}};
    EXPECT_OWNED_OR_MISALIGNED(rt().updateBatch(batch), p, "trampoline slot");
  }
  expectUnchanged();
}

TEST_F(OwnedTarget, AnotherLiveKeysTrampolineChainsButALoopIsRefused) {
  Key a = keys_[0], b = keys_[1];
  const void* trampA = rt().trampoline(a).value();
  const void* trampB = rt().trampoline(b).value();
  ASSERT_TRUE(rt().update(a, trampB).isOk()) << "a call through key a reaches key b's target";
  EXPECT_EQ(callInt(callers_[0]), idOf(targets_[1]));
  EXPECT_OWNED_REFUSED(rt().update(b, trampA), "loop");  // b -> a -> b
  Result<Key> c = rt().createKey(trampA, "c");           // c -> a -> b: a chain, no loop
  ASSERT_TRUE(c.isOk()) << c.status().toString();
  EXPECT_EQ(callInt(rt().trampoline(*c).value()), idOf(targets_[1]));
  EXPECT_OWNED_REFUSED(rt().update(b, rt().trampoline(*c).value()), "loop");  // b -> c -> a -> b
  ASSERT_TRUE(rt().update(a, targets_[0]).isOk());
  // Both edges of a loop in one batch: each alone is fine, together they loop.
  KeyUpdate loop[] = {{a, trampB}, {b, trampA}};
  EXPECT_OWNED_REFUSED(rt().updateBatch(loop), "loop");
  expectUnchanged();
  // Swapping the edge inside one batch is no loop: a -> b, b -> its target.
  KeyUpdate swap[] = {{b, targets_[2]}, {a, trampB}};
  ASSERT_TRUE(rt().updateBatch(swap).isOk());
  EXPECT_EQ(callInt(callers_[0]), idOf(targets_[2]));
}

TEST_F(OwnedTarget, ADestroyedKeysTrampolineIsRefused) {
  Result<Key> gone = rt().createKey(targets_[2], "gone");
  ASSERT_TRUE(gone.isOk());
  const void* tramp = rt().trampoline(*gone).value();
  ASSERT_TRUE(rt().destroyKey(*gone).isOk());
  EXPECT_OWNED_REFUSED(rt().update(keys_[0], tramp), "destroyed key");
  EXPECT_OWNED_REFUSED(rt().createKey(tramp), "destroyed key");
  expectUnchanged();
}

TEST_F(OwnedTarget, TheRuntimePageAndTheInsideOfASiteAreRefused) {
  EXPECT_OWNED_REFUSED(rt().update(keys_[0], rt().safepointStub()), "runtime page");
  EXPECT_OWNED_REFUSED(rt().update(keys_[0], const_cast<const uint8_t*>(rt().safepointFlag())), "runtime page");
  EXPECT_OWNED_REFUSED(rt().createKey(rt().safepointStub()), "runtime page");
  // callers_[1] is `sub rsp, 8 ; call rel32 ; ...`: its site is somewhere in the first bytes.
  const uint8_t* at = nullptr;
  for (int off = 0; off < 16 && at == nullptr; ++off) {
    if (rt().site(bytes(callers_[1]) + off).isOk()) at = bytes(callers_[1]) + off;
  }
  ASSERT_NE(at, nullptr) << "no site found in the caller";
  for (size_t d = 1; d < test::callSize(); ++d) {
    if (test::instructionAlignment() > 1) {  // aarch64: a site is one instruction, the rest is misaligned
      EXPECT_ERROR(rt().update(keys_[0], at + d), Error::kMisalignedTarget);
    } else {
      EXPECT_OWNED_REFUSED(rt().update(keys_[0], at + d), "inside the call site");
    }
  }
  EXPECT_TRUE(rt().update(keys_[0], at).isOk()) << "a site's first byte is an instruction like any other";
  ASSERT_TRUE(rt().update(keys_[0], targets_[0]).isOk());
  expectUnchanged();
}

// A veneer is patchcall's stub for a far target; pointing a key at it is refused (it used to
// be kRetiredTarget, "no live blob").
TEST_F(OwnedTarget, VeneersAreRefused) {
  // A page > 4 GiB away from the arena, so the key needs a veneer.
  ArenaInfo arena = rt().arenaInfo();
  auto lo = reinterpret_cast<uintptr_t>(arena.rxBase);
  uint8_t* far = nullptr;
  for (uintptr_t gib = 8; gib <= 256 && far == nullptr; gib *= 2) {
    void* p = mmap(reinterpret_cast<void*>(lo + arena.size + (gib << 30)), 4096, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (p != MAP_FAILED) far = static_cast<uint8_t*>(p);
  }
  ASSERT_NE(far, nullptr);
  std::vector<uint8_t> code = test::returnerBytes(0x42);
  std::memcpy(far, code.data(), code.size());
  ASSERT_EQ(mprotect(far, 4096, PROT_READ | PROT_EXEC), 0);
  ASSERT_TRUE(rt().update(keys_[1], far).isOk());
  auto tramp = bytes(rt().trampoline(keys_[1]).value());
  auto* veneer = reinterpret_cast<const uint8_t*>(test::directJumpTarget(tramp));
  ASSERT_NE(veneer, nullptr) << "the trampoline is not a direct jump";
  ASSERT_NE(test::absoluteJumpTarget(veneer), 0u) << "the trampoline does not go through a veneer";
  for (int d = 0; d < 16; ++d) EXPECT_OWNED_OR_MISALIGNED(rt().update(keys_[0], veneer + d), veneer + d, "veneer");
  EXPECT_EQ(callInt(callers_[1]), 0x42);
  ASSERT_TRUE(rt().update(keys_[1], targets_[1]).isOk());
  expectUnchanged();
  munmap(far, 4096);
}

}  // namespace
}  // namespace patchcall
