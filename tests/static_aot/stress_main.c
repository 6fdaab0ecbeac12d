/* Static keys and static calls (issue 16) under load: 100 keys and 100 static calls, half
 * defined here and half in a library (stress_lib.c) dlopen()ed at run time; reader threads run
 * every branch and every call while the main thread flips keys and retargets calls, checking
 * every result against a version window, and walks every site (patchcall_static_sites_each)
 * decoding it (Zydis or Capstone: static_aot/<isa>/aot_decode.c). Then dlclose, bad input, a
 * second dlopen / dlclose, (--fork) a fork in the middle, and (--churn-lib) a thread loading
 * and unloading a library of branches on our keys and calls of our static calls while the main
 * thread flips and retargets them.
 *
 *   static_aot_stress --lib PATH [--churn-lib PATH] [--changes N] [--readers R] [--walk-every K] [--fork]
 *                     [--fork-storm N] [--seed S] [--lazy] [--scale F]
 *                     [--inject-lie CHANGE]   (self-test: changes CHANGE.. CHANGE+9 of the phase with
 *                                              the library apply a value other than the one
 *                                              published: must fail)
 * --scale F (default: the environment's PATCHCALL_TEST_SCALE, else 1) multiplies the changes of
 * every phase, the fork storm's forks and the lie's position (under qemu-user scripts/test-aarch64
 * sets 0.1: each emulated instruction costs ten or more native ones); it only shortens (a factor
 * above 1 counts as 1), and every phase still runs.
 *
 * The version window: before change j the main thread appends {object, new value} to a log,
 * links it to the object's previous change and publishes version j; then it calls the
 * patchcall function, and only after it returned makes change j+1. A reader reads the version
 * (b) before and (a) after one observation; any state after changes b-1 .. a could be what it
 * saw, anything else is a failure naming the object, the value, b, a and the values allowed.
 *
 * Interleaving on a busy 2-core machine: readers may not fall more than AOT_MAX_LAG versions
 * behind, and every 4th update pauses after each of its text writes (pwrite, interposed below)
 * until the readers made two passes, so they run the sites while these hold an int3 (x86-64)
 * or while part of the batch is written (A64: one word per site). Each phase prints the int3
 * traps the runtime emulated: with the breakpoint protocol it fails if paused updates caused
 * none, on A64 if there was any (no site ever holds a trap there).
 * Every phase also prints what the runtime wrote (patchcall_static_stats_get).
 * Written in C11 that is also valid C++ (the clang++ variants compile it with -x c++). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "aot_sites.h"
#include "aot_stress.h"

AOT_TARGETS(e, 1);

#define AOT_DEFINE_TRUE(name) PATCHCALL_DEFINE_STATIC_KEY_TRUE(name);
#define AOT_DEFINE_FALSE(name) PATCHCALL_DEFINE_STATIC_KEY_FALSE(name);
#define AOT_DEFINE_INT_CALL(name) PATCHCALL_DEFINE_STATIC_CALL(name, aot_ti_e0);
#define AOT_DEFINE_VOID_CALL(name) PATCHCALL_DEFINE_STATIC_CALL(name, aot_tv_e1);

AOT_EXE_TRUE_KEYS(AOT_DEFINE_TRUE)
AOT_EXE_FALSE_KEYS(AOT_DEFINE_FALSE)
AOT_EXE_INT_CALLS(AOT_DEFINE_INT_CALL)
AOT_EXE_VOID_CALLS(AOT_DEFINE_VOID_CALL)

AOT_EXE_TRUE_KEYS(AOT_KEY_SETTER)
AOT_EXE_FALSE_KEYS(AOT_KEY_SETTER)
AOT_EXE_TRUE_KEYS(AOT_KEY_OBSERVER)
AOT_EXE_FALSE_KEYS(AOT_KEY_OBSERVER)
AOT_EXE_INT_CALLS(AOT_INT_CALL_SETTER)
AOT_EXE_VOID_CALLS(AOT_VOID_CALL_SETTER)
AOT_EXE_INT_CALLS(AOT_INT_CALL_OBSERVERS)
AOT_EXE_VOID_CALLS(AOT_VOID_CALL_OBSERVERS)

static const struct aot_key_desc aot_exe_keys[] = {AOT_EXE_TRUE_KEYS(AOT_KEY_DESC_TRUE) AOT_EXE_FALSE_KEYS(AOT_KEY_DESC_FALSE)};
static const struct aot_call_desc aot_exe_calls[] = {AOT_EXE_INT_CALLS(AOT_CALL_DESC_INT) AOT_EXE_VOID_CALLS(AOT_CALL_DESC_VOID)};
static int (*const aot_exe_key_observers[AOT_KEYS])(void) = {AOT_EXE_TRUE_KEYS(AOT_KEY_OBSERVER_ENTRY) AOT_EXE_FALSE_KEYS(AOT_KEY_OBSERVER_ENTRY)};
static long (*const aot_exe_tail_observers[AOT_CALLS])(long) = {AOT_EXE_INT_CALLS(AOT_TAIL_ENTRY) AOT_EXE_VOID_CALLS(AOT_TAIL_ENTRY)};
static long (*const aot_exe_call_observers[AOT_CALLS])(long) = {AOT_EXE_INT_CALLS(AOT_CALL_ENTRY) AOT_EXE_VOID_CALLS(AOT_CALL_ENTRY)};

static struct aot_module_desc aot_exe_desc;
static void aot_describe_exe(void) {
  struct aot_module_desc* d = &aot_exe_desc;
  d->name = "executable";
#ifdef __OPTIMIZE__
  d->optimized = 1;
#endif
  d->first_key = 0;
  d->nkeys = AOT_EXE_KEYS;
  d->first_call = 0;
  d->ncalls = AOT_EXE_CALLS;
  d->keys = aot_exe_keys;
  d->calls = aot_exe_calls;
  d->key_observers = aot_exe_key_observers;
  d->call_observers_tail = aot_exe_tail_observers;
  d->call_observers_call = aot_exe_call_observers;
  d->int_initial_code = 1 + 0;
  d->void_initial_code = 1 + 1;
  d->int_targets[0] = (const void*)(uintptr_t)&aot_ti_e0;
  d->int_targets[1] = (const void*)(uintptr_t)&aot_ti_e1;
  d->int_targets[2] = (const void*)(uintptr_t)&aot_ti_e2;
  d->int_targets[3] = (const void*)(uintptr_t)&aot_ti_e3;
  d->void_targets[0] = (const void*)(uintptr_t)&aot_tv_e0;
  d->void_targets[1] = (const void*)(uintptr_t)&aot_tv_e1;
  d->void_targets[2] = (const void*)(uintptr_t)&aot_tv_e2;
  d->void_targets[3] = (const void*)(uintptr_t)&aot_tv_e3;
  d->jumps_begin = (const struct patchcall_jump_entry*)(const void*)__start___patchcall_jump_table;
  d->jumps_end = (const struct patchcall_jump_entry*)(const void*)__stop___patchcall_jump_table;
  d->sites_begin = (const struct patchcall_call_site_entry*)(const void*)__start___patchcall_call_sites;
  d->sites_end = (const struct patchcall_call_site_entry*)(const void*)__stop___patchcall_call_sites;
}

/* ---- objects and the expected state ------------------------------------------------------ */
/* Object o: keys are 0..99 (o = g), calls 100..199 (o = 100 + g). A key's value is 0/1, a
 * call's its target code (0..8). */
#define AOT_OBJECTS (AOT_KEYS + AOT_CALLS)
static const struct aot_key_desc* g_key[AOT_KEYS];
static const struct aot_call_desc* g_call[AOT_CALLS];
static const struct aot_module_desc* g_lib;
static void* g_lib_handle;
static int g_lib_loaded;
static int g_lazy; /* --lazy: dlopen(RTLD_LAZY) of a library linked -z lazy: its PLT slots start unbound */
static int g_initial[AOT_OBJECTS];
static int g_current[AOT_OBJECTS]; /* the main thread's own copy */
static const void* g_int_target[AOT_TARGET_CODES];
static const void* g_void_target[AOT_TARGET_CODES];

