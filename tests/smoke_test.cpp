#include <gtest/gtest.h>
#include "patchcall/jit.h"
#include "patchcall/static_call.h"
using namespace patchcall;
static int one() { return 1; }
static int two() { return 2; }
TEST(Smoke, CreateUpdateCall) {
  auto rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  auto sc = StaticCall<int()>::create(*rt, &one);
  ASSERT_TRUE(sc.isOk()) << sc.status().toString();
  EXPECT_EQ((*sc)(), 1);
  jit::Assembler a(*rt);
  ASSERT_TRUE(jit::emitCall(a, sc->key()).isOk());
  a.ret();
  auto blob = jit::install(a);
  ASSERT_TRUE(blob.isOk()) << blob.status().toString();
  auto fn = reinterpret_cast<int (*)()>(blob->code);
  // The code is `call key; ret` -> returns target's value.
  EXPECT_EQ(fn(), 1);
  ASSERT_TRUE(sc->update(&two).isOk());
  EXPECT_EQ(fn(), 2);
  EXPECT_EQ((*sc)(), 2);
  auto info = rt->arenaInfo();
  EXPECT_TRUE(info.nearText) << info.distanceFromText;
}
