// Must not compile (C++): a static call target of the wrong type. With -DAOT_SNIPPET_OK the
// same file retargets to a target of the right type and must compile (the control).
#include "patchcall/static_call_aot.h"

long cf_right_target(long x) { return x + 1; }
long cf_initial(long x) { return x; }
int cf_wrong_target(int x) { return x; }

PATCHCALL_DEFINE_STATIC_CALL(cf_call, cf_initial);

int cf_update(void) {
#ifdef AOT_SNIPPET_OK
  return patchcall_static_call_update(cf_call, cf_right_target);
#else
  return patchcall_static_call_update(cf_call, cf_wrong_target);
#endif
}
