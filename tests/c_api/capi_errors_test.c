/* C API: every error code of patchcall_error comes back from the C function that should
 * report it, with a message. The test ends by checking that each code was seen here
 * (EMIT_FAILED is reported only by the C++ jit/ emitters, which the C API does not wrap;
 * SYNC_UNSUPPORTED needs a seccomp child: capi_runtime_test).
 *
 * OUT_OF_MEMORY: this executable interposes operator new (plain and nothrow) for one thread
 * on request: the plain one throws std::bad_alloc (through a test hook of the library, as C
 * cannot throw) and the nothrow one returns NULL, so both ways an allocation failure reaches
 * the C API are exercised. Skipped under sanitizers, which own operator new. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capi_check.h"
#include "patchcall/static_key.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(PATCHCALL_TEST_HOOKS)
#define CAPI_CAN_FAIL_NEW 0
#else
#define CAPI_CAN_FAIL_NEW 1
/* Fail this thread's next `fail_new` operator new calls. One per C API call: the library's
 * own out-of-memory handler allocates its message, and a second failure there ends in
 * std::terminate (reported in /tmp/patchcall-bugs.md: catchOutOfMemory). */
static _Thread_local int fail_new = 0;
static atomic_int new_failures = 0;
void patchcall_testing_throw_bad_alloc(void); /* runtime/c_api.cpp, PATCHCALL_TEST_HOOKS builds */
typedef void* (*capi_new_fn)(size_t);
typedef void* (*capi_new_nothrow_fn)(size_t, const void*);

static void* next_symbol(const char* name) {
  void* sym = dlsym(RTLD_NEXT, name);
  if (sym == NULL) {
    fprintf(stderr, "capi_errors_test: dlsym(RTLD_NEXT, %s) failed\n", name);
    abort();
  }
  return sym;
}

/* operator new(size_t) and operator new(size_t, const std::nothrow_t&) */
void* _Znwm(size_t size);
void* _ZnwmRKSt9nothrow_t(size_t size, const void* tag);
void* _Znwm(size_t size) {
  static capi_new_fn next = NULL;
  if (fail_new > 0) {
    fail_new--;
    atomic_fetch_add(&new_failures, 1);
    patchcall_testing_throw_bad_alloc();
  }
  if (next == NULL) next = (capi_new_fn)(uintptr_t)next_symbol("_Znwm");
  return next(size);
}
void* _ZnwmRKSt9nothrow_t(size_t size, const void* tag) {
  static capi_new_nothrow_fn next = NULL;
  if (fail_new > 0) {
    fail_new--;
    atomic_fetch_add(&new_failures, 1);
    return NULL;
  }
  if (next == NULL) next = (capi_new_nothrow_fn)(uintptr_t)next_symbol("_ZnwmRKSt9nothrow_t");
  return next(size, tag);
}
#endif

/* ---- NULL_TARGET, MISALIGNED_TARGET, OUT_OF_RANGE, UNKNOWN_KEY, RETIRED_TARGET -------------- */

