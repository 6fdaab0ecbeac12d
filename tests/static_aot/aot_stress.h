/* The static-key / static-call stress program (tests/static_aot/stress_main.c) and its
 * dlopen()ed library (stress_lib.c): what both modules share. Written in C11 that is also
 * valid C++ (the clang++ variants compile both files with -x c++).
 *
 * Objects, by global index (g):
 *   keys  0..24 executable TRUE keys    25..49 executable FALSE keys
 *        50..74 library TRUE keys       75..99 library FALSE keys
 *   calls 0..24 executable `long(long)` 25..49 executable `void(long*)`
 *        50..74 library `long(long)`    75..99 library `void(long*)`
 * Targets: 4 of each type in the executable (target codes 1..4), 4 in the library (5..8).
 * An int target with code c returns x * AOT_VALUE_SCALE + c, a void target stores c in *out;
 * code 0 is the no-op (void calls: NULL target, *out stays 0) or return0 (int calls). */
#ifndef PATCHCALL_AOT_STRESS_H
#define PATCHCALL_AOT_STRESS_H

#include <stddef.h>
#include <stdint.h>

#include "patchcall/static_call_aot.h"
#include "patchcall/static_key.h"

#ifdef __cplusplus
#define AOT_NULL nullptr
#else
#define AOT_NULL NULL
#endif

#define AOT_KEYS 100
#define AOT_CALLS 100
#define AOT_EXE_KEYS 50
#define AOT_EXE_CALLS 50
#define AOT_TARGETS_PER_MODULE 4
#define AOT_TARGET_CODES 9 /* 0 (no-op / return0) and 1..8 */
#define AOT_VALUE_SCALE 32

typedef long (*aot_int_fn)(long);
typedef void (*aot_void_fn)(long*);

PATCHCALL_EXTERN_C_BEGIN_

/* Type tags for DECLARE/DEFINE: declared, never defined, never called. */
long aot_int_call_type(long x);
void aot_void_call_type(long* out);

struct aot_key_desc {
  const char* name;
  struct patchcall_static_key* key;
  int default_true;
  int (*set)(int on); /* patchcall_static_key_enable / _disable on this key */
};
struct aot_call_desc {
  const char* name;
  struct patchcall_static_call* call;
  const void* trampoline; /* PATCHCALL_STATIC_CALL_TRAMP(name) */
  int is_void;
  /* patchcall_static_call_update(name, target) (special 0) or, for special 1, the no-op:
   * patchcall_static_call_update(name, NULL) for void calls, _update_return0 for int calls. */
  int (*set)(const void* target, int special);
};

/* What a module (the executable or the library) provides. Observers are indexed by the global
 * index and are NULL for the objects the module does not use. A key observer returns bit 0:
 * PATCHCALL_STATIC_BRANCH_UNLIKELY was true, bit 1: PATCHCALL_STATIC_BRANCH_LIKELY was true.
 * A call observer calls the static call with x (void calls: with &out, out = 0 first) and
 * returns what came back; `tail` observers make the call a tail call, `call` observers not. */
struct aot_module_desc {
  const char* name;
  int optimized; /* compiled with optimization (__OPTIMIZE__): inline call sites are expected */
  int first_key, nkeys; /* the keys it defines: global [first_key, first_key + nkeys) */
  int first_call, ncalls;
  const struct aot_key_desc* keys;
  const struct aot_call_desc* calls;
  int (*const* key_observers)(void);
  long (*const* call_observers_tail)(long);
  long (*const* call_observers_call)(long);
  int int_initial_code, void_initial_code; /* the target code every int / void call starts with */
  const void* int_targets[AOT_TARGETS_PER_MODULE];
  const void* void_targets[AOT_TARGETS_PER_MODULE];
  const struct patchcall_jump_entry* jumps_begin;
  const struct patchcall_jump_entry* jumps_end;
  const struct patchcall_call_site_entry* sites_begin;
  const struct patchcall_call_site_entry* sites_end;
};

/* Exported by the library (dlsym). */
const struct aot_module_desc* aot_stress_lib_describe(void);
typedef const struct aot_module_desc* (*aot_describe_fn)(void);

PATCHCALL_EXTERN_C_END_

/* ---- generator macros: 25 names per list ------------------------------------------------ */
#define AOT_R5_(M, p, d) M(p##d##0) M(p##d##1) M(p##d##2) M(p##d##3) M(p##d##4)
#define AOT_R25(M, p) AOT_R5_(M, p, 0) AOT_R5_(M, p, 1) AOT_R5_(M, p, 2) AOT_R5_(M, p, 3) AOT_R5_(M, p, 4)

#define AOT_EXE_TRUE_KEYS(M) AOT_R25(M, sk_et)
#define AOT_EXE_FALSE_KEYS(M) AOT_R25(M, sk_ef)
#define AOT_LIB_TRUE_KEYS(M) AOT_R25(M, sk_lt)
#define AOT_LIB_FALSE_KEYS(M) AOT_R25(M, sk_lf)
#define AOT_EXE_INT_CALLS(M) AOT_R25(M, sc_ei)
#define AOT_EXE_VOID_CALLS(M) AOT_R25(M, sc_ev)
#define AOT_LIB_INT_CALLS(M) AOT_R25(M, sc_li)
#define AOT_LIB_VOID_CALLS(M) AOT_R25(M, sc_lv)

