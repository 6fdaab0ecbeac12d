/* C API, quiescence: offline/online under allocation failure, barrier deadlines, the polled
 * grace-period API and the allocation-free intrusive retire.
 *
 * This executable interposes operator new (to fail it on request, as capi_errors_test does)
 * and malloc/calloc/realloc (to count allocations on the calling thread). Both are skipped
 * under sanitizers, which own the allocator. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
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

static long long now_ms(void) {
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

/* switchStack is noexcept too: its refusals must not terminate when the message cannot be
 * built (they did, through std::string allocations). */
static void switch_stack_errors_survive_allocation_failure(void) {
#if CAPI_OWNS_ALLOCATOR
  patchcall_runtime* rt = manual_runtime();
  fail_new = 1;
  CHECK_CODE(patchcall_switch_stack(patchcall_stack_home()), PATCHCALL_E_NOT_REGISTERED);
  fail_new = 0;
  patchcall_thread* self = NULL;
  CHECK_CODE(patchcall_thread_register(rt, "capi-oom-switch", &self), PATCHCALL_OK);
  patchcall_stack bogus = {(const void*)rt, 7, 3};
  fail_new = 1;
  CHECK_CODE(patchcall_switch_stack(bogus), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("stack");
  fail_new = 0;
  CHECK_CODE(patchcall_switch_stack(bogus), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("not a stack registered");
  CHECK_CODE(patchcall_thread_unregister(self), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
#else
  fprintf(stderr, "  (skipped: the sanitizer owns operator new)\n");
#endif
}

/* ---- patchcall_barrier on a registered, online thread while the reclaimer waits for it ---- */

static atomic_int barrier_callback_ran = 0;
static void set_flag(void* user) { atomic_store((atomic_int*)user, 1); }

static void barrier_on_online_thread_honours_its_deadline(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)4 << 20;
  o.grace_deadline_ms = 3000;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_thread* self = NULL;
  CHECK_CODE(patchcall_thread_register(rt, "capi-barrier-caller", &self), PATCHCALL_OK);
  CHECK_CODE(patchcall_retire_callback(rt, set_flag, &barrier_callback_ran), PATCHCALL_OK);
  const volatile uint8_t* flag = patchcall_safepoint_flag(rt);
  long long until = now_ms() + 2000;
  while (*flag == 0 && now_ms() < until) sched_yield(); /* the reclaimer's grace period waits for us */
  CHECK(*flag != 0);
  long long t0 = now_ms();
  CHECK_CODE(patchcall_barrier(rt, 1000), PATCHCALL_OK);
  long long took = now_ms() - t0;
  if (took >= 1000) fprintf(stderr, "  patchcall_barrier(1000 ms) took %lld ms\n", took);
  CHECK(took < 1000);
  CHECK(atomic_load(&barrier_callback_ran) == 1);
  CHECK_CODE(patchcall_thread_unregister(self), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

/* ---- polled grace periods: progress in manual mode without barrier ------------------------- */

struct reader {
  patchcall_runtime* rt;
  atomic_int registered, stop;
};

static void* reader_main(void* arg) {
  struct reader* r = arg;
  patchcall_thread* h = NULL;
  CHECK_CODE(patchcall_thread_register(r->rt, "capi-reader", &h), PATCHCALL_OK);
  atomic_store(&r->registered, 1);
  struct timespec nap = {0, 200000};
  while (!atomic_load(&r->stop)) {
    patchcall_safepoint();
    nanosleep(&nap, NULL);
  }
  CHECK_CODE(patchcall_thread_unregister(h), PATCHCALL_OK);
  return NULL;
}

static void polled_grace_periods_progress_in_manual_mode(void) {
  patchcall_runtime* rt = manual_runtime();
  CHECK(patchcall_grace_period_state(NULL) == 0);
  CHECK(patchcall_grace_period_elapsed(NULL, 1) == 1);
  CHECK(patchcall_grace_period_elapsed(rt, 0) == 1);
  struct reader r = {rt, 0, 0};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, reader_main, &r) == 0);
  while (!atomic_load(&r.registered)) sched_yield();
  patchcall_grace_period_cookie a = patchcall_grace_period_state(rt);
  patchcall_grace_period_cookie c = patchcall_grace_period_start(rt);
  CHECK(a <= c);
  long long until = now_ms() + 5000;
  while (!patchcall_grace_period_elapsed(rt, c) && now_ms() < until) sched_yield();
  CHECK(patchcall_grace_period_elapsed(rt, c) == 1);
  CHECK(patchcall_grace_period_elapsed(rt, a) == 1);
  atomic_store(&r.stop, 1);
  pthread_join(t, NULL);
  patchcall_runtime_destroy(rt);
}

/* ---- intrusive retire: no allocation per retirement ---------------------------------------- */

enum { NODES = 10000 };
struct object {
  int value;
  patchcall_retire_node node;
};
static struct object objects[NODES];
static long freed_sum = 0;
static void free_object(patchcall_retire_node* node) {
  struct object* o = (struct object*)((char*)node - offsetof(struct object, node));
  freed_sum += o->value;
}

static void intrusive_retire_allocates_nothing(void) {
  patchcall_runtime* rt = manual_runtime();
  CHECK_CODE(patchcall_retire_with_node(rt, NULL, free_object), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_retire_with_node(rt, &objects[0].node, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_retire_with_node(NULL, &objects[0].node, free_object), PATCHCALL_E_INVALID_ARGUMENT);
  long expected = 0;
  for (int i = 0; i < NODES; i++) objects[i].value = i, expected += i;
#if CAPI_OWNS_ALLOCATOR
  count_allocs = 1;
  void* (*volatile allocate)(size_t) = malloc; /* not elided: the counter itself works */
  void* probe = allocate(8);
  count_allocs = 0;
  free(probe);
  CHECK(allocs == 1);
  allocs = 0;
  count_allocs = 1;
#endif
  for (int i = 0; i < NODES; i++) CHECK_CODE(patchcall_retire_with_node(rt, &objects[i].node, free_object), PATCHCALL_OK);
  size_t ran = 0;
  for (int i = 0; i < 100 && ran < NODES; i++) ran += patchcall_poll(rt);
#if CAPI_OWNS_ALLOCATOR
  count_allocs = 0;
  if (allocs != 0) fprintf(stderr, "  %ld allocations for %d retirements and their polls\n", allocs, NODES);
  CHECK(allocs == 0);
#endif
  CHECK(ran == NODES);
  CHECK(freed_sum == expected);
  patchcall_stats s;
  CHECK_CODE(patchcall_stats_get(rt, &s), PATCHCALL_OK);
  CHECK(s.callbacks_retired == NODES && s.callbacks_run == NODES);
  patchcall_runtime_destroy(rt);
}

int main(void) {
  alarm(60); /* a wait that is not bounded fails the test instead of hanging it */
  RUN(offline_online_errors_survive_allocation_failure);
  RUN(switch_stack_errors_survive_allocation_failure);
  RUN(barrier_on_online_thread_honours_its_deadline);
  RUN(polled_grace_periods_progress_in_manual_mode);
  RUN(intrusive_retire_allocates_nothing);
  return capi_finish("capi_quiescence_test");
}
