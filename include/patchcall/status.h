// patchcall — errors as values. No exception crosses the public API.
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <variant>

namespace patchcall {

// Every way a public call can fail. Values are stable: the C API returns them as ints.
enum class Error : int {
  kOk = 0,
  kNullTarget,           // target address is null
  kMisalignedTarget,     // target is not a plausible code address (see Options::targetAlignment)
  kOutOfRange,           // target beyond rel32 reach and veneers are disabled
  kArenaExhausted,       // no room left in the code arena
  kReentrantUpdate,      // update called while this thread holds the text mutex
  kUnknownSite,          // address is not a registered call site
  kUnknownKey,           // key handle is invalid or was destroyed
  kSyncUnsupported,      // kernel refused membarrier SYNC_CORE and no fallback was allowed
  kMapFailed,            // memfd / mmap of the arena failed
  kTimeout,              // a bounded wait expired (the message names the thread)
  kNotRegistered,        // calling thread is not registered with the quiescence domain
  kInvalidArgument,      // any other malformed argument
  kStillTargeted,        // a blob still targeted by a key or trampoline cannot be retired
  kDoubleRetire,         // blob was already retired
  kOutOfMemory,          // metadata allocation failed
  kTooManyThreads,       // Options::maxThreads reached
  kTooManySites,         // Options::maxSites reached
  kEmitFailed,           // asmjit reported an error while emitting or relocating
  kWouldDeadlock,        // e.g. synchronize() from inside a retire callback or while online-blocked
  kRetiredTarget,        // target lies in retired or freed arena memory
  kUnsupportedSite,      // foreign site: not an E8 call (aarch64: BL) in executable, writable, still mapped memory
  kForkedChild,          // called in a process made without fork()'s atfork handlers (vfork, clone)
  kSystemError,          // a system call failed where it should not (the message names it and errno)
  kTableFull,            // a fixed-size table is full (AOT static keys and calls)
};

const char* errorName(Error e) noexcept;
inline std::ostream& operator<<(std::ostream& os, Error e) { return os << errorName(e); }

// A status: an error code plus a message written for the runtime engineer reading a log.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error code, std::string message) : code_(code), message_(std::move(message)) {}
  static Status ok() { return {}; }

  bool isOk() const noexcept { return code_ == Error::kOk; }
  explicit operator bool() const noexcept { return isOk(); }
  Error code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  std::string toString() const;

 private:
  Error code_ = Error::kOk;
  std::string message_;
};

// Result<T>: a value or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}                     // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}              // NOLINT: implicit by design
  Result(Error code, std::string msg) : v_(Status(code, std::move(msg))) {}

  bool isOk() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return isOk(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  Status status() const { return isOk() ? Status() : std::get<1>(v_); }
  Error code() const { return isOk() ? Error::kOk : std::get<1>(v_).code(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace patchcall

// Propagates a non-ok Status out of the enclosing function.
#define PATCHCALL_TRY(expr)                         \
  do {                                              \
    ::patchcall::Status pc_status_ = (expr);        \
    if (!pc_status_.isOk()) return pc_status_;      \
  } while (0)
