// patchcall — the C API for stacks (patchcall.h, "stacks") over Runtime::registerStack and
// patchcall::switchStack.
#include <new>

#include "patchcall/patchcall.h"
#include "patchcall/runtime.h"

namespace patchcall::detail {
int capiReport(const Status& s);  // c_api.cpp: keeps the message for patchcall_last_error_message
Runtime* capiRuntime(patchcall_runtime* rt);
}  // namespace patchcall::detail

namespace {

using patchcall::Error;
using patchcall::Status;
using patchcall::StackHandle;
using patchcall::detail::capiReport;

StackHandle fromC(patchcall_stack s) { return StackHandle{s.table, s.index, s.generation}; }
patchcall_stack toC(StackHandle h) { return patchcall_stack{h.table, h.index, h.generation}; }

int nullArgument(const char* function, const char* what) {
  try {
    return capiReport(Status(Error::kInvalidArgument, std::string(function) + ": " + what + " is NULL"));
  } catch (const std::bad_alloc&) {
    return PATCHCALL_E_INVALID_ARGUMENT;
  }
}

}  // namespace

extern "C" {

patchcall_stack patchcall_stack_home(void) { return toC(StackHandle::home()); }

int patchcall_stack_register(patchcall_runtime* rt, void* lo, size_t size, const char* name, patchcall_stack* out) {
  if (rt == nullptr) return nullArgument("patchcall_stack_register", "rt");
  if (out == nullptr) return nullArgument("patchcall_stack_register", "out");
  *out = patchcall_stack{nullptr, 0, 0};
  try {
    patchcall::Result<StackHandle> h = patchcall::detail::capiRuntime(rt)->registerStack(lo, size, name != nullptr ? name : "");
    if (h) *out = toC(*h);
    return capiReport(h.status());
  } catch (const std::bad_alloc&) {
    return PATCHCALL_E_OUT_OF_MEMORY;
  }
}

int patchcall_stack_unregister(patchcall_runtime* rt, patchcall_stack stack) {
  if (rt == nullptr) return nullArgument("patchcall_stack_unregister", "rt");
  try {
    return capiReport(patchcall::detail::capiRuntime(rt)->unregisterStack(fromC(stack)));
  } catch (const std::bad_alloc&) {
    return PATCHCALL_E_OUT_OF_MEMORY;
  }
}

int patchcall_switch_stack(patchcall_stack to) {
  // The fast path returns an empty Status: nothing allocates unless the switch fails.
  try {
    return capiReport(patchcall::switchStack(fromC(to)));
  } catch (const std::bad_alloc&) {
    return PATCHCALL_E_OUT_OF_MEMORY;
  }
}

}  // extern "C"