struct aot_change {
  int object;
  int value;
  int prev; /* the object's previous change, 0 for none */
};
static struct aot_change* g_log;
static int g_log_capacity;
static int g_changes;         /* main thread only */
static int g_head[AOT_OBJECTS]; /* atomic: the object's latest published change */
static long g_version;          /* atomic: the latest published change */
static long g_done;             /* atomic: the latest change whose patchcall call returned */
static int g_lie_from = -1;     /* --inject-lie: changes [from, from + 10) apply another value */
static int g_stop;              /* atomic */
static long g_walks;
static const char* g_who = "";
static double g_scale = 1.0; /* --scale / PATCHCALL_TEST_SCALE */

/* n changes (or forks) times the scale, never fewer than `floor` (nor more than n). */
static int aot_scaled(int n, int floor) {
  int v = (int)((double)n * g_scale);
  if (v > n) v = n;
  return v < floor ? (floor < n ? floor : n) : v;
}

static const char* aot_object_name(int o) { return o < AOT_KEYS ? g_key[o]->name : g_call[o - AOT_KEYS]->name; }
static int aot_is_key(int o) { return o < AOT_KEYS; }
static int aot_object_loaded(int o) {
  int g = o < AOT_KEYS ? o : o - AOT_KEYS;
  return g < AOT_EXE_KEYS || g_lib_loaded; /* (the same split for keys and calls) */
}

/* Whether `observed` is a value of object o in some state after changes b-1 .. a. */
static int aot_possible(int o, int observed, long b, long a, char* allowed, size_t allowed_size) {
  int h = __atomic_load_n(&g_head[o], __ATOMIC_ACQUIRE);
  while (h > a) h = g_log[h].prev;
  int ok = 0;
  size_t used = 0;
  if (allowed) allowed[0] = 0;
  while (h > 0 && h >= b) {
    if (g_log[h].value == observed) ok = 1;
    if (allowed && used + 24 < allowed_size) used += (size_t)snprintf(allowed + used, allowed_size - used, "%d (change %d) ", g_log[h].value, h);
    h = g_log[h].prev;
  }
  int before = h == 0 ? g_initial[o] : g_log[h].value;
  if (before == observed) ok = 1;
  if (allowed && used + 40 < allowed_size) snprintf(allowed + used, allowed_size - used, "%d (%s %d)", before, h == 0 ? "initial, before change" : "after change", h == 0 ? (int)b : h);
  return ok;
}

/* Under qemu-user too every observation must be in its window: unlike the JIT stress driver
 * (EMULATOR_LATE_CALLS, bench/stress/check_run.cmake) no stale-translation tolerance, as no late
 * observation was seen in the emulated runs (the AOT writer drops the written pages'
 * translations before its sync). If one ever does, bound it here as examples/static_keys/
 * check_emulated.cmake does, under the emulator only. */
static void aot_check_observed(int o, int observed, long b, long a, const char* how, const char* module) {
  if (aot_possible(o, observed, b, a, NULL, 0)) return;
  char allowed[512];
  aot_possible(o, observed, b, a, allowed, sizeof allowed);
  aot_failf("%s%s %s (observed %s, %s): got %d, versions [%ld, %ld] allow only: %s", g_who,
            aot_is_key(o) ? "key" : "static call", aot_object_name(o), how, module, observed, b, a, allowed);
}

/* A call observer's result as a target code, or -1 for a value no target returns. */
static int aot_decode_result(int is_void, long x, long r) {
  if (r == 0) return 0;
  long code = is_void ? r : r - x * AOT_VALUE_SCALE;
  return code >= 1 && code < AOT_TARGET_CODES ? (int)code : -1;
}

static const void* aot_target_of(int g, int code) {
  if (code == 0) return g_call[g]->is_void ? NULL : (const void*)(uintptr_t)&patchcall_static_call_return0;
  return g_call[g]->is_void ? g_void_target[code] : g_int_target[code];
}

/* ---- readers -------------------------------------------------------------------------------- */
struct aot_reader {
  pthread_t thread;
  int id;
  int use_lib;
  long observations;
  long in_window; /* observations whose window [b, a] contained a change */
  long in_flight; /* observations made while a patchcall update was running */
  long last_version; /* atomic: the version at the start of its latest iteration over all objects */
  long versions_seen; /* iterations that started at a new version */
  long iterations;
};

/* The readers of the running phase: the main thread lets them fall at most AOT_MAX_LAG
 * versions behind (yielding, for at most AOT_LAG_WAIT_S per change), so that on a busy machine,
 * where readers and writer take turns on one core, readers still see most versions. */
#define AOT_MAX_LAG 16
#define AOT_LAG_WAIT_S 0.002
static struct aot_reader* g_readers;
static int g_nreaders;
static long g_lag_waits, g_lag_timeouts;

static long aot_reader_passes(void) {
  long n = 0;
  for (int i = 0; i < g_nreaders; i++) n += __atomic_load_n(&g_readers[i].iterations, __ATOMIC_RELAXED);
  return n;
}

/* Updates that pause between the steps of the breakpoint protocol. The runtime writes text with
 * pwrite() on /proc/self/mem (runtime/aot/text_batch.cpp); this definition takes the place of
 * libc's for the runtime linked into this program. While the main thread is inside a patchcall
 * call of a phase with readers (every 4th change), each write is followed by a wait (at most 1 ms) until the
 * readers made two more passes over every branch and call, so that they run the sites while
 * they hold an int3 or a half-written instruction, also when writer and readers share one core.
 * (If the runtime stopped using pwrite, g_pauses stays 0 and the phase line says so.) */
static __thread int g_pause_in_update; /* the main thread's, inside aot_apply (a dlopen on another thread writes too) */
static long g_pauses, g_pause_timeouts;
static long g_pwrites; /* atomic: every pwrite of the process (compared with the runtime's count) */
PATCHCALL_EXTERN_C_ ssize_t pwrite(int fd, const void* buffer, size_t count, off_t offset) {
  ssize_t n = (ssize_t)syscall(SYS_pwrite64, fd, buffer, count, offset);
  __atomic_add_fetch(&g_pwrites, 1, __ATOMIC_RELAXED);
  if (g_pause_in_update && g_nreaders > 0) {
    int saved = errno;
    long start = aot_reader_passes();
    double deadline = aot_now() + 0.001;
    g_pauses++;
    while (aot_reader_passes() < start + 2) {
      if (aot_now() > deadline) {
        g_pause_timeouts++;
        break;
      }
      sched_yield();
    }
    errno = saved;
  }
  return n;
}
static void aot_wait_for_readers(long version) {
  double deadline = 0;
  for (;;) {
    long oldest = version;
    for (int i = 0; i < g_nreaders; i++) {
      long v = __atomic_load_n(&g_readers[i].last_version, __ATOMIC_RELAXED);
      if (v < oldest) oldest = v;
    }
    if (version - oldest <= AOT_MAX_LAG) return;
    if (deadline == 0) {
      deadline = aot_now() + AOT_LAG_WAIT_S;
      g_lag_waits++;
    } else if (aot_now() > deadline) {
      g_lag_timeouts++;
      return;
    }
    sched_yield();
  }
}

static void aot_observe_key(struct aot_reader* r, int g, int (*observe)(void), const char* module) {
  long b = __atomic_load_n(&g_version, __ATOMIC_ACQUIRE);
  int bits = observe();
  long a = __atomic_load_n(&g_version, __ATOMIC_ACQUIRE);
  if (__atomic_load_n(&g_done, __ATOMIC_RELAXED) < a) r->in_flight += 2;
  aot_check_observed(g, bits & 1, b, a, "PATCHCALL_STATIC_BRANCH_UNLIKELY", module);
  aot_check_observed(g, (bits >> 1) & 1, b, a, "PATCHCALL_STATIC_BRANCH_LIKELY", module);
  r->observations += 2;
  if (a != b) r->in_window += 2;
}

static void aot_observe_call(struct aot_reader* r, int g, long (*observe)(long), long x, const char* how,
                             const char* module) {
  long b = __atomic_load_n(&g_version, __ATOMIC_ACQUIRE);
  long result = observe(x);
  long a = __atomic_load_n(&g_version, __ATOMIC_ACQUIRE);
  if (__atomic_load_n(&g_done, __ATOMIC_RELAXED) < a) r->in_flight++;
  int code = aot_decode_result(g_call[g]->is_void, x, result);
  if (code < 0)
    aot_failf("%sstatic call %s (%s, %s) with x=%ld returned %ld: no target returns that (versions [%ld, %ld])", g_who,
              g_call[g]->name, how, module, x, result, b, a);
  else
    aot_check_observed(AOT_KEYS + g, code, b, a, how, module);
  r->observations++;
  if (a != b) r->in_window++;
}

