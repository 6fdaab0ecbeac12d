// patchcall — error names.
#include "patchcall/status.h"

namespace patchcall {

const char* errorName(Error e) noexcept {
  switch (e) {
    case Error::kOk: return "ok";
    case Error::kNullTarget: return "null target";
    case Error::kMisalignedTarget: return "misaligned target";
    case Error::kOutOfRange: return "target out of a call's direct reach";
    case Error::kArenaExhausted: return "code arena exhausted";
    case Error::kReentrantUpdate: return "re-entrant update";
    case Error::kUnknownSite: return "unknown call site";
    case Error::kUnknownKey: return "unknown key";
    case Error::kSyncUnsupported: return "cross-core sync unsupported";
    case Error::kMapFailed: return "mapping failed";
    case Error::kTimeout: return "timeout";
    case Error::kNotRegistered: return "thread not registered";
    case Error::kInvalidArgument: return "invalid argument";
    case Error::kStillTargeted: return "still targeted";
    case Error::kDoubleRetire: return "double retire";
    case Error::kOutOfMemory: return "out of memory";
    case Error::kTooManyThreads: return "too many threads";
    case Error::kTooManySites: return "too many sites";
    case Error::kEmitFailed: return "emission failed";
    case Error::kWouldDeadlock: return "would deadlock";
    case Error::kRetiredTarget: return "retired target";
    case Error::kUnsupportedSite: return "unsupported site";
    case Error::kForkedChild: return "child process without its own copy";
    case Error::kSystemError: return "system call failed";
    case Error::kTableFull: return "table full";
  }
  return "unknown error";
}

std::string Status::toString() const {
  if (isOk()) return "ok";
  return std::string(errorName(code_)) + ": " + message_;
}

}  // namespace patchcall