static void bad_targets(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)1 << 20;
  o.target_alignment = 16;
  o.allow_veneers = 0;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_key key = 0;
  CHECK_CODE(patchcall_key_create(rt, NULL, "null", &key), PATCHCALL_E_NULL_TARGET);
  CHECK(key == 0);
  CHECK_CODE(patchcall_key_create(rt, (const uint8_t*)PATCHCALL_FN(capi_target_one) + 1, "odd", &key),
             PATCHCALL_E_MISALIGNED_TARGET);
  CHECK_MESSAGE_HAS("16-byte aligned");
  patchcall_arena_info a;
  CHECK_CODE(patchcall_arena_info_get(rt, &a), PATCHCALL_OK);
  const void* far = (const void*)(((uintptr_t)a.rx_base + ((uintptr_t)1 << 40)) & ~(uintptr_t)15);
  CHECK_CODE(patchcall_key_create(rt, far, "far", &key), PATCHCALL_E_OUT_OF_RANGE);
  CHECK_MESSAGE_HAS("veneers are disabled");

  /* An aligned target for the rest (functions are usually 16-byte aligned at -O2). */
  const void* target = PATCHCALL_FN(capi_target_two);
  if (((uintptr_t)target & 15) != 0) target = PATCHCALL_FN(capi_target_three);
  CHECK_CODE(patchcall_key_create(rt, target, "ok", &key), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update(rt, key, NULL, NULL), PATCHCALL_E_NULL_TARGET);
  CHECK_CODE(patchcall_key_update(rt, key, far, NULL), PATCHCALL_E_OUT_OF_RANGE);
  CHECK_CODE(patchcall_key_update(rt, key + 100, target, NULL), PATCHCALL_E_UNKNOWN_KEY);
  CHECK_MESSAGE_HAS("not a live key");
  /* patchcall's own memory: the trampoline slot starts with the key's target cell (16-byte
   * aligned, so alignment does not refuse it); the safepoint stub's page. */
  const void* tramp = NULL;
  CHECK_CODE(patchcall_key_trampoline(rt, key, &tramp), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update(rt, key, (const uint8_t*)tramp - CAPI_TRAMPOLINE_CELL_OFFSET, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("trampoline slot");
  patchcall_update_entry cell_entry = {key, (const uint8_t*)tramp - CAPI_TRAMPOLINE_CELL_OFFSET};
  CHECK_CODE(patchcall_key_update_batch(rt, &cell_entry, 1), PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_key page_key;
  CHECK_CODE(patchcall_key_create(rt, a.rx_base, "runtime page", &page_key), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("runtime page");

  patchcall_blob blob;
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, NULL, 0, &blob), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, blob), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update(rt, key, blob.code, NULL), PATCHCALL_E_RETIRED_TARGET);
  CHECK_MESSAGE_HAS("lies in"); /* "a retired blob" or, once reclaimed, "arena memory that holds no live blob" */
  patchcall_runtime_destroy(rt);
}

/* ---- ARENA_EXHAUSTED, TOO_MANY_SITES ------------------------------------------------------- */

static void resource_limits(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)64 << 10;
  o.max_sites = 1;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), NULL, &key), PATCHCALL_OK);
  patchcall_site_spec two[2] = {{CAPI_DIRECT_SITE_OFFSET, key, PATCHCALL_SITE_DIRECT},
                                {CAPI_DIRECT_SITE_OFFSET + 64, key, PATCHCALL_SITE_DIRECT}};
  uint8_t code[128];
  memset(code, CAPI_FILL_BYTE, sizeof code);
  memcpy(code, capi_direct_code, CAPI_DIRECT_CODE_SIZE);
  memcpy(code + 64, capi_direct_code, CAPI_DIRECT_CODE_SIZE);
  patchcall_blob blob;
  CHECK_CODE(patchcall_code_install(rt, code, sizeof code, two, 2, &blob), PATCHCALL_E_TOO_MANY_SITES);
  CHECK_MESSAGE_HAS("maxSites");
  CHECK_CODE(patchcall_code_install(rt, code, sizeof code, two, 1, &blob), PATCHCALL_OK);

  static uint8_t big[4096];
  memset(big, CAPI_FILL_BYTE, sizeof big);
  int installed = 0, code_seen = PATCHCALL_OK;
  for (int i = 0; i < 64 && code_seen == PATCHCALL_OK; ++i) {
    code_seen = patchcall_code_install(rt, big, sizeof big, NULL, 0, &blob);
    if (code_seen == PATCHCALL_OK) installed++;
  }
  CHECK_CODE(code_seen, PATCHCALL_E_ARENA_EXHAUSTED);
  CHECK_MESSAGE_HAS("exhausted");
  CHECK(installed > 0 && installed < 16);
  patchcall_reservation r;
  CHECK_CODE(patchcall_code_reserve(rt, sizeof big, &r), PATCHCALL_E_ARENA_EXHAUSTED);
  patchcall_runtime_destroy(rt);
}

/* ---- REENTRANT_UPDATE: a patch observer may not update keys --------------------------------- */

struct observer_state {
  patchcall_runtime* rt;
  patchcall_key other;
  int events, nested_code;
};
static struct observer_state observed;
static void observe(void* user, const patchcall_patch_event* e) {
  struct observer_state* s = user;
  s->events++;
  if (e->site != NULL && s->rt != NULL && s->nested_code == -1) {
    s->nested_code = patchcall_key_update(s->rt, s->other, PATCHCALL_FN(capi_target_three), NULL);
  }
}

