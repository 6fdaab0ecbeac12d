/* Must not compile (C): a static call target of the wrong type (the macro's array size turns
 * negative). With -DAOT_SNIPPET_OK the right type and NULL are used and it must compile. */
#include <stddef.h>

#include "patchcall/static_call_aot.h"

long cf_right_target(long x) { return x + 1; }
long cf_initial(long x) { return x; }
int cf_wrong_target(int x) { return x; }
void cf_void_initial(long* out) { *out = 1; }

PATCHCALL_DEFINE_STATIC_CALL(cf_call, cf_initial);
PATCHCALL_DEFINE_STATIC_CALL(cf_void_call, cf_void_initial);

int cf_update(void) {
#ifdef AOT_SNIPPET_OK
  return patchcall_static_call_update(cf_call, cf_right_target) + patchcall_static_call_update(cf_void_call, NULL);
#else
  return patchcall_static_call_update(cf_call, cf_wrong_target);
#endif
}
