// The kernel's static_call behaviours a runtime's AOT and JIT code rely on, checked through
// the public API (ported from the intent of Linux's static_call selftest): a key of a void
// function updated to "nothing" becomes a no-op call (one store, like static_call_cond), a
// built-in return-0 target (__static_call_return0), and an update to the current target that
// writes nothing and makes no sync.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <vector>

#include "isa.h"
#include "error_checks.h"
#include "patchcall/jit.h"

namespace patchcall {
namespace {


std::atomic<int> gCalls{0};
void countCall() { gCalls.fetch_add(1); }
long fortyTwo() { return 42; }

// `sub rsp,8 ; <Direct site> ; add rsp,8 ; ret`: returns whatever the target returned.
// `*site`: the site's address, from the Assembler once installed.
template <typename Fn>
Fn installCaller(Runtime& rt, Key key, const void** site = nullptr) {
  jit::Assembler a(rt);
  test::emitEnter(a);
  EXPECT_TRUE(jit::emitCall(a, key).isOk());
  test::emitLeave(a);
  test::emitRet(a);
  EXPECT_EQ(a.siteAddress(0), nullptr) << "a site has no address before install";
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  if (site != nullptr) *site = a.siteAddress(0);
  if (b) {
    EXPECT_EQ(a.siteAddress(0), static_cast<uint8_t*>(b->code) + a.sites()[0].offset);
  }
  EXPECT_EQ(a.siteAddress(1), nullptr) << "an index past the end has no address";
  return b ? reinterpret_cast<Fn>(b->code) : nullptr;
}

TEST(StaticCallParity, NullTargetOfANullIsNoopKeyIsANoOpCall) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk());
  EXPECT_ERROR(rt->createKey(nullptr, "plain").status(), Error::kNullTarget);
  Result<Key> key = rt->createKey(nullptr, "cond", KeyOptions{.strictUpdates = false, .nullIsNoop = true});
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  EXPECT_EQ(*rt->target(*key), nullptr) << "a no-op key reports a null target";
  const void* site = nullptr;
  auto call = installCaller<void (*)()>(*rt, *key, &site);
  ASSERT_NE(call, nullptr);
  call();
  EXPECT_EQ(gCalls.load(), 0) << "the no-op target called something";
  Result<const void*> old = rt->update(*key, reinterpret_cast<const void*>(&countCall));
  ASSERT_TRUE(old.isOk());
  EXPECT_EQ(*old, nullptr);
  call();
  EXPECT_EQ(gCalls.load(), 1);
  // Back to nothing: the site calls the noop target (still one store), target() is null.
  old = rt->update(*key, nullptr);
  ASSERT_TRUE(old.isOk()) << old.status().toString();
  EXPECT_EQ(*old, reinterpret_cast<const void*>(&countCall));
  EXPECT_EQ(*rt->target(*key), nullptr);
  call();
  EXPECT_EQ(gCalls.load(), 1);
  Result<SiteInfo> info = rt->site(site);
  ASSERT_TRUE(info.isOk()) << info.status().toString();
  EXPECT_EQ(info->target, rt->noopTarget()) << "the site calls the shared noop target";
  // The typed path through the trampoline and the target cell does the same.
  reinterpret_cast<void (*)()>(const_cast<void*>(*rt->trampoline(*key)))();
  EXPECT_EQ(gCalls.load(), 1);
  EXPECT_EQ(**rt->targetCell(*key), rt->noopTarget());
}

