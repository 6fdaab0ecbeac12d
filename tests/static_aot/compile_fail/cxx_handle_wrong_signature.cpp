// Must not compile (C++): the typed handle's update() with a target of the wrong type, or
// with nullptr for a call that returns a value. With -DAOT_SNIPPET_OK the handle is called,
// retargeted to a target of the right type and its void call to nullptr: it must compile.
#include "patchcall/static_call_aot.h"

long cf_right_target(long x) { return x + 1; }
long cf_initial(long x) { return x; }
int cf_wrong_target(int x) { return x; }
void cf_void_initial(long* out) { *out = 1; }

PATCHCALL_DEFINE_STATIC_CALL(cf_call, cf_initial);
PATCHCALL_DEFINE_STATIC_CALL(cf_void_call, cf_void_initial);

int cf_update(void) {
  constexpr auto call = PATCHCALL_STATIC_CALL_HANDLE(cf_call);
#ifdef AOT_SNIPPET_OK
  long x = call(1);
  return static_cast<int>(x) + call.update(&cf_right_target) + PATCHCALL_STATIC_CALL_HANDLE(cf_void_call).update(nullptr);
#elif defined(AOT_SNIPPET_NULL)
  return call.update(nullptr);
#else
  return call.update(&cf_wrong_target);
#endif
}