static void reentrant_update_from_observer(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)1 << 20;
  o.patch_observer = observe;
  o.patch_observer_user = &observed;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), NULL, &key), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), NULL, &observed.other), PATCHCALL_OK);
  observed.rt = rt;
  observed.nested_code = -1;
  CHECK_CODE(patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_two), NULL), PATCHCALL_OK);
  CHECK(observed.events >= 1);
  CHECK_CODE(observed.nested_code, PATCHCALL_E_REENTRANT_UPDATE);
  const void* t = NULL;
  CHECK_CODE(patchcall_key_target(rt, observed.other, &t), PATCHCALL_OK);
  CHECK(t == PATCHCALL_FN(capi_target_one)); /* the nested update did nothing */
  observed.rt = NULL;
  patchcall_runtime_destroy(rt);
}

/* ---- MAP_FAILED: the memfd cannot grow past RLIMIT_FSIZE ------------------------------------ */

static void arena_mapping_failure(void) {
  struct rlimit saved;
  CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  struct rlimit low = saved;
  low.rlim_cur = (rlim_t)1 << 20;
  void (*previous)(int) = signal(SIGXFSZ, SIG_IGN);
  CHECK(setrlimit(RLIMIT_FSIZE, &low) == 0);
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)16 << 20;
  patchcall_runtime* rt = (patchcall_runtime*)1;
  int code = patchcall_runtime_create(&o, &rt);
  CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
  signal(SIGXFSZ, previous);
  CHECK_CODE(code, PATCHCALL_E_MAP_FAILED);
  CHECK_MESSAGE_HAS("ftruncate");
  CHECK(rt == NULL);
}

/* ---- OUT_OF_MEMORY ------------------------------------------------------------------------- */

static void allocation_failures(void) {
#if CAPI_CAN_FAIL_NEW
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)1 << 20;
  o.background_reclaimer = 0;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_thread* self = (patchcall_thread*)1;
  patchcall_runtime* second = (patchcall_runtime*)1;

  /* The unknown-key error path builds a std::string: operator new throws bad_alloc. */
  fail_new = 1;
  int update = patchcall_key_update(rt, 31337, PATCHCALL_FN(capi_target_one), NULL);
  char update_message[256];
  snprintf(update_message, sizeof update_message, "%s", patchcall_last_error_message());
  /* The C API allocates the thread handle with new (std::nothrow): NULL. */
  fail_new = 1;
  int reg = patchcall_thread_register(rt, "capi-oom", &self);
  /* Runtime::create allocates its state with operator new. */
  fail_new = 1;
  int create = patchcall_runtime_create(&o, &second);
  char create_message[256];
  snprintf(create_message, sizeof create_message, "%s", patchcall_last_error_message());
  fail_new = 0;

  CHECK_CODE(update, PATCHCALL_E_OUT_OF_MEMORY);
  CHECK(strstr(update_message, "out of memory") != NULL);
  CHECK_CODE(reg, PATCHCALL_E_OUT_OF_MEMORY);
  CHECK_CODE(create, PATCHCALL_E_OUT_OF_MEMORY);
  CHECK(create_message[0] != 0); /* which allocation failed is the library's business */
  CHECK(self == NULL && second == NULL);
  CHECK(atomic_load(&new_failures) >= 3);
  CHECK(patchcall_thread_is_registered() == 0);
  /* Everything works again afterwards: no lock or state was left behind. */
  CHECK_CODE(patchcall_thread_register(rt, "capi-after-oom", &self), PATCHCALL_OK);
  CHECK_CODE(patchcall_thread_unregister(self), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update(rt, 31337, PATCHCALL_FN(capi_target_one), NULL), PATCHCALL_E_UNKNOWN_KEY);
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), NULL, &key), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_two), NULL), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
#else
  fprintf(stderr, "  (sanitizer or hook-less build: operator new not interposed; OUT_OF_MEMORY not exercised)\n");
#endif
}

/* ---- TOO_MANY_THREADS ------------------------------------------------------------------------ */

static void* register_one_too_many(void* arg) {
  patchcall_thread* h = NULL;
  CHECK_CODE(patchcall_thread_register(arg, "capi-second", &h), PATCHCALL_E_TOO_MANY_THREADS);
  CHECK_MESSAGE_HAS("capi-second");
  return NULL;
}