static void* aot_reader_main(void* arg) {
  struct aot_reader* r = (struct aot_reader*)arg;
  long x = r->id * 1000003L;
  while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE) && __atomic_load_n(&aot_failures, __ATOMIC_RELAXED) < 1000) {
    long v = __atomic_load_n(&g_version, __ATOMIC_RELAXED);
    if (v != r->last_version) r->versions_seen++;
    __atomic_store_n(&r->last_version, v, __ATOMIC_RELAXED);
    __atomic_store_n(&r->iterations, r->iterations + 1, __ATOMIC_RELAXED);
    for (int i = 0; i < AOT_KEYS; i++) {
      int g = (i + r->id * 17) % AOT_KEYS;
      if (aot_exe_desc.key_observers[g]) aot_observe_key(r, g, aot_exe_desc.key_observers[g], "in the executable");
      if (r->use_lib && g_lib->key_observers[g]) aot_observe_key(r, g, g_lib->key_observers[g], "in the library");
    }
    for (int i = 0; i < AOT_CALLS; i++) {
      int g = (i + r->id * 13) % AOT_CALLS;
      x = (x + 7) & 0xffffff;
      if (aot_exe_desc.call_observers_tail[g]) {
        aot_observe_call(r, g, aot_exe_desc.call_observers_tail[g], x, "tail call", "in the executable");
        aot_observe_call(r, g, aot_exe_desc.call_observers_call[g], x, "call", "in the executable");
      }
      if (r->use_lib && g_lib->call_observers_tail[g]) {
        aot_observe_call(r, g, g_lib->call_observers_tail[g], x, "tail call", "in the library");
        aot_observe_call(r, g, g_lib->call_observers_call[g], x, "call", "in the library");
      }
    }
    if (r->iterations % 8 == 0) sched_yield(); /* on a busy machine: lets the writer in now and then */
  }
  return NULL;
}

/* Every observer of every loaded module, from the main thread: exactly the current state. */
static void aot_check_direct(const char* where) {
  long before = aot_failures;
  const struct aot_module_desc* mods[2] = {&aot_exe_desc, g_lib_loaded ? g_lib : NULL};
  for (int m = 0; m < 2; m++) {
    if (!mods[m]) continue;
    for (int g = 0; g < AOT_KEYS; g++) {
      if (!mods[m]->key_observers[g]) continue;
      int bits = mods[m]->key_observers[g]();
      if ((bits & 1) != g_current[g] || ((bits >> 1) & 1) != g_current[g])
        aot_failf("%s%s: key %s observed from the %s: UNLIKELY %d, LIKELY %d, expected both %d", g_who, where,
                  g_key[g]->name, mods[m]->name, bits & 1, (bits >> 1) & 1, g_current[g]);
    }
    for (int g = 0; g < AOT_CALLS; g++) {
      if (!mods[m]->call_observers_tail[g]) continue;
      long x = 4242 + g;
      int tail = aot_decode_result(g_call[g]->is_void, x, mods[m]->call_observers_tail[g](x));
      int call = aot_decode_result(g_call[g]->is_void, x, mods[m]->call_observers_call[g](x));
      int want = g_current[AOT_KEYS + g];
      if (tail != want || call != want)
        aot_failf("%s%s: static call %s called from the %s reached target %d (tail call) and %d (call), expected %d",
                  g_who, where, g_call[g]->name, mods[m]->name, tail, call, want);
    }
  }
  /* The runtime's own view. */
  for (int g = 0; g < AOT_KEYS; g++) {
    if (!aot_object_loaded(g)) continue;
    int field = __atomic_load_n(&g_key[g]->key->enabled, __ATOMIC_RELAXED) != 0;
    if (field != g_current[g])
      aot_failf("%s%s: key %s: enabled field %d, expected %d", g_who, where, g_key[g]->name, field, g_current[g]);
  }
  for (int g = 0; g < AOT_CALLS; g++) {
    if (!aot_object_loaded(AOT_KEYS + g)) continue;
    const void* t = (const void*)1;
    AOT_CHECK_CODE(patchcall_static_call_target(g_call[g]->call, &t), PATCHCALL_OK);
    const void* want = aot_target_of(g, g_current[AOT_KEYS + g]);
    if (t != want)
      aot_failf("%s%s: patchcall_static_call_target(%s) = %p, expected %p (code %d)", g_who, where, g_call[g]->name, t,
                want, g_current[AOT_KEYS + g]);
  }
  if (aot_failures != before) fprintf(stderr, "%s%s: direct checks found %ld failures\n", g_who, where, aot_failures - before);
}

/* ---- the site walk ---------------------------------------------------------------------------- */
static struct aot_site_module g_exe_module, g_lib_module;
static int g_churning; /* a churn thread loads and unloads another library: walks ignore its sites */
static struct aot_site_report g_last_report;

/* The arrays a walk's model points into (one per walk, on the stack). */
struct aot_model_storage {
  struct patchcall_static_key* keys[AOT_KEYS];
  const char* key_names[AOT_KEYS];
  int enabled[AOT_KEYS];
  struct patchcall_static_call* calls[AOT_CALLS];
  const char* call_names[AOT_CALLS];
  const void* tramps[AOT_CALLS];
  const void* targets[AOT_CALLS];
  struct aot_site_model m;
};

static void aot_build_model(struct aot_model_storage* st) {
  struct aot_site_model* m = &st->m;
  memset(m, 0, sizeof *m);
  for (int g = 0; g < AOT_KEYS; g++) {
    if (!aot_object_loaded(g)) continue;
    st->keys[m->nkeys] = g_key[g]->key;
    st->key_names[m->nkeys] = g_key[g]->name;
    st->enabled[m->nkeys] = g_current[g];
    m->nkeys++;
  }
  for (int g = 0; g < AOT_CALLS; g++) {
    if (!aot_object_loaded(AOT_KEYS + g)) continue;
    st->calls[m->ncalls] = g_call[g]->call;
    st->call_names[m->ncalls] = g_call[g]->name;
    st->tramps[m->ncalls] = g_call[g]->trampoline;
    st->targets[m->ncalls] = aot_target_of(g, g_current[AOT_KEYS + g]);
    m->ncalls++;
  }
  m->keys = st->keys;
  m->key_names = st->key_names;
  m->key_enabled = st->enabled;
  m->calls = st->calls;
  m->call_names = st->call_names;
  m->call_trampolines = st->tramps;
  m->call_targets = st->targets;
  m->modules[m->nmodules++] = g_exe_module;
  if (g_lib_loaded) m->modules[m->nmodules++] = g_lib_module;
  m->ignore_other_modules = g_churning;
}

static long aot_walk(const char* where, int also_counts) {
  struct aot_model_storage store;
  aot_build_model(&store);
  struct aot_site_model* m = &store.m;
  long failures = aot_check_sites(m, &g_last_report, where);
  g_walks++;
  if (also_counts && !g_churning) { /* (a churned library adds branches the model does not know) */
    for (int i = 0; i < m->nkeys; i++) {
      size_t count = 12345;
      AOT_CHECK_CODE(patchcall_static_key_branches(store.keys[i], &count), PATCHCALL_OK);
      long want = aot_branches_in_tables(m, store.keys[i]);
      if ((long)count != want)
        aot_failf("%s%s: patchcall_static_key_branches(%s) = %zu, the loaded jump tables hold %ld", g_who, where,
                  store.key_names[i], count, want);
    }
  }
  return failures;
}

static patchcall_static_stats aot_stats(void) {
  patchcall_static_stats st;
  memset(&st, 0, sizeof st);
  st.struct_size = sizeof st;
  AOT_CHECK_CODE(patchcall_static_stats_get(&st), PATCHCALL_OK);
  return st;
}

