/* More keys than the table holds (PATCHCALL_STATIC_KEYS_MAX): dlopen a library with 65,601
 * keys (table_full_lib.c). The load succeeds, the library is not registered: its key and its
 * static call report TABLE_FULL (with a message), patchcall_static_module_status says so, its
 * branch keeps its compiled direction and its call its initial target (through the
 * trampoline's indirect path), none of its sites is reported; the executable's keys and calls
 * keep working (results and Zydis decode of every site), before and after dlclose.
 *
 *   static_aot_table_full PATH-TO-LIBRARY */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>

#include "aot_sites.h"
#include "patchcall/static_call_aot.h"
#include "patchcall/static_key.h"

PATCHCALL_EXTERN_C_BEGIN_
__attribute__((noinline)) long tf_exe_one(long x) { return x * 10 + 1; }
__attribute__((noinline)) long tf_exe_two(long x) { return x * 10 + 2; }
PATCHCALL_EXTERN_C_END_

PATCHCALL_DEFINE_STATIC_KEY_FALSE(tf_exe_false);
PATCHCALL_DEFINE_STATIC_KEY_TRUE(tf_exe_true);
PATCHCALL_DEFINE_STATIC_CALL(tf_exe_call, tf_exe_one);

static int tf_exe_false_unlikely(void) { return PATCHCALL_STATIC_BRANCH_UNLIKELY(&tf_exe_false) ? 1 : 0; }
static int tf_exe_false_likely(void) { return PATCHCALL_STATIC_BRANCH_LIKELY(&tf_exe_false) ? 1 : 0; }
static int tf_exe_true_unlikely(void) { return PATCHCALL_STATIC_BRANCH_UNLIKELY(&tf_exe_true) ? 1 : 0; }
static int tf_exe_true_likely(void) { return PATCHCALL_STATIC_BRANCH_LIKELY(&tf_exe_true) ? 1 : 0; }
__attribute__((noinline)) static long tf_exe_call_it(long x) {
  long r = PATCHCALL_STATIC_CALL(tf_exe_call)(x);
  __asm__ volatile("" : : : "memory");
  return r;
}

static int g_false_on, g_true_on = 1;
static const void* g_call_target = (const void*)(uintptr_t)&tf_exe_one;

/* Results and sites of the executable's keys and call, against the expected state. */
static void tf_check_exe(const char* where) {
  int got[4] = {tf_exe_false_unlikely(), tf_exe_false_likely(), tf_exe_true_unlikely(), tf_exe_true_likely()};
  int want[4] = {g_false_on, g_false_on, g_true_on, g_true_on};
  const char* names[4] = {"tf_exe_false UNLIKELY", "tf_exe_false LIKELY", "tf_exe_true UNLIKELY", "tf_exe_true LIKELY"};
  for (int i = 0; i < 4; i++)
    AOT_CHECK(got[i] == want[i], "%s: branch %s is %d, expected %d", where, names[i], got[i], want[i]);
  long r = tf_exe_call_it(5);
  long want_r = g_call_target == (const void*)(uintptr_t)&tf_exe_one ? 51 : 52;
  AOT_CHECK(r == want_r, "%s: tf_exe_call(5) returned %ld, expected %ld", where, r, want_r);

  struct patchcall_static_key* keys[2] = {&tf_exe_false.key, &tf_exe_true.key};
  const char* key_names[2] = {"tf_exe_false", "tf_exe_true"};
  int enabled[2] = {g_false_on, g_true_on};
  struct patchcall_static_call* calls[1] = {&PATCHCALL_STATIC_CALL_OBJECT_(tf_exe_call)};
  const char* call_names[1] = {"tf_exe_call"};
  const void* tramps[1] = {(const void*)(uintptr_t)&PATCHCALL_STATIC_CALL_TRAMP(tf_exe_call)};
  const void* targets[1] = {g_call_target};
  struct aot_site_model m;
  memset(&m, 0, sizeof m);
  m.nkeys = 2;
  m.keys = keys;
  m.key_names = key_names;
  m.key_enabled = enabled;
  m.ncalls = 1;
  m.calls = calls;
  m.call_names = call_names;
  m.call_trampolines = tramps;
  m.call_targets = targets;
  m.nmodules = 1;
  m.modules[0].name = "executable";
  if (!aot_module_span((const void*)(uintptr_t)&tf_check_exe, &m.modules[0].lo, &m.modules[0].hi))
    aot_failf("no module found for the executable");
  m.modules[0].jumps_begin = (const struct patchcall_jump_entry*)(const void*)__start___patchcall_jump_table;
  m.modules[0].jumps_end = (const struct patchcall_jump_entry*)(const void*)__stop___patchcall_jump_table;
  m.modules[0].sites_begin = (const struct patchcall_call_site_entry*)(const void*)__start___patchcall_call_sites;
  m.modules[0].sites_end = (const struct patchcall_call_site_entry*)(const void*)__stop___patchcall_call_sites;
  struct aot_site_report report;
  aot_check_sites(&m, &report, where); /* a site of the library lies in no module of the model: a failure */
  AOT_CHECK(report.by_kind[0][PATCHCALL_STATIC_SITE_BRANCH] == 4, "%s: %ld BRANCH sites, expected 4", where,
            report.by_kind[0][PATCHCALL_STATIC_SITE_BRANCH]);
}

