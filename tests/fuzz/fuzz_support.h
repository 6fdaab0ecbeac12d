// api_fuzz support: the input reader, the failure reporter, and a helper thread the fuzzer
// drives (register / go offline / come online / stay stuck) to exercise the quiescence domain.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "patchcall/runtime.h"

namespace patchcall::fuzz {

// Consumes the fuzzer's bytes; past the end every read returns 0.
class Input {
 public:
  Input(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  bool empty() const { return n_ == 0; }
  uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint32_t below(uint32_t bound) { return bound == 0 ? 0 : u8() % bound; }
  bool flag() { return (u8() & 1) != 0; }
  uint32_t u16() { return u8() | (uint32_t{u8()} << 8); }

 private:
  const uint8_t* p_;
  size_t n_;
};

// The operations run so far, printed when an invariant breaks (the input reproduces it).
std::string& trace();
[[noreturn]] void fail(int line, const std::string& what);

#define FUZZ_CHECK(cond, msg)                                                   \
  do {                                                                          \
    if (!(cond)) ::patchcall::fuzz::fail(__LINE__, std::string(#cond) + ": " + (msg)); \
  } while (0)

std::string hex(const void* p);
std::string str(const Status& s);

// A thread that registers with the runtime and then waits for commands. While it is
// registered and online it never passes a safepoint, so it holds up every grace period
// (the fuzzer's way of making synchronize/barrier/toggle waits time out).
class HelperThread {
 public:
  enum class Cmd { kRegister, kUnregister, kOffline, kOnline, kSafepoint };
  explicit HelperThread(Runtime& rt);
  ~HelperThread();  // unregisters, then joins
  // Runs `cmd` on the helper and returns its status; waits at most a few seconds.
  Status run(Cmd cmd);

 private:
  void loop();
  Runtime& rt_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Cmd> pending_;
  std::optional<Status> result_;
  bool quit_ = false;
  std::thread thread_;
};

}  // namespace patchcall::fuzz