static void thread_limit(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)1 << 20;
  o.max_threads = 1;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_thread* self = NULL;
  CHECK_CODE(patchcall_thread_register(rt, "capi-first", &self), PATCHCALL_OK);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, register_one_too_many, rt) == 0);
  pthread_join(t, NULL);
  CHECK_CODE(patchcall_thread_unregister(self), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

/* ---- the rest: each with the C function that reports it ------------------------------------ */

static atomic_int deadlock_code = -1;
static patchcall_runtime* deadlock_rt;
static void barrier_inside_callback(void* user) {
  (void)user;
  atomic_store(&deadlock_code, patchcall_barrier(deadlock_rt, 100));
}

struct blocker {
  patchcall_runtime* rt;
  atomic_int state; /* 1 registered, 2 release */
};
static void* block_grace_periods(void* arg) {
  struct blocker* b = arg;
  patchcall_thread* h = NULL;
  CHECK_CODE(patchcall_thread_register(b->rt, "capi-blocker", &h), PATCHCALL_OK);
  atomic_store(&b->state, 1);
  while (atomic_load(&b->state) != 2) sched_yield();
  CHECK_CODE(patchcall_thread_unregister(h), PATCHCALL_OK);
  return NULL;
}

static void remaining_codes(void) {
  patchcall_runtime* rt = capi_new_runtime();
  /* NOT_REGISTERED */
  CHECK_CODE(patchcall_offline(), PATCHCALL_E_NOT_REGISTERED);
  CHECK_MESSAGE_HAS("not registered");
  /* INVALID_ARGUMENT */
  CHECK_CODE(patchcall_key_create(NULL, PATCHCALL_FN(capi_target_one), NULL, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("rt is NULL");
  /* UNKNOWN_SITE, UNSUPPORTED_SITE */
  patchcall_site_info info;
  CHECK_CODE(patchcall_site_info_get(rt, PATCHCALL_FN(capi_target_one), &info), PATCHCALL_E_UNKNOWN_SITE);
  CHECK_MESSAGE_HAS("no call site is registered");
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "k", &key), PATCHCALL_OK);
  /* Writable data is never executable (.rodata can be: aarch64's ld puts it in the text segment). */
  static uint8_t not_code[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  CHECK_CODE(patchcall_foreign_site_register(rt, not_code, key), PATCHCALL_E_UNSUPPORTED_SITE);
  CHECK_MESSAGE_HAS("not executable"); /* .data */
  CHECK_CODE(patchcall_foreign_site_register(rt, (void*)(uintptr_t)capi_target_one, key), PATCHCALL_E_UNSUPPORTED_SITE);
  CHECK_MESSAGE_HAS("is not a " CAPI_CALL_NAME);
  /* STILL_TARGETED, DOUBLE_RETIRE */
  patchcall_blob blob = capi_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, key,
                                     PATCHCALL_SITE_DIRECT);
  CHECK_CODE(patchcall_key_destroy(rt, key), PATCHCALL_E_STILL_TARGETED);
  CHECK_MESSAGE_HAS("still bound");
  patchcall_key into;
  CHECK_CODE(patchcall_key_create(rt, blob.code, "into", &into), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, blob), PATCHCALL_E_STILL_TARGETED);
  CHECK_CODE(patchcall_key_update(rt, into, PATCHCALL_FN(capi_target_one), NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, blob), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, blob), PATCHCALL_E_DOUBLE_RETIRE);
  CHECK_MESSAGE_HAS("already retired");
  /* WOULD_DEADLOCK */
  deadlock_rt = rt;
  CHECK_CODE(patchcall_retire_callback(rt, barrier_inside_callback, NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_barrier(rt, 5000), PATCHCALL_OK);
  CHECK_CODE(atomic_load(&deadlock_code), PATCHCALL_E_WOULD_DEADLOCK);
  /* TIMEOUT: a registered thread that never passes a safepoint */
  struct blocker b = {rt, 0};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, block_grace_periods, &b) == 0);
  while (atomic_load(&b.state) != 1) sched_yield();
  CHECK_CODE(patchcall_synchronize(rt, 30), PATCHCALL_E_TIMEOUT);
  CHECK_MESSAGE_HAS("capi-blocker");
  atomic_store(&b.state, 2);
  pthread_join(t, NULL);
  patchcall_runtime_destroy(rt);
}

/* FORKED_CHILD: a child made by a raw fork system call (no atfork handlers, as with vfork
 * or clone) still maps the parent's code; the child reports the code it got as its exit
 * status. aarch64 has no fork system call: clone with SIGCHLD alone is fork. */
