// Must not compile (C++): nullptr (the no-op) as the target of a call that returns a value.
// With -DAOT_SNIPPET_OK it is given to a void call instead, which must compile (the control).
#include "patchcall/static_call_aot.h"

long cf_initial(long x) { return x; }
void cf_void_initial(long* out) { *out = 1; }

PATCHCALL_DEFINE_STATIC_CALL(cf_call, cf_initial);
PATCHCALL_DEFINE_STATIC_CALL(cf_void_call, cf_void_initial);

int cf_update(void) {
#ifdef AOT_SNIPPET_OK
  return patchcall_static_call_update(cf_void_call, nullptr);
#else
  return patchcall_static_call_update(cf_call, nullptr);
#endif
}