static void aot_print_counts(const char* where) {
  struct aot_model_storage store;
  aot_build_model(&store);
  struct aot_site_model* m = &store.m;
  struct aot_site_report r;
  aot_check_sites(m, &r, where);
  fprintf(stderr, "%s%s: %ld sites\n", g_who, where, r.sites);
  const struct aot_module_desc* descs[2] = {&aot_exe_desc, g_lib};
  for (int i = 0; i < m->nmodules; i++) {
    long markers = (long)(m->modules[i].sites_end - m->modules[i].sites_begin);
    long jumps = (long)(m->modules[i].jumps_end - m->modules[i].jumps_begin);
    fprintf(stderr,
            "  %-10s BRANCH %ld (jump-table records %ld), TRAMPOLINE %ld, CALL %ld, TAIL_CALL %ld (call-site markers "
            "%ld; inline sites calling the target directly %ld, reaching the trampoline %ld, no-op %ld)\n",
            m->modules[i].name, r.by_kind[i][PATCHCALL_STATIC_SITE_BRANCH], jumps,
            r.by_kind[i][PATCHCALL_STATIC_SITE_TRAMPOLINE], r.by_kind[i][PATCHCALL_STATIC_SITE_CALL],
            r.by_kind[i][PATCHCALL_STATIC_SITE_TAIL_CALL], markers, r.inline_direct[i], r.inline_fallback[i],
            r.inline_noop[i]);
    long inline_sites = r.by_kind[i][PATCHCALL_STATIC_SITE_CALL] + r.by_kind[i][PATCHCALL_STATIC_SITE_TAIL_CALL];
    if (descs[i]->optimized && inline_sites == 0 && !(g_lazy && i == 1))
      aot_failf("%s%s: the %s is optimized but patchcall found no inline call site among its %ld markers", g_who,
                where, m->modules[i].name, markers);
    if (inline_sites > markers)
      aot_failf("%s%s: the %s has %ld inline call sites but only %ld markers", g_who, where, m->modules[i].name,
                inline_sites, markers);
  }
  /* The registry's counters agree with the walk. */
  patchcall_static_stats st = aot_stats();
  long kinds[5] = {0, 0, 0, 0, 0};
  for (int i = 0; i < m->nmodules; i++)
    for (int k = 1; k <= 4; k++) kinds[k] += r.by_kind[i][k];
  fprintf(stderr,
          "  patchcall_static_stats_get: modules %zu (failed %zu), keys %zu, calls %zu, branches %zu, trampolines %zu, "
          "call sites %zu, tail call sites %zu; so far %llu batches, %llu sites written, %llu writes, %llu syncs, %llu "
          "traps emulated\n",
          st.modules, st.failed_modules, st.keys, st.calls, st.branches, st.trampolines, st.call_sites, st.tail_call_sites,
          (unsigned long long)st.batches, (unsigned long long)st.sites_written, (unsigned long long)st.writes,
          (unsigned long long)st.syncs, (unsigned long long)st.traps_emulated);
  AOT_CHECK(st.modules == (size_t)m->nmodules && st.failed_modules == 0, "%s: stats: %zu modules (%zu failed), expected %d",
            where, st.modules, st.failed_modules, m->nmodules);
  AOT_CHECK(st.keys == (size_t)m->nkeys && st.calls == (size_t)m->ncalls, "%s: stats: %zu keys, %zu calls; expected %d, %d",
            where, st.keys, st.calls, m->nkeys, m->ncalls);
  AOT_CHECK(st.branches == (size_t)kinds[PATCHCALL_STATIC_SITE_BRANCH] &&
                st.trampolines == (size_t)kinds[PATCHCALL_STATIC_SITE_TRAMPOLINE] &&
                st.call_sites == (size_t)kinds[PATCHCALL_STATIC_SITE_CALL] &&
                st.tail_call_sites == (size_t)kinds[PATCHCALL_STATIC_SITE_TAIL_CALL],
            "%s: stats count sites %zu/%zu/%zu/%zu (branch/trampoline/call/tail call), the walk %ld/%ld/%ld/%ld", where,
            st.branches, st.trampolines, st.call_sites, st.tail_call_sites, kinds[1], kinds[2], kinds[3], kinds[4]);
}

/* ---- changes --------------------------------------------------------------------------------- */
static uint64_t g_rng = 0x9e3779b97f4a7c15ull;
static unsigned aot_random(unsigned n) {
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 7;
  g_rng ^= g_rng << 17;
  return (unsigned)((g_rng >> 11) % n);
}

static long g_rc_failures;
static void aot_apply(int o, int value) {
  if (g_changes + 1 >= g_log_capacity) {
    aot_failf("change log full (%d)", g_log_capacity);
    return;
  }
  int j = ++g_changes;
  g_log[j].object = o;
  g_log[j].value = value;
  g_log[j].prev = g_head[o];
  __atomic_store_n(&g_head[o], j, __ATOMIC_RELEASE);
  __atomic_store_n(&g_version, (long)j, __ATOMIC_RELEASE);
  int rc;
  int applied = value;
  if (g_lie_from >= 0 && j >= g_lie_from && j < g_lie_from + 10) /* the checks must notice */
    applied = aot_is_key(o) ? !value : value == 1 ? 2 : 1; /* (targets of the executable: it outlives the library) */
  if (applied != value) fprintf(stderr, "inject-lie: change %d of %s publishes %d, applies %d\n", j, aot_object_name(o), value, applied);
  g_pause_in_update = j % 4 == 0;
  if (aot_is_key(o)) {
    rc = g_key[o]->set(applied);
  } else {
    int g = o - AOT_KEYS;
    rc = g_call[g]->set(applied == 0 ? NULL : aot_target_of(g, applied), applied == 0);
  }
  g_pause_in_update = 0;
  __atomic_store_n(&g_done, (long)j, __ATOMIC_RELEASE);
  if (rc != PATCHCALL_OK) {
    g_rc_failures++;
    aot_failf("%schange %d: setting %s %s to %d returned %d (%s): '%s'", g_who, j, aot_is_key(o) ? "key" : "call",
              aot_object_name(o), value, rc, patchcall_strerror(rc), patchcall_last_error_message());
  }
  g_current[o] = value;
}

/* A library (re)loaded: its objects start over at their compiled state. Published like a
 * change, with no patchcall call (no reader runs while a library is loaded). */
static void aot_publish_reset(int o, int value) {
  int j = ++g_changes;
  g_log[j].object = o;
  g_log[j].value = value;
  g_log[j].prev = g_head[o];
  __atomic_store_n(&g_head[o], j, __ATOMIC_RELEASE);
  __atomic_store_n(&g_version, (long)j, __ATOMIC_RELEASE);
  __atomic_store_n(&g_done, (long)j, __ATOMIC_RELEASE);
  g_current[o] = value;
}

static void aot_random_change(void) {
  int o;
  do {
    o = aot_random(10) < 6 ? (int)aot_random(AOT_KEYS) : AOT_KEYS + (int)aot_random(AOT_CALLS);
  } while (!aot_object_loaded(o));
  int value;
  if (aot_random(10) == 0) {
    value = g_current[o]; /* unchanged: no write, no sync */
  } else if (aot_is_key(o)) {
    value = !g_current[o];
  } else {
    int codes = g_lib_loaded ? AOT_TARGET_CODES : 1 + AOT_TARGETS_PER_MODULE;
    value = (int)aot_random((unsigned)codes);
  }
  aot_apply(o, value);
}

static void aot_fork_test(void);

/* --fork-storm N: a thread forks N times (every ~2 ms) while the writer flips and retargets
 * under the readers. fork() waits for an update in progress (the runtime's atfork handlers
 * hold its mutex), so each child must find a consistent copy: it takes the state from the
 * runtime (the keys' fields, patchcall_static_call_target), checks every site against it (no
 * int3 left, no half-written instruction, every branch and call where its state says) and
 * every branch and call result, then makes changes of its own and checks them. */