/* Per-key code: setter, observer. */
#define AOT_KEY_SETTER(name) \
  static int aot_set_##name(int on) { return on ? patchcall_static_key_enable(&name) : patchcall_static_key_disable(&name); }
#define AOT_KEY_OBSERVER(name)                              \
  static int aot_obs_##name(void) {                         \
    int r = 0;                                              \
    if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&name)) r |= 1;    \
    if (PATCHCALL_STATIC_BRANCH_LIKELY(&name)) r |= 2;      \
    return r;                                               \
  }
#define AOT_KEY_OBSERVER_ENTRY(name) aot_obs_##name,
#define AOT_KEY_DESC_TRUE(name) {#name, &name.key, 1, aot_set_##name},
#define AOT_KEY_DESC_FALSE(name) {#name, &name.key, 0, aot_set_##name},
#define AOT_DECLARE_TRUE(name) PATCHCALL_DECLARE_STATIC_KEY_TRUE(name);
#define AOT_DECLARE_FALSE(name) PATCHCALL_DECLARE_STATIC_KEY_FALSE(name);

/* Per-call code. The `call` observers put an empty asm after the call so it is not a tail call. */
#define AOT_INT_CALL_SETTER(name)                                                                \
  static int aot_set_##name(const void* target, int special) {                                   \
    if (special) return patchcall_static_call_update_return0(name);                              \
    return patchcall_static_call_update(name, (aot_int_fn)(uintptr_t)target);                    \
  }
#define AOT_INT_CALL_OBSERVERS(name)                                                             \
  static long aot_tail_##name(long x) { return PATCHCALL_STATIC_CALL(name)(x); }                 \
  static long aot_call_##name(long x) {                                                          \
    long r = PATCHCALL_STATIC_CALL(name)(x);                                                     \
    __asm__ volatile("" : : : "memory");                                                         \
    return r;                                                                                    \
  }
#define AOT_VOID_CALL_SETTER(name)                                                               \
  static int aot_set_##name(const void* target, int special) {                                   \
    if (special) return patchcall_static_call_update(name, AOT_NULL);                            \
    return patchcall_static_call_update(name, (aot_void_fn)(uintptr_t)target);                   \
  }
#define AOT_VOID_CALL_OBSERVERS(name)                                                            \
  __attribute__((noinline)) static void aot_vtail_##name(long* out) { PATCHCALL_STATIC_CALL(name)(out); } \
  static long aot_tail_##name(long x) {                                                          \
    long out = 0;                                                                                \
    (void)x;                                                                                     \
    aot_vtail_##name(&out);                                                                      \
    __asm__ volatile("" : : "r"(&out) : "memory");                                               \
    return out;                                                                                  \
  }                                                                                              \
  static long aot_call_##name(long x) {                                                          \
    long out = 0;                                                                                \
    (void)x;                                                                                     \
    PATCHCALL_STATIC_CALL(name)(&out);                                                           \
    __asm__ volatile("" : : "r"(&out) : "memory");                                               \
    return out;                                                                                  \
  }
#define AOT_TAIL_ENTRY(name) aot_tail_##name,
#define AOT_CALL_ENTRY(name) aot_call_##name,
#define AOT_CALL_DESC_INT(name) \
  {#name, &PATCHCALL_STATIC_CALL_OBJECT_(name), (const void*)(uintptr_t)&PATCHCALL_STATIC_CALL_TRAMP(name), 0, aot_set_##name},
#define AOT_CALL_DESC_VOID(name) \
  {#name, &PATCHCALL_STATIC_CALL_OBJECT_(name), (const void*)(uintptr_t)&PATCHCALL_STATIC_CALL_TRAMP(name), 1, aot_set_##name},
#define AOT_DECLARE_INT_CALL(name) PATCHCALL_DECLARE_STATIC_CALL(name, aot_int_call_type);
#define AOT_DECLARE_VOID_CALL(name) PATCHCALL_DECLARE_STATIC_CALL(name, aot_void_call_type);

/* Four targets of each type per module; `m` is e (executable, codes 1..4) or l (library, 5..8). */
#define AOT_TARGETS(m, base)                                                                       \
  PATCHCALL_EXTERN_C_BEGIN_                                                                        \
  __attribute__((noinline)) long aot_ti_##m##0(long x) { return x * AOT_VALUE_SCALE + (base) + 0; } \
  __attribute__((noinline)) long aot_ti_##m##1(long x) { return x * AOT_VALUE_SCALE + (base) + 1; } \
  __attribute__((noinline)) long aot_ti_##m##2(long x) { return x * AOT_VALUE_SCALE + (base) + 2; } \
  __attribute__((noinline)) long aot_ti_##m##3(long x) { return x * AOT_VALUE_SCALE + (base) + 3; } \
  __attribute__((noinline)) void aot_tv_##m##0(long* out) { *out = (base) + 0; }                    \
  __attribute__((noinline)) void aot_tv_##m##1(long* out) { *out = (base) + 1; }                    \
  __attribute__((noinline)) void aot_tv_##m##2(long* out) { *out = (base) + 2; }                    \
  __attribute__((noinline)) void aot_tv_##m##3(long* out) { *out = (base) + 3; }                    \
  PATCHCALL_EXTERN_C_END_ PATCHCALL_TAKE_SEMICOLON_

#endif /* PATCHCALL_AOT_STRESS_H */
