// One code reservation handed to two threads at once (an embedder's bug): exactly one commit
// registers it, and an abandon racing a commit never frees the code the commit registers.
// Both used to be checked outside the text mutex and never again inside it.
#include <gtest/gtest.h>

#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "emulation.h"
#include "error_checks.h"
#include "isa.h"

namespace patchcall {
namespace {

using checks::callInt;
using checks::quietManualOptions;

// Runs `first` and `second` on two threads released together, `rounds` times; `prepare` runs
// before each round with both threads waiting, `check` after it.
template <typename Prepare, typename First, typename Second, typename Check>
void raceRounds(int rounds, Prepare prepare, First first, Second second, Check check) {
  std::barrier start(3), end(3);
  std::atomic<bool> stop{false};
  auto loop = [&](auto body) {
    return std::thread([&, body] {
      for (;;) {
        start.arrive_and_wait();
        if (stop.load()) return;
        body();
        end.arrive_and_wait();
      }
    });
  };
  std::thread a = loop(first), b = loop(second);
  for (int i = 0; i < rounds && !::testing::Test::HasFatalFailure(); ++i) {
    prepare();
    start.arrive_and_wait();
    end.arrive_and_wait();
    check(i);
  }
  stop = true;
  start.arrive_and_wait();
  a.join();
  b.join();
}

// A fresh reservation holding `code`.
void reserveWith(Runtime& rt, const std::vector<uint8_t>& code, CodeReservation& r) {
  Result<CodeReservation> reserved = rt.reserveCode(code.size());
  ASSERT_TRUE(reserved.isOk()) << reserved.status().toString();
  r = *reserved;
  std::memcpy(r.rw, code.data(), code.size());
}

TEST(ReservationRace, TwoThreadsCommittingOneReservationRegisterItOnce) {
  Result<Runtime> rt = Runtime::create(quietManualOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<uint8_t> code = test::returnerBytes(41);
  CodeReservation r{};
  Result<Blob> got[2] = {Status(Error::kInvalidArgument, "not run"), Status(Error::kInvalidArgument, "not run")};
  int doubles = 0;
  raceRounds(
      test::scaled(2000, 100),
      [&] { reserveWith(*rt, code, r); },
      [&] { got[0] = rt->commitCode(r, {}); }, [&] { got[1] = rt->commitCode(r, {}); },
      [&](int round) {
        int ok = got[0].isOk() + got[1].isOk();
        if (ok == 2) ++doubles;
        EXPECT_LE(ok, 1) << "round " << round << ": one reservation committed twice (two blobs over one range)";
        EXPECT_GE(ok, 1) << "round " << round << ": neither commit succeeded: " << got[0].status().toString() << " / "
                         << got[1].status().toString();
        for (const Result<Blob>& g : got) {
          if (!g.isOk()) {
            EXPECT_EQ(g.code(), Error::kInvalidArgument) << g.status().toString();
          }
        }
      });
  EXPECT_EQ(doubles, 0);
  EXPECT_EQ(rt->stats().blobs, static_cast<uint64_t>(test::scaled(2000, 100))) << "blobs registered, one per reservation";
}

TEST(ReservationRace, AbandonRacingACommitNeverFreesTheCommittedCode) {
  Result<Runtime> rt = Runtime::create(quietManualOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::vector<uint8_t> code = test::returnerBytes(42);
  CodeReservation r{};
  Result<Blob> committed = Status(Error::kInvalidArgument, "not run");
  uint64_t blobs = 0;
  int committedRounds = 0;
  raceRounds(
      test::scaled(2000, 100),
      [&] { reserveWith(*rt, code, r); },
      [&] { committed = rt->commitCode(r, {}); }, [&] { rt->abandonCode(r); },
      [&](int round) {
        if (!committed.isOk()) {
          EXPECT_EQ(committed.code(), Error::kInvalidArgument) << committed.status().toString();
          return;
        }
        ++committedRounds;
        ++blobs;
        auto* rx = static_cast<const uint8_t*>(committed->code);
        ASSERT_EQ(std::memcmp(rx, code.data(), code.size()), 0)
            << "round " << round << ": the committed blob's code was filled by the abandon that raced it (first byte 0x"
            << std::hex << int(rx[0]) << ")";
        ASSERT_EQ(callInt(rx), 42) << "round " << round;
      });
  // A released range would be handed out again: every committed blob still holds its code.
  EXPECT_EQ(rt->stats().blobs, blobs);
  std::printf("%d of %d rounds committed (the rest abandoned first)\n", committedRounds, test::scaled(2000, 100));
}

}  // namespace
}  // namespace patchcall
