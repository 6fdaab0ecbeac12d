// patchcall — the C API for polled grace periods and intrusive retirement (patchcall.h,
// "threads and quiescence") over Runtime::gracePeriodState/startGracePeriod/
// gracePeriodElapsed and Runtime::retire(RetireNode*). Nothing here allocates.
#include <cstddef>

#include "c_api_support.h"

namespace {
using namespace patchcall::capi;
using patchcall::RetireNode;

// The C node is the C++ node, field for field: the library links the C node in place.
static_assert(sizeof(patchcall_retire_node) == sizeof(RetireNode));
static_assert(offsetof(patchcall_retire_node, next) == offsetof(RetireNode, next));
static_assert(offsetof(patchcall_retire_node, fn) == offsetof(RetireNode, fn));
static_assert(offsetof(patchcall_retire_node, grace_period) == offsetof(RetireNode, gracePeriod));
}  // namespace

extern "C" {

patchcall_grace_period_cookie patchcall_grace_period_state(patchcall_runtime* rt) {
  return rt == nullptr ? 0 : rt->rt.gracePeriodState().value;
}

patchcall_grace_period_cookie patchcall_grace_period_start(patchcall_runtime* rt) {
  return rt == nullptr ? 0 : rt->rt.startGracePeriod().value;
}

int patchcall_grace_period_elapsed(patchcall_runtime* rt, patchcall_grace_period_cookie cookie) {
  if (rt == nullptr) return 1;
  return rt->rt.gracePeriodElapsed(patchcall::GracePeriodCookie{cookie}) ? 1 : 0;
}

int patchcall_retire_with_node(patchcall_runtime* rt, patchcall_retire_node* node, void (*fn)(patchcall_retire_node*)) {
  if (rt == nullptr) {
    return nullArgument("patchcall_retire_with_node", "rt");
  }
  // The C function takes the C node type: on x86-64 (and any ABI patchcall targets) a
  // pointer to a layout-identical struct is passed the same way, and the node is the
  // caller's own patchcall_retire_node.
  auto* cxxFn = reinterpret_cast<void (*)(RetireNode*)>(fn);
  return report(rt->rt.retire(reinterpret_cast<RetireNode*>(node), cxxFn));
}

}  // extern "C"
