// patchcall — the C API's numbers are the C++ API's: error codes, site forms, sync methods.
// A compile-time check only; a mismatch fails the build, not a caller.
#include <cstddef>

#include "patchcall/options.h"
#include "patchcall/quiescence.h"
#include "patchcall/patchcall.h"
#include "patchcall/status.h"

namespace {
using patchcall::Error;
static_assert(PATCHCALL_OK == static_cast<int>(Error::kOk));
static_assert(PATCHCALL_E_NULL_TARGET == static_cast<int>(Error::kNullTarget));
static_assert(PATCHCALL_E_MISALIGNED_TARGET == static_cast<int>(Error::kMisalignedTarget));
static_assert(PATCHCALL_E_OUT_OF_RANGE == static_cast<int>(Error::kOutOfRange));
static_assert(PATCHCALL_E_ARENA_EXHAUSTED == static_cast<int>(Error::kArenaExhausted));
static_assert(PATCHCALL_E_REENTRANT_UPDATE == static_cast<int>(Error::kReentrantUpdate));
static_assert(PATCHCALL_E_UNKNOWN_SITE == static_cast<int>(Error::kUnknownSite));
static_assert(PATCHCALL_E_UNKNOWN_KEY == static_cast<int>(Error::kUnknownKey));
static_assert(PATCHCALL_E_SYNC_UNSUPPORTED == static_cast<int>(Error::kSyncUnsupported));
static_assert(PATCHCALL_E_MAP_FAILED == static_cast<int>(Error::kMapFailed));
static_assert(PATCHCALL_E_TIMEOUT == static_cast<int>(Error::kTimeout));
static_assert(PATCHCALL_E_NOT_REGISTERED == static_cast<int>(Error::kNotRegistered));
static_assert(PATCHCALL_E_INVALID_ARGUMENT == static_cast<int>(Error::kInvalidArgument));
static_assert(PATCHCALL_E_STILL_TARGETED == static_cast<int>(Error::kStillTargeted));
static_assert(PATCHCALL_E_DOUBLE_RETIRE == static_cast<int>(Error::kDoubleRetire));
static_assert(PATCHCALL_E_OUT_OF_MEMORY == static_cast<int>(Error::kOutOfMemory));
static_assert(PATCHCALL_E_TOO_MANY_THREADS == static_cast<int>(Error::kTooManyThreads));
static_assert(PATCHCALL_E_TOO_MANY_SITES == static_cast<int>(Error::kTooManySites));
static_assert(PATCHCALL_E_EMIT_FAILED == static_cast<int>(Error::kEmitFailed));
static_assert(PATCHCALL_E_WOULD_DEADLOCK == static_cast<int>(Error::kWouldDeadlock));
static_assert(PATCHCALL_E_RETIRED_TARGET == static_cast<int>(Error::kRetiredTarget));
static_assert(PATCHCALL_E_UNSUPPORTED_SITE == static_cast<int>(Error::kUnsupportedSite));
static_assert(PATCHCALL_E_FORKED_CHILD == static_cast<int>(Error::kForkedChild));
static_assert(PATCHCALL_E_SYSTEM_ERROR == static_cast<int>(Error::kSystemError));
static_assert(PATCHCALL_E_TABLE_FULL == static_cast<int>(Error::kTableFull));
static_assert(PATCHCALL_ERROR_COUNT == static_cast<int>(Error::kTableFull) + 1);
static_assert(PATCHCALL_SITE_DIRECT == static_cast<int>(patchcall::SiteForm::kDirect));
static_assert(PATCHCALL_SITE_TOGGLE == static_cast<int>(patchcall::SiteForm::kToggle));
static_assert(PATCHCALL_SITE_BREAKPOINT == static_cast<int>(patchcall::SiteForm::kBreakpoint));
static_assert(PATCHCALL_SITE_AUTO == static_cast<int>(patchcall::SiteForm::kAuto));
static_assert(PATCHCALL_SYNC_AUTO == static_cast<int>(patchcall::SyncMethod::kAuto));
static_assert(PATCHCALL_SYNC_MEMBARRIER == static_cast<int>(patchcall::SyncMethod::kMembarrier));
static_assert(PATCHCALL_SYNC_MPROTECT_IPI == static_cast<int>(patchcall::SyncMethod::kMprotectIpi));
static_assert(PATCHCALL_SYNC_EMULATOR_REMAP == static_cast<int>(patchcall::SyncMethod::kEmulatorRemap));
// patchcall_stack is patchcall::StackHandle, field for field (c_api_stacks.cpp copies them).
static_assert(sizeof(patchcall_stack) == sizeof(patchcall::StackHandle));
static_assert(offsetof(patchcall_stack, index) == offsetof(patchcall::StackHandle, index));
static_assert(offsetof(patchcall_stack, generation) == offsetof(patchcall::StackHandle, generation));
}  // namespace
