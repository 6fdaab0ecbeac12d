// patchcall — what the C API's translation units share: the handle types and the error
// reporting. Messages go into a fixed per-thread buffer (patchcall_last_error_message), so
// reporting an error never allocates; guarded() keeps every exception out of C.
#pragma once

#include <cstddef>
#include <exception>
#include <new>
#include <thread>

#include "patchcall/patchcall.h"
#include "patchcall/quiescence.h"
#include "patchcall/runtime.h"
#include "patchcall/status.h"

struct patchcall_runtime {
  patchcall::Runtime rt;
};

struct patchcall_thread {
  patchcall::ThreadScope scope;
  std::thread::id owner;
};

namespace patchcall::capi {

int succeed();
int fail(int code, const char* message);
int fail(const Status& s);
int report(const Status& s);
int outOfMemory(const char* function);
int nullArgument(const char* function, const char* what);
int unexpectedException(const char* function, const char* what);
// A count no valid call can have (before anything is read or allocated for it).
int tooMany(int code, const char* function, const char* what, size_t count, size_t limit);

// Runs an entry point's body; an allocation failure anywhere below becomes an error code.
template <typename Body>
int guarded(const char* function, Body&& body) {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return outOfMemory(function);
  } catch (const std::exception& e) {  // e.g. std::length_error: nothing unwinds into C
    return unexpectedException(function, e.what());
  } catch (...) {
    return unexpectedException(function, "unexpected exception");
  }
}

}  // namespace patchcall::capi
