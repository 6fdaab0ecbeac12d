// patchcall — the C API for stacks (patchcall.h, "stacks") over Runtime::registerStack and
// patchcall::switchStack.
#include "c_api_support.h"

namespace {

using namespace patchcall::capi;
using patchcall::StackHandle;

StackHandle fromC(patchcall_stack s) { return StackHandle{s.table, s.index, s.generation}; }
patchcall_stack toC(StackHandle h) { return patchcall_stack{h.table, h.index, h.generation}; }

}  // namespace

extern "C" {

patchcall_stack patchcall_stack_home(void) { return toC(StackHandle::home()); }

int patchcall_stack_register(patchcall_runtime* rt, void* lo, size_t size, const char* name, patchcall_stack* out) {
  if (rt == nullptr) return nullArgument("patchcall_stack_register", "rt");
  if (out == nullptr) return nullArgument("patchcall_stack_register", "out");
  *out = patchcall_stack{nullptr, 0, 0};
  return guarded("patchcall_stack_register", [&] {
    patchcall::Result<StackHandle> h = rt->rt.registerStack(lo, size, name != nullptr ? name : "");
    if (h) *out = toC(*h);
    return report(h.status());
  });
}

int patchcall_stack_unregister(patchcall_runtime* rt, patchcall_stack stack) {
  if (rt == nullptr) return nullArgument("patchcall_stack_unregister", "rt");
  return guarded("patchcall_stack_unregister", [&] { return report(rt->rt.unregisterStack(fromC(stack))); });
}

int patchcall_switch_stack(patchcall_stack to) {
  // The fast path returns an empty Status: nothing allocates unless the switch fails.
  return guarded("patchcall_switch_stack", [&] { return report(patchcall::switchStack(fromC(to))); });
}

}  // extern "C"
