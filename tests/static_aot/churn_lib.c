/* A second library for the stress program's churn phase (stress_main.c --churn-lib): a thread
 * dlopen()s and dlclose()s it over and over while the main thread flips the executable's keys
 * and retargets its calls. It has branches on all 50 keys and calls of all 50 static calls of
 * the executable (so every load must find its branches in the keys' current direction, and
 * every unload must drop them while updates go on) and one key of its own, which the churning
 * thread flips itself (two threads in the key functions at once). */
#include "aot_stress.h"

AOT_EXE_TRUE_KEYS(AOT_DECLARE_TRUE)
AOT_EXE_FALSE_KEYS(AOT_DECLARE_FALSE)
AOT_EXE_INT_CALLS(AOT_DECLARE_INT_CALL)
AOT_EXE_VOID_CALLS(AOT_DECLARE_VOID_CALL)

AOT_EXE_TRUE_KEYS(AOT_KEY_OBSERVER)
AOT_EXE_FALSE_KEYS(AOT_KEY_OBSERVER)
AOT_EXE_INT_CALLS(AOT_INT_CALL_OBSERVERS)
AOT_EXE_VOID_CALLS(AOT_VOID_CALL_OBSERVERS)

PATCHCALL_DEFINE_STATIC_KEY_FALSE(sk_churn_own);
AOT_KEY_OBSERVER(sk_churn_own)

static int (*const aot_churn_key_observers[AOT_KEYS])(void) = {
    AOT_EXE_TRUE_KEYS(AOT_KEY_OBSERVER_ENTRY) AOT_EXE_FALSE_KEYS(AOT_KEY_OBSERVER_ENTRY)};
static long (*const aot_churn_tail_observers[AOT_CALLS])(long) = {
    AOT_EXE_INT_CALLS(AOT_TAIL_ENTRY) AOT_EXE_VOID_CALLS(AOT_TAIL_ENTRY)};
static long (*const aot_churn_call_observers[AOT_CALLS])(long) = {
    AOT_EXE_INT_CALLS(AOT_CALL_ENTRY) AOT_EXE_VOID_CALLS(AOT_CALL_ENTRY)};

PATCHCALL_EXTERN_C_BEGIN_
int aot_churn_own_observe(void) { return aot_obs_sk_churn_own(); }
int aot_churn_own_set(int on) {
  return on ? patchcall_static_key_enable(&sk_churn_own) : patchcall_static_key_disable(&sk_churn_own);
}
struct patchcall_static_key* aot_churn_own_key(void) { return &sk_churn_own.key; }

const struct aot_module_desc* aot_churn_lib_describe(void) {
  static struct aot_module_desc d;
  d.name = "churn library";
#ifdef __OPTIMIZE__
  d.optimized = 1;
#endif
  d.key_observers = aot_churn_key_observers;
  d.call_observers_tail = aot_churn_tail_observers;
  d.call_observers_call = aot_churn_call_observers;
  d.jumps_begin = (const struct patchcall_jump_entry*)(const void*)__start___patchcall_jump_table;
  d.jumps_end = (const struct patchcall_jump_entry*)(const void*)__stop___patchcall_jump_table;
  d.sites_begin = (const struct patchcall_call_site_entry*)(const void*)__start___patchcall_call_sites;
  d.sites_end = (const struct patchcall_call_site_entry*)(const void*)__stop___patchcall_call_sites;
  return &d;
}
PATCHCALL_EXTERN_C_END_