static void tf_flip_exe(const char* where, int rounds) {
  for (int i = 0; i < rounds; i++) {
    g_false_on = !g_false_on;
    AOT_CHECK_CODE(g_false_on ? patchcall_static_key_enable(&tf_exe_false) : patchcall_static_key_disable(&tf_exe_false),
                   PATCHCALL_OK);
    g_true_on = !g_true_on;
    AOT_CHECK_CODE(g_true_on ? patchcall_static_key_enable(&tf_exe_true) : patchcall_static_key_disable(&tf_exe_true),
                   PATCHCALL_OK);
    g_call_target = g_call_target == (const void*)(uintptr_t)&tf_exe_one ? (const void*)(uintptr_t)&tf_exe_two
                                                                         : (const void*)(uintptr_t)&tf_exe_one;
    AOT_CHECK_CODE(patchcall_static_call_update(tf_exe_call, (long (*)(long))(uintptr_t)g_call_target), PATCHCALL_OK);
    tf_check_exe(where);
  }
}

static int tf_mentions_table(const char* message) {
  char lower[512];
  size_t n = strlen(message);
  if (n >= sizeof lower) n = sizeof lower - 1;
  for (size_t i = 0; i < n; i++) lower[i] = (char)tolower((unsigned char)message[i]);
  lower[n] = 0;
  return strstr(lower, "table") != NULL || strstr(lower, "65536") != NULL || strstr(lower, "full") != NULL;
}

struct tf_range {
  uintptr_t lo, hi;
  long found;
};
static int tf_visit(void* user, const patchcall_static_site_info* s) {
  struct tf_range* r = (struct tf_range*)user;
  if ((uintptr_t)s->address >= r->lo && (uintptr_t)s->address < r->hi) r->found++;
  return 0;
}