static int g_fork_storm;
static int aot_code_of_target(int g, const void* t) {
  if (t == NULL) return g_call[g]->is_void ? 0 : -1;
  if (!g_call[g]->is_void && t == (const void*)(uintptr_t)&patchcall_static_call_return0) return 0;
  for (int c = 1; c < AOT_TARGET_CODES; c++)
    if (t == (g_call[g]->is_void ? g_void_target[c] : g_int_target[c])) return c;
  return -1;
}
static void aot_storm_child(int n) {
  char who[48];
  snprintf(who, sizeof who, "[fork storm child %d] ", n);
  g_who = who;
  for (int g = 0; g < AOT_KEYS; g++)
    if (aot_object_loaded(g)) g_current[g] = __atomic_load_n(&g_key[g]->key->enabled, __ATOMIC_RELAXED) != 0;
  for (int g = 0; g < AOT_CALLS; g++) {
    if (!aot_object_loaded(AOT_KEYS + g)) continue;
    const void* t = NULL;
    AOT_CHECK_CODE(patchcall_static_call_target(g_call[g]->call, &t), PATCHCALL_OK);
    int code = aot_code_of_target(g, t);
    if (code < 0) aot_failf("%sstatic call %s targets %p: none of the test's targets", g_who, g_call[g]->name, t);
    g_current[AOT_KEYS + g] = code < 0 ? 0 : code;
  }
  aot_walk("fork storm child, as forked", 1);
  aot_check_direct("fork storm child, as forked");
  for (int i = 0; i < 20; i++) aot_random_change();
  aot_walk("fork storm child, after its own changes", 1);
  aot_check_direct("fork storm child, after its own changes");
}
static void* aot_forker_main(void* arg) {
  long* forks = (long*)arg;
  for (int n = 0; n < g_fork_storm && !__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE); n++) {
    usleep(2000);
    pid_t pid = fork();
    if (pid < 0) {
      aot_failf("fork storm: fork: %s", strerror(errno));
      break;
    }
    if (pid == 0) {
      long before = aot_failures;
      aot_storm_child(n);
      _exit(aot_failures == before ? 0 : 1);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) aot_failf("fork storm: waitpid: %s", strerror(errno));
    else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      aot_failf("fork storm child %d failed (%s %d): see its messages above", n, WIFEXITED(status) ? "exit status" : "signal",
                WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? WTERMSIG(status) : -1);
    (*forks)++;
  }
  return NULL;
}

/* The churn thread: loads the churn library, checks its branches and calls of the executable's
 * keys and calls against the version window (as a reader), flips the library's own key, unloads
 * it, and again, until the phase ends. */
typedef const struct aot_module_desc* (*aot_churn_describe_fn)(void);
struct aot_churner {
  pthread_t thread;
  const char* path;
  struct aot_reader reader;
  long loads;
};
static void* aot_churn_main(void* arg) {
  struct aot_churner* c = (struct aot_churner*)arg;
  long x = 77;
  while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE) && __atomic_load_n(&aot_failures, __ATOMIC_RELAXED) < 1000) {
    void* h = dlopen(c->path, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      aot_failf("%schurn: dlopen(%s): %s", g_who, c->path, dlerror());
      break;
    }
    aot_churn_describe_fn describe = (aot_churn_describe_fn)(uintptr_t)dlsym(h, "aot_churn_lib_describe");
    int (*own_observe)(void) = (int (*)(void))(uintptr_t)dlsym(h, "aot_churn_own_observe");
    int (*own_set)(int) = (int (*)(int))(uintptr_t)dlsym(h, "aot_churn_own_set");
    struct patchcall_static_key* (*own_key)(void) =
        (struct patchcall_static_key * (*)(void))(uintptr_t) dlsym(h, "aot_churn_own_key");
    if (!describe || !own_observe || !own_set || !own_key) {
      aot_failf("%schurn: a function of %s is missing", g_who, c->path);
      dlclose(h);
      break;
    }
    const struct aot_module_desc* d = describe();
    AOT_CHECK_CODE(patchcall_static_module_status(own_key()), PATCHCALL_OK);
    for (int pass = 0; pass < 2; pass++) {
      for (int g = 0; g < AOT_EXE_KEYS; g++) aot_observe_key(&c->reader, g, d->key_observers[g], "in the churn library");
      for (int g = 0; g < AOT_EXE_CALLS; g++) {
        x = (x + 5) & 0xffffff;
        aot_observe_call(&c->reader, g, d->call_observers_tail[g], x, "tail call", "in the churn library");
        aot_observe_call(&c->reader, g, d->call_observers_call[g], x, "call", "in the churn library");
      }
    }
    int bits = own_observe();
    AOT_CHECK(bits == 0, "%schurn load %ld: the library's own key (compiled FALSE) starts with branches %d", g_who,
              c->loads, bits);
    AOT_CHECK_CODE(own_set(1), PATCHCALL_OK);
    bits = own_observe();
    AOT_CHECK(bits == 3, "%schurn load %ld: its own key enabled, branches %d, expected 3", g_who, c->loads, bits);
    if (c->loads % 2 == 0) { /* odd loads unload it enabled */
      AOT_CHECK_CODE(own_set(0), PATCHCALL_OK);
      bits = own_observe();
      AOT_CHECK(bits == 0, "%schurn load %ld: its own key disabled, branches %d, expected 0", g_who, c->loads, bits);
    }
    struct patchcall_static_key* stale = own_key();
    if (dlclose(h) != 0) aot_failf("%schurn: dlclose: %s", g_who, dlerror());
    int rc = patchcall_static_key_set(stale, 1);
    AOT_CHECK(rc == PATCHCALL_E_UNKNOWN_KEY,
              "%schurn: setting the key of the unloaded churn library returned %d (%s): '%s'", g_who, rc,
              patchcall_strerror(rc), patchcall_last_error_message());
    c->loads++;
  }
  return NULL;
}

