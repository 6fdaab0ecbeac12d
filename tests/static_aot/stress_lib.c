/* The library half of the static-key / static-call stress program (see aot_stress.h): built
 * -fPIC as a shared object the program dlopen()s. It defines 50 keys, 50 static calls and 8
 * targets, and observes all 100 keys and 100 calls: its own, and the executable's through
 * PATCHCALL_DECLARE_* (resolved against the executable, which is linked with -rdynamic; with
 * -Wl,-z,now every PLT slot is bound at load, before the module's sections are registered). */
#include "aot_stress.h"

AOT_TARGETS(l, 5);

#define AOT_DEFINE_TRUE(name) PATCHCALL_DEFINE_STATIC_KEY_TRUE(name);
#define AOT_DEFINE_FALSE(name) PATCHCALL_DEFINE_STATIC_KEY_FALSE(name);
#define AOT_DEFINE_INT_CALL(name) PATCHCALL_DEFINE_STATIC_CALL(name, aot_ti_l2);
#define AOT_DEFINE_VOID_CALL(name) PATCHCALL_DEFINE_STATIC_CALL(name, aot_tv_l3);

/* The library's own objects. */
AOT_LIB_TRUE_KEYS(AOT_DEFINE_TRUE)
AOT_LIB_FALSE_KEYS(AOT_DEFINE_FALSE)
AOT_LIB_INT_CALLS(AOT_DEFINE_INT_CALL)
AOT_LIB_VOID_CALLS(AOT_DEFINE_VOID_CALL)

/* The executable's, declared. */
AOT_EXE_TRUE_KEYS(AOT_DECLARE_TRUE)
AOT_EXE_FALSE_KEYS(AOT_DECLARE_FALSE)
AOT_EXE_INT_CALLS(AOT_DECLARE_INT_CALL)
AOT_EXE_VOID_CALLS(AOT_DECLARE_VOID_CALL)

AOT_LIB_TRUE_KEYS(AOT_KEY_SETTER)
AOT_LIB_FALSE_KEYS(AOT_KEY_SETTER)

AOT_EXE_TRUE_KEYS(AOT_KEY_OBSERVER)
AOT_EXE_FALSE_KEYS(AOT_KEY_OBSERVER)
AOT_LIB_TRUE_KEYS(AOT_KEY_OBSERVER)
AOT_LIB_FALSE_KEYS(AOT_KEY_OBSERVER)

AOT_LIB_INT_CALLS(AOT_INT_CALL_SETTER)
AOT_LIB_VOID_CALLS(AOT_VOID_CALL_SETTER)

AOT_EXE_INT_CALLS(AOT_INT_CALL_OBSERVERS)
AOT_EXE_VOID_CALLS(AOT_VOID_CALL_OBSERVERS)
AOT_LIB_INT_CALLS(AOT_INT_CALL_OBSERVERS)
AOT_LIB_VOID_CALLS(AOT_VOID_CALL_OBSERVERS)

static const struct aot_key_desc aot_lib_keys[] = {AOT_LIB_TRUE_KEYS(AOT_KEY_DESC_TRUE) AOT_LIB_FALSE_KEYS(AOT_KEY_DESC_FALSE)};
static const struct aot_call_desc aot_lib_calls[] = {AOT_LIB_INT_CALLS(AOT_CALL_DESC_INT) AOT_LIB_VOID_CALLS(AOT_CALL_DESC_VOID)};

static int (*const aot_lib_key_observers[AOT_KEYS])(void) = {
    AOT_EXE_TRUE_KEYS(AOT_KEY_OBSERVER_ENTRY) AOT_EXE_FALSE_KEYS(AOT_KEY_OBSERVER_ENTRY)
    AOT_LIB_TRUE_KEYS(AOT_KEY_OBSERVER_ENTRY) AOT_LIB_FALSE_KEYS(AOT_KEY_OBSERVER_ENTRY)};
static long (*const aot_lib_tail_observers[AOT_CALLS])(long) = {
    AOT_EXE_INT_CALLS(AOT_TAIL_ENTRY) AOT_EXE_VOID_CALLS(AOT_TAIL_ENTRY)
    AOT_LIB_INT_CALLS(AOT_TAIL_ENTRY) AOT_LIB_VOID_CALLS(AOT_TAIL_ENTRY)};
static long (*const aot_lib_call_observers[AOT_CALLS])(long) = {
    AOT_EXE_INT_CALLS(AOT_CALL_ENTRY) AOT_EXE_VOID_CALLS(AOT_CALL_ENTRY)
    AOT_LIB_INT_CALLS(AOT_CALL_ENTRY) AOT_LIB_VOID_CALLS(AOT_CALL_ENTRY)};

PATCHCALL_EXTERN_C_ const struct aot_module_desc* aot_stress_lib_describe(void) {
  static struct aot_module_desc d;
  d.name = "library";
#ifdef __OPTIMIZE__
  d.optimized = 1;
#endif
  d.first_key = AOT_EXE_KEYS;
  d.nkeys = AOT_KEYS - AOT_EXE_KEYS;
  d.first_call = AOT_EXE_CALLS;
  d.ncalls = AOT_CALLS - AOT_EXE_CALLS;
  d.keys = aot_lib_keys;
  d.calls = aot_lib_calls;
  d.key_observers = aot_lib_key_observers;
  d.call_observers_tail = aot_lib_tail_observers;
  d.call_observers_call = aot_lib_call_observers;
  d.int_initial_code = 5 + 2;
  d.void_initial_code = 5 + 3;
  d.int_targets[0] = (const void*)(uintptr_t)&aot_ti_l0;
  d.int_targets[1] = (const void*)(uintptr_t)&aot_ti_l1;
  d.int_targets[2] = (const void*)(uintptr_t)&aot_ti_l2;
  d.int_targets[3] = (const void*)(uintptr_t)&aot_ti_l3;
  d.void_targets[0] = (const void*)(uintptr_t)&aot_tv_l0;
  d.void_targets[1] = (const void*)(uintptr_t)&aot_tv_l1;
  d.void_targets[2] = (const void*)(uintptr_t)&aot_tv_l2;
  d.void_targets[3] = (const void*)(uintptr_t)&aot_tv_l3;
  d.jumps_begin = (const struct patchcall_jump_entry*)(const void*)__start___patchcall_jump_table;
  d.jumps_end = (const struct patchcall_jump_entry*)(const void*)__stop___patchcall_jump_table;
  d.sites_begin = (const struct patchcall_call_site_entry*)(const void*)__start___patchcall_call_sites;
  d.sites_end = (const struct patchcall_call_site_entry*)(const void*)__stop___patchcall_call_sites;
  return &d;
}