typedef int (*tf_int_fn)(void);
typedef long (*tf_long_fn)(long);
typedef void* (*tf_ptr_fn)(void);

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s PATH-TO-table_full_lib\n", argv[0]);
    return 2;
  }
  tf_check_exe("startup");
  tf_flip_exe("before dlopen", 3);

  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    aot_failf("dlopen(%s) failed: %s (registration must never fail the load)", argv[1], dlerror());
    return 1;
  }
  tf_int_fn filler = (tf_int_fn)(uintptr_t)dlsym(h, "tf_lib_filler_keys");
  tf_ptr_fn key_fn = (tf_ptr_fn)(uintptr_t)dlsym(h, "tf_lib_key");
  tf_ptr_fn call_fn = (tf_ptr_fn)(uintptr_t)dlsym(h, "tf_lib_call_object");
  tf_int_fn branch = (tf_int_fn)(uintptr_t)dlsym(h, "tf_lib_branch");
  tf_long_fn call_it = (tf_long_fn)(uintptr_t)dlsym(h, "tf_lib_call_it");
  tf_int_fn enable = (tf_int_fn)(uintptr_t)dlsym(h, "tf_lib_enable");
  tf_int_fn retarget = (tf_int_fn)(uintptr_t)dlsym(h, "tf_lib_retarget");
  if (!filler || !key_fn || !call_fn || !branch || !call_it || !enable || !retarget) {
    aot_failf("dlsym: a function of the library is missing");
    return 1;
  }
  fprintf(stderr, "library loaded: %d filler keys + 1 named key; PATCHCALL_STATIC_KEYS_MAX is %d\n", filler(),
          PATCHCALL_STATIC_KEYS_MAX);
  struct patchcall_static_key* lib_key = (struct patchcall_static_key*)key_fn();
  struct patchcall_static_call* lib_call = (struct patchcall_static_call*)call_fn();

  int rc = enable();
  fprintf(stderr, "enabling the library's named key: %d (%s): '%s'\n", rc, patchcall_strerror(rc),
          patchcall_last_error_message());
  AOT_CHECK(rc == PATCHCALL_E_TABLE_FULL, "patchcall_static_key_enable on a key of the unregistered module returned %d (%s)",
            rc, patchcall_strerror(rc));
  AOT_CHECK(tf_mentions_table(patchcall_last_error_message()),
            "the TABLE_FULL message '%s' does not say which table (expected 'table', 'full' or 65536)",
            patchcall_last_error_message());
  AOT_CHECK_CODE(patchcall_static_key_set(lib_key, 0), PATCHCALL_E_TABLE_FULL);
  AOT_CHECK(lib_key->enabled == 0, "the refused key's enabled field is %d", (int)lib_key->enabled);
  AOT_CHECK(branch() == 0, "the refused key's branch is %d, expected its compiled direction 0", branch());

  rc = patchcall_static_module_status(lib_key);
  fprintf(stderr, "patchcall_static_module_status(library key): %d (%s): '%s'\n", rc, patchcall_strerror(rc),
          patchcall_last_error_message());
  AOT_CHECK(rc == PATCHCALL_E_TABLE_FULL, "module status of the library returned %d (%s), expected TABLE_FULL", rc,
            patchcall_strerror(rc));
  AOT_CHECK(patchcall_last_error_message()[0] != 0, "module status TABLE_FULL leaves no message");
  AOT_CHECK_CODE(patchcall_static_module_status((const void*)(uintptr_t)branch), PATCHCALL_E_TABLE_FULL);
  AOT_CHECK_CODE(patchcall_static_module_status(lib_call), PATCHCALL_E_TABLE_FULL);
  AOT_CHECK_CODE(patchcall_static_module_status(&tf_exe_true), PATCHCALL_OK);

  AOT_CHECK(call_it(5) == 6, "the unregistered library's static call returned %ld, expected 6 (its initial target)",
            call_it(5));
  AOT_CHECK_CODE(retarget(), PATCHCALL_E_TABLE_FULL);
  AOT_CHECK(call_it(5) == 6, "after a refused update the library's call returned %ld, expected 6", call_it(5));
  const void* t = NULL;
  rc = patchcall_static_call_target(lib_call, &t);
  AOT_CHECK(rc == PATCHCALL_E_TABLE_FULL || rc == PATCHCALL_E_UNKNOWN_KEY,
            "patchcall_static_call_target on the unregistered module's call returned %d (%s)", rc, patchcall_strerror(rc));
  size_t count = 7;
  rc = patchcall_static_key_branches(lib_key, &count);
  AOT_CHECK(rc == PATCHCALL_E_TABLE_FULL || rc == PATCHCALL_E_UNKNOWN_KEY,
            "patchcall_static_key_branches on the unregistered module's key returned %d (%s)", rc, patchcall_strerror(rc));

  struct tf_range range;
  memset(&range, 0, sizeof range);
  if (!aot_module_span((const void*)(uintptr_t)branch, &range.lo, &range.hi)) aot_failf("no module found for the library");
  AOT_CHECK_CODE(patchcall_static_sites_each(tf_visit, &range), 0);
  AOT_CHECK(range.found == 0, "%ld sites of the unregistered library are reported", range.found);

  patchcall_static_stats st;
  memset(&st, 0, sizeof st);
  st.struct_size = sizeof st;
  AOT_CHECK_CODE(patchcall_static_stats_get(&st), PATCHCALL_OK);
  fprintf(stderr, "patchcall_static_stats_get: modules %zu, failed modules %zu, keys %zu, calls %zu, branches %zu\n",
          st.modules, st.failed_modules, st.keys, st.calls, st.branches);
  AOT_CHECK(st.failed_modules >= 1, "stats: %zu failed modules while the refused library is loaded", st.failed_modules);
  AOT_CHECK(st.keys == 2 && st.calls == 1 && st.branches == 4,
            "stats: %zu keys, %zu calls, %zu branches; expected the executable's 2, 1, 4 only", st.keys, st.calls,
            st.branches);

  tf_check_exe("with the refused library loaded");
  tf_flip_exe("with the refused library loaded", 20);

  if (dlclose(h) != 0) aot_failf("dlclose: %s", dlerror());
  AOT_CHECK_CODE(patchcall_static_module_status(lib_key), PATCHCALL_E_UNKNOWN_KEY);
  AOT_CHECK_CODE(patchcall_static_key_set(lib_key, 1), PATCHCALL_E_UNKNOWN_KEY);
  tf_flip_exe("after dlclose", 5);
  memset(&st, 0, sizeof st);
  st.struct_size = sizeof st;
  AOT_CHECK_CODE(patchcall_static_stats_get(&st), PATCHCALL_OK);
  AOT_CHECK(st.failed_modules == 0 && st.modules == 1, "stats after dlclose: %zu modules, %zu failed; expected 1, 0",
            st.modules, st.failed_modules);

  /* The library again: still refused, and the executable still unaffected. */
  h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    aot_failf("dlopen again: %s", dlerror());
  } else {
    enable = (tf_int_fn)(uintptr_t)dlsym(h, "tf_lib_enable");
    AOT_CHECK_CODE(enable(), PATCHCALL_E_TABLE_FULL);
    tf_flip_exe("with the library loaded again", 5);
    dlclose(h);
  }
  fprintf(stderr, "static_aot_table_full: %s (%ld failures)\n", aot_failures == 0 ? "PASSED" : "FAILED", aot_failures);
  return aot_failures == 0 ? 0 : 1;
}