static void aot_phase(const char* name, int readers, int use_lib, int changes, int walk_every, int fork_at,
                      const char* churn_path) {
  double t0 = aot_now();
  struct aot_reader r[8];
  memset(r, 0, sizeof r);
  if (readers > 8) readers = 8;
  __atomic_store_n(&g_stop, 0, __ATOMIC_RELEASE);
  for (int i = 0; i < readers; i++) {
    r[i].id = i;
    r[i].use_lib = use_lib;
    r[i].last_version = __atomic_load_n(&g_version, __ATOMIC_RELAXED);
    int e = pthread_create(&r[i].thread, NULL, aot_reader_main, &r[i]);
    if (e != 0) {
      aot_failf("pthread_create: %s", strerror(e));
      readers = i;
      break;
    }
  }
  struct aot_churner churner;
  memset(&churner, 0, sizeof churner);
  if (churn_path) {
    churner.path = churn_path;
    churner.reader.id = 99;
    g_churning = 1;
    int e = pthread_create(&churner.thread, NULL, aot_churn_main, &churner);
    if (e != 0) {
      aot_failf("pthread_create: %s", strerror(e));
      churn_path = NULL;
    }
  }
  pthread_t forker;
  long forks = 0;
  int storm = 0; /* started after the fork test: a raw fork(2) while another thread is inside
                    fork() would copy the locks its atfork handlers (and libc's, ASan's) hold */
  long walks0 = g_walks;
  long failures0 = aot_failures;
  long lag_waits0 = g_lag_waits, lag_timeouts0 = g_lag_timeouts;
  long pauses0 = g_pauses, pause_timeouts0 = g_pause_timeouts;
  patchcall_static_stats st0 = aot_stats();
  long pwrites0 = __atomic_load_n(&g_pwrites, __ATOMIC_RELAXED);
  g_readers = r;
  g_nreaders = readers;
  for (int i = 0; i < changes && aot_failures < 1000; i++) {
    aot_random_change();
    aot_wait_for_readers(g_changes);
    if ((i + 1) % walk_every == 0) {
      char where[96];
      snprintf(where, sizeof where, "%s, after change %d", name, g_changes);
      aot_walk(where, (i + 1) % (walk_every * 50) == 0);
    }
    if (i == fork_at) {
      aot_fork_test();
      if (g_fork_storm > 0) storm = pthread_create(&forker, NULL, aot_forker_main, &forks) == 0;
    }
  }
  if (storm) { /* (the storm ends before the readers stop: its children fork amid updates) */
    pthread_join(forker, NULL);
    fprintf(stderr, "%s%s: the fork storm forked %ld children, each checked its copy\n", g_who, name, forks);
    if (forks < g_fork_storm) aot_failf("%s%s: only %ld of %d storm forks ran", g_who, name, forks, g_fork_storm);
  }
  __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
  g_nreaders = 0;
  if (churn_path) {
    pthread_join(churner.thread, NULL);
    g_churning = 0;
    fprintf(stderr, "%s%s: the churn thread loaded and unloaded %s %ld times, made %ld observations\n", g_who, name,
            churn_path, churner.loads, churner.reader.observations);
    if (churner.loads == 0) aot_failf("%s%s: the churn thread never loaded its library", g_who, name);
  }
  long observations = 0, in_window = 0, in_flight = 0, versions_seen = 0;
  for (int i = 0; i < readers; i++) {
    pthread_join(r[i].thread, NULL);
    observations += r[i].observations;
    in_window += r[i].in_window;
    in_flight += r[i].in_flight;
    versions_seen += r[i].versions_seen;
  }
  char where[96];
  snprintf(where, sizeof where, "%s, at the end", name);
  aot_check_direct(where);
  aot_walk(where, 1);
  fprintf(stderr,
          "%s%s: %d changes (total %d), %ld site walks, %d readers made %ld observations (%ld while an update "
          "was running, %ld whose window saw a new version; %ld reader passes began at a new version; the writer "
          "waited %ld times for lagging readers, %ld of them timed out; it paused for the readers after %ld text writes, "
          "%ld pauses timed out), %ld failures, %.2f s\n",
          g_who, name, changes, g_changes, g_walks - walks0, readers, observations, in_flight, in_window, versions_seen,
          g_lag_waits - lag_waits0, g_lag_timeouts - lag_timeouts0, g_pauses - pauses0, g_pause_timeouts - pause_timeouts0,
          aot_failures - failures0,
          aot_now() - t0);
  if (readers > 0 && observations == 0) aot_failf("%s%s: the readers made no observation", g_who, name);
  patchcall_static_stats st1 = aot_stats();
  long pwrites = __atomic_load_n(&g_pwrites, __ATOMIC_RELAXED) - pwrites0;
  unsigned long long traps = (unsigned long long)(st1.traps_emulated - st0.traps_emulated);
  long paused = (g_pauses - pauses0) - (g_pause_timeouts - pause_timeouts0);
  fprintf(stderr, "%s%s: the runtime wrote %llu batches, %llu sites, %llu writes (%ld pwrite calls seen), %llu syncs; "
          "%llu int3 traps emulated\n", g_who, name, (unsigned long long)(st1.batches - st0.batches),
          (unsigned long long)(st1.sites_written - st0.sites_written), (unsigned long long)(st1.writes - st0.writes),
          pwrites, (unsigned long long)(st1.syncs - st0.syncs), traps);
  if ((long)(st1.writes - st0.writes) != pwrites)
    fprintf(stderr, "%sWARNING: %s: the runtime counts %llu writes, this program's pwrite saw %ld: the pauses between "
            "the protocol's steps (stress_main.c, pwrite) may no longer work\n", g_who, name,
            (unsigned long long)(st1.writes - st0.writes), pwrites);
  /* A pause after the int3 write lets the readers make two passes over every site, the one
   * written included: they must have trapped. Without the protocol no site ever holds a trap. */
  if (aot_breakpoint_protocol() && paused >= 10 && traps == 0)
    aot_failf("%s%s: %ld updates paused for the readers while sites held int3, yet no trap was emulated", g_who, name,
              paused);
  if (!aot_breakpoint_protocol() && traps != 0)
    aot_failf("%s%s: %llu traps were emulated, but this ISA writes every site with one store (no trap)", g_who, name,
              traps);
}

/* Forked in the middle of a phase, with the readers running: the child flips and retargets
 * its own copy (its own readers check; none under the emulator), the parent then finds its
 * state, results and sites unchanged and goes on flipping. */
