/* C API, quiescence: offline/online under allocation failure, barrier deadlines, the polled
 * grace-period API and the allocation-free intrusive retire.
 *
 * This executable interposes operator new (to fail it on request, as capi_errors_test does)
 * and malloc/calloc/realloc (to count allocations on the calling thread). Both are skipped
 * under sanitizers, which own the allocator. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "capi_check.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(PATCHCALL_TEST_HOOKS)
#define CAPI_OWNS_ALLOCATOR 0
#else
#define CAPI_OWNS_ALLOCATOR 1
static _Thread_local int fail_new = 0;      /* fail this thread's next N operator new calls */
static _Thread_local int count_allocs = 0;  /* count this thread's allocations while set */
static _Thread_local long allocs = 0;
void patchcall_testing_throw_bad_alloc(void); /* runtime/c_api.cpp, PATCHCALL_TEST_HOOKS builds */
extern void* __libc_malloc(size_t);
extern void* __libc_calloc(size_t, size_t);
extern void* __libc_realloc(void*, size_t);

void* malloc(size_t n) {
  if (count_allocs) allocs++;
  return __libc_malloc(n);
}
void* calloc(size_t n, size_t size) {
  if (count_allocs) allocs++;
  return __libc_calloc(n, size);
}
void* realloc(void* p, size_t n) {
  if (count_allocs) allocs++;
  return __libc_realloc(p, n);
}
/* operator new(size_t): libstdc++'s calls malloc (counted above); here it can also fail. */
void* _Znwm(size_t size);
void* _Znwm(size_t size) {
  if (fail_new > 0) {
    fail_new--;
    patchcall_testing_throw_bad_alloc();
  }
  void* p = malloc(size == 0 ? 1 : size);
  if (p == NULL) patchcall_testing_throw_bad_alloc();
  return p;
}
#endif

__attribute__((unused)) static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static patchcall_runtime* manual_runtime(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)4 << 20;
  o.background_reclaimer = 0;
  o.grace_deadline_ms = 5000;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  return rt;
}

/* goOffline/goOnline are noexcept: their error messages must not terminate the process when
 * building them runs out of memory (they used to std::terminate here). */
static void offline_online_errors_survive_allocation_failure(void) {
#if CAPI_OWNS_ALLOCATOR
  patchcall_runtime* rt = manual_runtime();
  fail_new = 1;
  CHECK_CODE(patchcall_offline(), PATCHCALL_E_NOT_REGISTERED);
  CHECK_MESSAGE_HAS("not registered");
  fail_new = 1;
  CHECK_CODE(patchcall_online(), PATCHCALL_E_NOT_REGISTERED);
  fail_new = 0;
  patchcall_thread* self = NULL;
  CHECK_CODE(patchcall_thread_register(rt, "capi-oom-thread-with-a-long-name", &self), PATCHCALL_OK);
  fail_new = 1;
  CHECK_CODE(patchcall_online(), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("already online");
  fail_new = 0;
  CHECK_CODE(patchcall_offline(), PATCHCALL_OK);
  fail_new = 1;
  CHECK_CODE(patchcall_offline(), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("already offline");
  fail_new = 0;
  /* With memory, the full message names the thread. */
  CHECK_CODE(patchcall_offline(), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("capi-oom-thread-with-a-long-name");
  CHECK_CODE(patchcall_online(), PATCHCALL_OK);
  CHECK_CODE(patchcall_thread_unregister(self), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
#else
  fprintf(stderr, "  (skipped: the sanitizer owns operator new)\n");
#endif
}

int main(void) {
  alarm(60); /* a wait that is not bounded fails the test instead of hanging it */
  RUN(offline_online_errors_survive_allocation_failure);
  return capi_finish("capi_quiescence_test");
}