TEST(StaticCallParity, ReturnZeroTargetReturnsZeroThroughSitesTrampolinesAndCells) {
  Result<Runtime> rt = Runtime::create();
  ASSERT_TRUE(rt.isOk());
  Result<Key> key = rt->createKey(reinterpret_cast<const void*>(&fortyTwo), "answer");
  ASSERT_TRUE(key.isOk());
  auto call = installCaller<long (*)()>(*rt, *key);
  ASSERT_NE(call, nullptr);
  EXPECT_EQ(call(), 42);
  ASSERT_TRUE(rt->update(*key, rt->returnZeroTarget()).isOk());
  EXPECT_EQ(call(), 0);
  EXPECT_EQ(reinterpret_cast<long (*)()>(const_cast<void*>(*rt->trampoline(*key)))(), 0);
  EXPECT_EQ(reinterpret_cast<long (*)()>(const_cast<void*>(**rt->targetCell(*key)))(), 0);
  // The rest of the runtime page (the stub's, in the arena) is still refused, and so is the
  // poll flag's page beside the arena.
  auto stub = reinterpret_cast<uintptr_t>(rt->safepointStub());
  auto inner = reinterpret_cast<const void*>((stub & ~uintptr_t{4095}) + 256);
  ASSERT_NE(inner, rt->noopTarget());
  ASSERT_NE(inner, rt->returnZeroTarget());
  EXPECT_ERROR(rt->update(*key, inner).status(), Error::kInvalidArgument);
  EXPECT_ERROR(rt->update(*key, rt->safepointStub()).status(), Error::kInvalidArgument);
  auto flagPage = reinterpret_cast<uintptr_t>(const_cast<const uint8_t*>(rt->safepointFlag())) & ~uintptr_t{4095};
  EXPECT_ERROR(rt->update(*key, reinterpret_cast<const void*>(flagPage + 256)).status(), Error::kInvalidArgument);
  ASSERT_TRUE(rt->update(*key, reinterpret_cast<const void*>(&fortyTwo)).isOk());
  EXPECT_EQ(call(), 42);
}

TEST(StaticCallParity, UpdateToTheCurrentTargetWritesNothingAndDoesNotSync) {
  Options o;
  o.arenaSize = test::arenaSizeWithinCallReach();  // fortyTwo without a veneer: one fewer orphan, one fewer sync
  o.publishDelay = std::chrono::seconds(10);  // the deferred update below waits for the next one (a slow machine, qemu)
  Result<Runtime> rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk());
  std::vector<Key> keys;
  for (int i = 0; i < 3; ++i) keys.push_back(*rt->createKey(reinterpret_cast<const void*>(&fortyTwo)));
  for (SiteForm form : test::siteForms()) {
    jit::Assembler a(*rt);
    test::emitEnter(a);
    ASSERT_TRUE(jit::emitCall(a, keys[static_cast<int>(form)], form).isOk());
    test::emitLeave(a);
    test::emitRet(a);
    ASSERT_TRUE(jit::install(a).isOk());
  }
  RuntimeStats before = rt->stats();
  Result<const void*> old = rt->update(keys[0], reinterpret_cast<const void*>(&fortyTwo));
  ASSERT_TRUE(old.isOk());
  EXPECT_EQ(*old, reinterpret_cast<const void*>(&fortyTwo));
  std::vector<KeyUpdate> same;
  for (Key k : keys) same.push_back({k, reinterpret_cast<const void*>(&fortyTwo)});
  ASSERT_TRUE(rt->updateBatch(same).isOk());
  RuntimeStats after = rt->stats();
  EXPECT_EQ(after.syncs, before.syncs) << "an update to the current target must not sync";
  EXPECT_EQ(after.siteWrites, before.siteWrites) << "an update to the current target must not write";
  // A batch where one key changes is a real update of that key (and writes its site).
  same[1].target = rt->returnZeroTarget();
  ASSERT_TRUE(rt->updateBatch(same).isOk());
  EXPECT_GT(rt->stats().syncs, after.syncs);
  // An immediate no-op update still publishes a deferred one before it.
  UpdateOptions deferred;
  deferred.publish = Publish::kDeferred;
  ASSERT_TRUE(rt->update(keys[0], rt->returnZeroTarget(), deferred).isOk());
  uint64_t publishes = rt->stats().publishSyncs;
  ASSERT_TRUE(rt->update(keys[0], rt->returnZeroTarget()).isOk());
  EXPECT_EQ(rt->stats().publishSyncs, publishes + 1) << "the deferred update before it stayed unpublished";
}

}  // namespace
}  // namespace patchcall