static void aot_fork_test(void) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) {
    aot_failf("fork: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    g_who = "[fork child] ";
    long before = aot_failures;
    aot_walk("fork child, first walk", 1);
    aot_check_direct("fork child, first check");
    /* qemu 7.2 aborts when the forked child of a threaded process starts a thread
     * (qemu_plugin_vcpu_init_hook / cpu_exec assertions): emulated, the child checks its own
     * flips and retargets without readers (its walks and direct checks still run). */
    aot_phase("fork child", aot_emulated() ? 0 : 2, g_lib_loaded, aot_scaled(400, 40), 4, -1, NULL);
    fprintf(stderr, "[fork child] %s (%ld failures)\n", aot_failures == before ? "passed" : "FAILED", aot_failures - before);
    fflush(stderr);
    _exit(aot_failures == before ? 0 : 1);
  }
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) {
    aot_failf("waitpid: %s", strerror(errno));
    return;
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    aot_failf("the fork child failed: %s %d", WIFEXITED(status) ? "exit status" : "signal",
              WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? WTERMSIG(status) : -1);
  long before = aot_failures;
  aot_walk("parent after the fork child exited", 1);
  aot_check_direct("parent after the fork child exited");
  fprintf(stderr, "parent after the fork child: state, results and sites %s\n",
          aot_failures == before ? "unchanged" : "CHANGED (see above)");

  /* A child of the raw fork system call (no atfork handlers ran): patchcall may refuse
   * (FORKED_CHILD) or patch the child's own copy, never the parent's text. The child only
   * makes system calls and patchcall calls (the readers may hold stdio locks). */
#ifdef SYS_fork
  pid = (pid_t)syscall(SYS_fork);
#else /* (aarch64 has only clone: with SIGCHLD alone it is fork) */
  pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
#endif
  if (pid < 0) {
    aot_failf("fork system call: %s", strerror(errno));
    return;
  }
  if (pid == 0) {
    int g = 0, want = !g_current[0];
    int code = 0;
    int rc = g_key[g]->set(want);
    if (rc == PATCHCALL_OK) {
      if (aot_exe_desc.key_observers[g]() != (want ? 3 : 0)) code = 3;
      int c = 0, target = g_current[AOT_KEYS + c] == 1 ? 2 : 1;
      if (g_call[c]->set(aot_target_of(c, target), 0) != PATCHCALL_OK) code = 5;
      else if (aot_decode_result(0, 9, aot_exe_desc.call_observers_call[c](9)) != target) code = 6;
    } else if (rc != PATCHCALL_E_FORKED_CHILD) {
      code = 4;
    } else {
      code = 0x10;
    }
    _exit(code);
  }
  if (waitpid(pid, &status, 0) != pid) {
    aot_failf("waitpid: %s", strerror(errno));
    return;
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  static const char* const what[] = {"", "", "", "its key flip did not change its own branches",
                                     "patchcall_static_key_set returned neither OK nor FORKED_CHILD",
                                     "its static call update failed", "its retargeted call reached another target"};
  if (code == 0 || code == 0x10)
    fprintf(stderr, "raw fork child: patchcall %s\n",
            code == 0 ? "patched the child's own copy" : "refused the update with FORKED_CHILD");
  else
    aot_failf("the raw fork child failed: %s", code > 0 && code < 7 ? what[code] : "it crashed or hung");
  before = aot_failures;
  aot_walk("parent after the raw fork child exited", 1);
  aot_check_direct("parent after the raw fork child exited");
  fprintf(stderr, "parent after the raw fork child: state, results and sites %s\n",
          aot_failures == before ? "unchanged" : "CHANGED (see above)");
}

/* ---- dlopen / dlclose --------------------------------------------------------------------- */
static void aot_publish_reset(int o, int value);
static void aot_register_module(const struct aot_module_desc* d) {
  int is_exe = d == &aot_exe_desc;
  for (int i = 0; i < d->nkeys; i++) {
    int g = d->first_key + i;
    g_key[g] = &d->keys[i];
    if (is_exe) g_initial[g] = g_current[g] = d->keys[i].default_true;
    else aot_publish_reset(g, d->keys[i].default_true);
  }
  for (int i = 0; i < d->ncalls; i++) {
    int g = d->first_call + i;
    int code = d->calls[i].is_void ? d->void_initial_code : d->int_initial_code;
    g_call[g] = &d->calls[i];
    if (is_exe) g_initial[AOT_KEYS + g] = g_current[AOT_KEYS + g] = code;
    else aot_publish_reset(AOT_KEYS + g, code);
  }
  int base = d == &aot_exe_desc ? 1 : 1 + AOT_TARGETS_PER_MODULE;
  for (int i = 0; i < AOT_TARGETS_PER_MODULE; i++) {
    g_int_target[base + i] = d->int_targets[i];
    g_void_target[base + i] = d->void_targets[i];
  }
}

static int aot_is_plain_object = 7;

static void aot_bad_input_after_dlclose(struct patchcall_static_key* lib_key, struct patchcall_static_key* lib_key_last,
                                        struct patchcall_static_call* lib_call) {
  const void* exe_int_target = g_int_target[1];
  AOT_CHECK_CODE(patchcall_static_key_set(lib_key, 1), PATCHCALL_E_UNKNOWN_KEY);
  AOT_CHECK(patchcall_last_error_message()[0] != 0, "an UNKNOWN_KEY error leaves a message");
  AOT_CHECK_CODE(patchcall_static_key_set(lib_key_last, 0), PATCHCALL_E_UNKNOWN_KEY);
  size_t count = 99;
  AOT_CHECK_CODE(patchcall_static_key_branches(lib_key, &count), PATCHCALL_E_UNKNOWN_KEY);
  AOT_CHECK(count == 0, "branches of an unknown key: count %zu, expected 0", count);
  AOT_CHECK_CODE(patchcall_static_call_set(lib_call, exe_int_target), PATCHCALL_E_UNKNOWN_KEY);
  const void* t = (const void*)1;
  AOT_CHECK_CODE(patchcall_static_call_target(lib_call, &t), PATCHCALL_E_UNKNOWN_KEY);
  AOT_CHECK_CODE(patchcall_static_module_status(lib_key), PATCHCALL_E_UNKNOWN_KEY);
  AOT_CHECK_CODE(patchcall_static_module_status(lib_call), PATCHCALL_E_UNKNOWN_KEY);

  /* Addresses that are not static calls / keys at all. */
  AOT_CHECK_CODE(patchcall_static_call_set((struct patchcall_static_call*)(void*)&aot_is_plain_object, exe_int_target),
                 PATCHCALL_E_UNKNOWN_KEY);
  AOT_CHECK(patchcall_last_error_message()[0] != 0, "an UNKNOWN_KEY error leaves a message");
  AOT_CHECK_CODE(patchcall_static_call_set((struct patchcall_static_call*)(void*)g_key[0]->key, exe_int_target),
                 PATCHCALL_E_UNKNOWN_KEY); /* a key is not a call */
  AOT_CHECK_CODE(patchcall_static_call_set((struct patchcall_static_call*)(uintptr_t)exe_int_target, exe_int_target),
                 PATCHCALL_E_UNKNOWN_KEY); /* a function is not a call */
  AOT_CHECK_CODE(patchcall_static_call_set((struct patchcall_static_call*)((char*)g_call[0]->call + 8), exe_int_target),
                 PATCHCALL_E_UNKNOWN_KEY); /* inside a call object */
  AOT_CHECK_CODE(patchcall_static_key_set((struct patchcall_static_key*)(void*)g_call[0]->call, 1),
                 PATCHCALL_E_UNKNOWN_KEY); /* a call is not a key */
  /* A target inside the call's own trampoline would make every call spin: refused, the target
   * unchanged. */
  const void* before = NULL;
  AOT_CHECK_CODE(patchcall_static_call_target(g_call[0]->call, &before), PATCHCALL_OK);
  const char* tramp = (const char*)g_call[0]->call->trampoline;
  AOT_CHECK_CODE(patchcall_static_call_set(g_call[0]->call, tramp), PATCHCALL_E_INVALID_ARGUMENT);
  AOT_CHECK(strstr(patchcall_last_error_message(), "own trampoline") != NULL, "message: %s", patchcall_last_error_message());
  AOT_CHECK_CODE(patchcall_static_call_set(g_call[0]->call, tramp + PATCHCALL_SCT_INDIRECT), PATCHCALL_E_INVALID_ARGUMENT);
  const void* after = NULL;
  AOT_CHECK_CODE(patchcall_static_call_target(g_call[0]->call, &after), PATCHCALL_OK);
  AOT_CHECK(after == before, "a refused self-target changed the target: %p -> %p", before, after);
  AOT_CHECK_CODE(patchcall_static_key_set((struct patchcall_static_key*)((char*)g_key[0]->key + 4), 1),
                 PATCHCALL_E_UNKNOWN_KEY); /* inside a key */
  AOT_CHECK_CODE(patchcall_static_key_set((struct patchcall_static_key*)(void*)&aot_is_plain_object, 1),
                 PATCHCALL_E_UNKNOWN_KEY);
  int null_rc = patchcall_static_key_set(NULL, 1);
  AOT_CHECK(null_rc == PATCHCALL_E_UNKNOWN_KEY || null_rc == PATCHCALL_E_INVALID_ARGUMENT,
            "patchcall_static_key_set(NULL) returned %d (%s)", null_rc, patchcall_strerror(null_rc));
  null_rc = patchcall_static_call_set(NULL, exe_int_target);
  AOT_CHECK(null_rc == PATCHCALL_E_UNKNOWN_KEY || null_rc == PATCHCALL_E_INVALID_ARGUMENT,
            "patchcall_static_call_set(NULL) returned %d (%s)", null_rc, patchcall_strerror(null_rc));

  /* Any nonzero state enables (no reader runs now; the state is restored). */
  {
    int g = AOT_EXE_KEYS - 1;
    AOT_CHECK_CODE(patchcall_static_key_set(g_key[g]->key, 5), PATCHCALL_OK);
    int bits = aot_exe_desc.key_observers[g]();
    AOT_CHECK(bits == 3, "key %s set to 5: branches %d, expected 3 (enabled)", g_key[g]->name, bits);
    AOT_CHECK_CODE(patchcall_static_key_set(g_key[g]->key, g_current[g]), PATCHCALL_OK);
  }

  /* patchcall_static_module_status */
  AOT_CHECK_CODE(patchcall_static_module_status(g_key[0]->key), PATCHCALL_OK);
  AOT_CHECK_CODE(patchcall_static_module_status(g_call[0]->call), PATCHCALL_OK);
  AOT_CHECK_CODE(patchcall_static_module_status((const void*)(uintptr_t)&aot_describe_exe), PATCHCALL_OK);
  AOT_CHECK_CODE(patchcall_static_module_status(&aot_is_plain_object), PATCHCALL_OK); /* any address inside */
  int on_stack = 0;
  AOT_CHECK_CODE(patchcall_static_module_status(&on_stack), PATCHCALL_E_UNKNOWN_KEY);
  void* libc_function = dlsym(RTLD_DEFAULT, "getpid");
  if (libc_function) /* libc has no static keys: it registered nothing */
    AOT_CHECK_CODE(patchcall_static_module_status(libc_function), PATCHCALL_E_UNKNOWN_KEY);
}

struct aot_unloaded_walk {
  uintptr_t lo, hi;
  long found;
};
static int aot_visit_unloaded(void* user, const patchcall_static_site_info* s) {
  struct aot_unloaded_walk* u = (struct aot_unloaded_walk*)user;
  uintptr_t a = (uintptr_t)s->address, o = (uintptr_t)s->object;
  if ((a >= u->lo && a < u->hi) || (o >= u->lo && o < u->hi)) {
    if (u->found++ < 5)
      aot_failf("after dlclose: site %p (kind %d, object %p) of the unloaded library is still reported", s->address,
                s->kind, s->object);
  }
  return 0;
}

static int aot_load_library(const char* path, const char* where) {
  g_lib_handle = dlopen(path, (g_lazy ? RTLD_LAZY : RTLD_NOW) | RTLD_LOCAL);
  if (!g_lib_handle) {
    aot_failf("%s: dlopen(%s): %s", where, path, dlerror());
    return 0;
  }
  aot_describe_fn describe = (aot_describe_fn)(uintptr_t)dlsym(g_lib_handle, "aot_stress_lib_describe");
  if (!describe) {
    aot_failf("%s: dlsym(aot_stress_lib_describe): %s", where, dlerror());
    return 0;
  }
  g_lib = describe();
  aot_register_module(g_lib);
  g_lib_loaded = 1;
  g_lib_module.name = "library";
  if (!aot_module_span((const void*)(uintptr_t)describe, &g_lib_module.lo, &g_lib_module.hi))
    aot_failf("%s: dl_iterate_phdr found no module for the library", where);
  g_lib_module.jumps_begin = g_lib->jumps_begin;
  g_lib_module.jumps_end = g_lib->jumps_end;
  g_lib_module.sites_begin = g_lib->sites_begin;
  g_lib_module.sites_end = g_lib->sites_end;
  AOT_CHECK_CODE(patchcall_static_module_status(g_key[AOT_EXE_KEYS]->key), PATCHCALL_OK);
  AOT_CHECK_CODE(patchcall_static_module_status((const void*)(uintptr_t)describe), PATCHCALL_OK);
  for (int g = AOT_EXE_CALLS; g < AOT_CALLS; g++) {
    const void* field = g_call[g]->call->target;
    AOT_CHECK(field == aot_target_of(g, g_current[AOT_KEYS + g]), "%s: static call %s starts at %p", where,
              g_call[g]->name, field);
  }
  aot_check_direct(where);
  aot_walk(where, 1);
  return 1;
}

/* Returns 1 when the library is really gone (and the checks of an unloaded library ran). */
static int aot_unload_library(const char* path, const char* where, int bad_input) {
  /* No call of the executable may keep a target in the library. */
  for (int g = 0; g < AOT_EXE_CALLS; g++)
    if (g_current[AOT_KEYS + g] > AOT_TARGETS_PER_MODULE) aot_apply(AOT_KEYS + g, 1 + (int)aot_random(AOT_TARGETS_PER_MODULE));
  struct patchcall_static_key* lib_key = g_key[AOT_EXE_KEYS]->key;
  struct patchcall_static_key* lib_key_last = g_key[AOT_KEYS - 1]->key;
  struct patchcall_static_call* lib_call = g_call[AOT_EXE_CALLS]->call;
  struct aot_unloaded_walk unloaded;
  memset(&unloaded, 0, sizeof unloaded);
  unloaded.lo = g_lib_module.lo;
  unloaded.hi = g_lib_module.hi;
  g_lib_loaded = 0;
  if (dlclose(g_lib_handle) != 0) aot_failf("%s: dlclose: %s", where, dlerror());
  void* again = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  if (again) {
    aot_failf("%s: the library is still loaded after dlclose: the unload checks cannot run", where);
    dlclose(again);
    return 0;
  }
  AOT_CHECK_CODE(patchcall_static_sites_each(aot_visit_unloaded, &unloaded), 0);
  AOT_CHECK(unloaded.found == 0, "%s: %ld sites of the unloaded library are still reported", where, unloaded.found);
  AOT_CHECK_CODE(patchcall_static_key_set(lib_key, 1), PATCHCALL_E_UNKNOWN_KEY);
  AOT_CHECK_CODE(patchcall_static_module_status(lib_key), PATCHCALL_E_UNKNOWN_KEY);
  aot_check_direct(where);
  aot_walk(where, 1);
  if (bad_input) aot_bad_input_after_dlclose(lib_key, lib_key_last, lib_call);
  return 1;
}

/* ---- main ------------------------------------------------------------------------------------ */
int main(int argc, char** argv) {
  const char* lib_path = NULL;
  const char* churn_path = NULL;
  int changes = 10000, readers = 4, walk_every = 5, do_fork = 0, lie_at = -1;
  const char* scale_arg = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--lib") && i + 1 < argc) lib_path = argv[++i];
    else if (!strcmp(argv[i], "--churn-lib") && i + 1 < argc) churn_path = argv[++i];
    else if (!strcmp(argv[i], "--changes") && i + 1 < argc) changes = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--readers") && i + 1 < argc) readers = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--walk-every") && i + 1 < argc) walk_every = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc) g_rng = strtoull(argv[++i], NULL, 0) | 1;
    else if (!strcmp(argv[i], "--fork")) do_fork = 1;
    else if (!strcmp(argv[i], "--lazy")) g_lazy = 1;
    else if (!strcmp(argv[i], "--fork-storm") && i + 1 < argc) g_fork_storm = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--inject-lie") && i + 1 < argc) lie_at = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--scale") && i + 1 < argc) scale_arg = argv[++i];
    else {
      fprintf(stderr, "usage: %s --lib PATH [--churn-lib PATH] [--changes N] [--readers R] [--walk-every K] [--seed S] [--fork] [--fork-storm N] [--lazy] [--scale F] [--inject-lie CHANGE]\n", argv[0]);
      return 2;
    }
  }
  g_scale = scale_arg ? strtod(scale_arg, NULL) : aot_test_scale();
  if (!(g_scale > 0)) {
    fprintf(stderr, "%s: the scale (--scale or PATCHCALL_TEST_SCALE) must be a positive number\n", argv[0]);
    return 2;
  }
  changes = aot_scaled(changes, 40);
  g_fork_storm = aot_scaled(g_fork_storm, 3);
  if (!lib_path || walk_every < 1) {
    fprintf(stderr, "%s: --lib PATH is required\n", argv[0]);
    return 2;
  }
  fprintf(stderr, "static_aot_stress (%s, %s): %d changes, %d readers, a site walk every %d changes, seed %#llx, scale %g%s\n",
#ifdef __cplusplus
          "C++",
#else
          "C",
#endif
#ifdef __OPTIMIZE__
          "optimized",
#else
          "-O0",
#endif
          changes, readers, walk_every, (unsigned long long)g_rng, g_scale, do_fork ? ", fork test" : "");
  double t0 = aot_now();
  g_log_capacity = changes + 20000;
  g_log = (struct aot_change*)calloc((size_t)g_log_capacity, sizeof *g_log);
  g_int_target[0] = (const void*)(uintptr_t)&patchcall_static_call_return0;

  aot_describe_exe();
  aot_register_module(&aot_exe_desc);
  g_exe_module.name = "executable";
  if (!aot_module_span((const void*)(uintptr_t)&aot_describe_exe, &g_exe_module.lo, &g_exe_module.hi))
    aot_failf("dl_iterate_phdr found no module for the executable");
  g_exe_module.jumps_begin = aot_exe_desc.jumps_begin;
  g_exe_module.jumps_end = aot_exe_desc.jumps_end;
  g_exe_module.sites_begin = aot_exe_desc.sites_begin;
  g_exe_module.sites_end = aot_exe_desc.sites_end;
  AOT_CHECK_CODE(patchcall_static_module_status(g_key[0]->key), PATCHCALL_OK);
  for (int g = 0; g < AOT_EXE_CALLS; g++) {
    const void* field = g_call[g]->call->target;
    AOT_CHECK(field == aot_target_of(g, g_initial[AOT_KEYS + g]), "static call %s starts at %p", g_call[g]->name, field);
  }
  aot_check_direct("startup");
  aot_print_counts("startup (executable only)");

  /* Changes before the library exists: its branches on our keys and its calls of our static
   * calls must start in the current state, not the compiled one. */
  aot_phase("before dlopen", 2, 0, aot_scaled(300, 40), walk_every, -1, NULL);

  if (!aot_load_library(lib_path, "after dlopen")) return 1;
  aot_print_counts("after dlopen");
  if (lie_at >= 0) { /* (a position inside this phase at any scale) */
    int at = aot_scaled(lie_at, 0);
    g_lie_from = g_changes + 1 + (at + 10 < changes ? at : changes > 10 ? changes - 10 : 0);
  }
  aot_phase("with the library", readers, 1, changes, walk_every, do_fork ? changes / 2 : -1, NULL);
  if (aot_unload_library(lib_path, "after dlclose", 1)) {
    aot_print_counts("after dlclose");
    aot_phase("after dlclose", 2, 0, aot_scaled(500, 40), walk_every, -1, NULL);
  }

  /* The library again: its objects start over, its branches on our keys follow their state. */
  if (aot_load_library(lib_path, "after the second dlopen")) {
    aot_phase("with the library loaded again", 2, 1, aot_scaled(1000, 40), walk_every, -1, NULL);
    aot_unload_library(lib_path, "after the second dlclose", 0);
  }
  if (churn_path) aot_phase("churn", 2, 0, aot_scaled(1000, 40), walk_every, -1, churn_path);

  fprintf(stderr, "static_aot_stress: %d changes, %ld site walks, %.2f s: %s (%ld failures)\n", g_changes, g_walks,
          aot_now() - t0, aot_failures == 0 ? "PASSED" : "FAILED", aot_failures);
  return aot_failures == 0 ? 0 : 1;
}