static void forked_child_without_atfork(void) {
  patchcall_runtime* rt = capi_new_runtime();
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "raw-fork", &key), PATCHCALL_OK);
  if (capi_emulated()) {
    /* Fork.ChildWithoutAtforkHandlersIsRefused skips there too. */
    fprintf(stderr, "  (under emulation: qemu-user ignores madvise(MADV_WIPEONFORK), which marks a raw fork's "
                    "child; FORKED_CHILD not exercised)\n");
    patchcall_runtime_destroy(rt);
    return;
  }
#ifdef SYS_fork
  long pid = syscall(SYS_fork);
#else
  long pid = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
#endif
  if (pid == 0) syscall(SYS_exit_group, patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_two), NULL));
  CHECK(pid > 0);
  int status = 0;
  CHECK(waitpid((pid_t)pid, &status, 0) == (pid_t)pid && WIFEXITED(status));
  CHECK_CODE(WEXITSTATUS(status), PATCHCALL_E_FORKED_CHILD);
  const void* target = NULL;
  CHECK_CODE(patchcall_key_target(rt, key, &target), PATCHCALL_OK);
  CHECK(target == PATCHCALL_FN(capi_target_one));
  patchcall_runtime_destroy(rt);
}

/* Absurd counts are refused before anything is read or allocated (they used to throw
 * std::length_error through the C boundary: std::terminate). */
static void absurd_counts_are_refused(void) {
  patchcall_runtime* rt = capi_new_runtime();
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "k", &key), PATCHCALL_OK);
  patchcall_update_entry one = {key, PATCHCALL_FN(capi_target_two)};
  CHECK_CODE(patchcall_key_update_batch(rt, &one, SIZE_MAX), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("maxKeys");
  patchcall_site_spec spec = {CAPI_DIRECT_SITE_OFFSET, key, PATCHCALL_SITE_DIRECT};
  patchcall_blob blob;
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, &spec, SIZE_MAX, &blob),
             PATCHCALL_E_TOO_MANY_SITES);
  CHECK_MESSAGE_HAS("maxSites");
  const void* target = NULL;
  CHECK_CODE(patchcall_key_target(rt, key, &target), PATCHCALL_OK);
  CHECK(target == PATCHCALL_FN(capi_target_one));
  patchcall_runtime_destroy(rt);
}

/* TABLE_FULL: this executable defines more AOT static keys than the table holds (65,536 bare
 * key objects in the keys section besides the named one), so its module is not registered and
 * its keys report why. */
PATCHCALL_DEFINE_STATIC_KEY_FALSE(capi_overflowing_key);
__asm__(".pushsection __patchcall_keys, \"aw\"\n\t.balign 16\n\t.rept 65536\n\t.long 0, 0\n\t.quad 0\n\t"
        ".endr\n\t.popsection");
static void table_full(void) {
  CHECK_CODE(patchcall_static_key_enable(&capi_overflowing_key), PATCHCALL_E_TABLE_FULL);
  CHECK_MESSAGE_HAS("do not fit the key table");
  CHECK_CODE(patchcall_static_module_status(&capi_overflowing_key), PATCHCALL_E_TABLE_FULL);
}

static void every_code_was_seen(void) {
  for (int code = 0; code < PATCHCALL_ERROR_COUNT; ++code) {
    if (code == PATCHCALL_E_EMIT_FAILED) continue;
    if (code == PATCHCALL_E_SYNC_UNSUPPORTED) continue; /* capi_runtime_test (seccomp child) */
    if (code == PATCHCALL_E_SYSTEM_ERROR) continue;     /* sigaction, mprotect: C++ tests (seccomp, hooks) */
    if (code == PATCHCALL_E_OUT_OF_MEMORY && !CAPI_CAN_FAIL_NEW) continue;
    if (code == PATCHCALL_E_FORKED_CHILD && capi_emulated()) continue; /* forked_child_without_atfork */
    if ((capi_codes_seen & (1u << code)) == 0) {
      fprintf(stderr, "error code %d (%s) was never returned by this test\n", code, patchcall_strerror(code));
      capi_failures++;
    }
  }
}

int main(void) {
  RUN(bad_targets);
  RUN(resource_limits);
  RUN(reentrant_update_from_observer);
  RUN(arena_mapping_failure);
  RUN(allocation_failures);
  RUN(thread_limit);
  RUN(remaining_codes);
  RUN(forked_child_without_atfork);
  RUN(absurd_counts_are_refused);
  RUN(table_full);
  RUN(every_code_was_seen);
  return capi_finish("CApi_ErrorCodes");
}
