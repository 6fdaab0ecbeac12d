/* C API from several threads (pthreads): registration, offline/online, safepoints,
 * synchronize, and keys retargeted while four threads call through their sites. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "capi_check.h"

static void registration_and_offline_online(void) {
  patchcall_runtime* rt = capi_new_runtime();
  CHECK(patchcall_thread_is_registered() == 0);
  CHECK_CODE(patchcall_offline(), PATCHCALL_E_NOT_REGISTERED);
  CHECK_CODE(patchcall_online(), PATCHCALL_E_NOT_REGISTERED);
  patchcall_safepoint(); /* a no-op when unregistered */

  patchcall_thread* self = NULL;
  CHECK_CODE(patchcall_thread_register(rt, "capi-main", &self), PATCHCALL_OK);
  CHECK(self != NULL && patchcall_thread_is_registered() == 1);
  patchcall_thread* again = NULL;
  CHECK_CODE(patchcall_thread_register(rt, "capi-main-again", &again), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("already registered");
  CHECK(again == NULL);
  patchcall_safepoint();
  CHECK_CODE(patchcall_synchronize(rt, 1000), PATCHCALL_OK); /* the caller itself never blocks it */
  CHECK_CODE(patchcall_online(), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_offline(), PATCHCALL_OK);
  CHECK_CODE(patchcall_offline(), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("already offline");
  CHECK_CODE(patchcall_synchronize(rt, 1000), PATCHCALL_OK);
  CHECK_CODE(patchcall_online(), PATCHCALL_OK);
  CHECK_CODE(patchcall_thread_unregister(self), PATCHCALL_OK);
  CHECK(patchcall_thread_is_registered() == 0);
  CHECK_CODE(patchcall_thread_unregister(NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_thread_register(rt, NULL, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_thread_register(NULL, NULL, &self), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_synchronize(NULL, 0), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_barrier(NULL, 0), PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_runtime_destroy(rt);
}

/* ---- a thread that never passes a safepoint: TIMEOUT naming it; unregister elsewhere ----- */

struct stuck_thread {
  patchcall_runtime* rt;
  patchcall_thread* handle;
  atomic_int registered, release;
};

static void* stuck_main(void* arg) {
  struct stuck_thread* s = arg;
  CHECK_CODE(patchcall_thread_register(s->rt, "capi-stuck", &s->handle), PATCHCALL_OK);
  atomic_store(&s->registered, 1);
  struct timespec nap = {0, 1000000};
  while (!atomic_load(&s->release)) nanosleep(&nap, NULL); /* online, no safepoints */
  CHECK_CODE(patchcall_thread_unregister(s->handle), PATCHCALL_OK);
  return NULL;
}

static void stuck_thread_times_out_synchronize(void) {
  patchcall_runtime* rt = capi_new_runtime();
  struct stuck_thread s = {rt, NULL, 0, 0};
  pthread_t t;
  CHECK(pthread_create(&t, NULL, stuck_main, &s) == 0);
  while (!atomic_load(&s.registered)) sched_yield();
  CHECK_CODE(patchcall_synchronize(rt, 50), PATCHCALL_E_TIMEOUT);
  CHECK_MESSAGE_HAS("capi-stuck");
  CHECK_CODE(patchcall_thread_unregister(s.handle), PATCHCALL_E_INVALID_ARGUMENT); /* not its owner */
  CHECK_MESSAGE_HAS("another thread");
  atomic_store(&s.release, 1);
  pthread_join(t, NULL);
  CHECK_CODE(patchcall_synchronize(rt, 1000), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

/* ---- max_threads ------------------------------------------------------------------------------ */

static void* register_expecting_too_many(void* arg) {
  patchcall_thread* h = NULL;
  CHECK_CODE(patchcall_thread_register(arg, "capi-extra", &h), PATCHCALL_E_TOO_MANY_THREADS);
  CHECK_MESSAGE_HAS("maxThreads");
  CHECK(h == NULL && patchcall_thread_is_registered() == 0);
  return NULL;
}

static void thread_limit_is_an_error(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)1 << 20;
  o.max_threads = 1;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_thread* self = NULL;
  CHECK_CODE(patchcall_thread_register(rt, "capi-only", &self), PATCHCALL_OK);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, register_expecting_too_many, rt) == 0);
  pthread_join(t, NULL);
  CHECK_CODE(patchcall_thread_unregister(self), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

/* ---- keys retargeted while four threads call through Direct and Toggle sites --------------- */

enum { CALLERS = 4, UPDATES = 400 };

struct shared {
  patchcall_runtime* rt;
  patchcall_blob direct, toggle;
  const void* trampoline;
  int final_value; /* what the last update's target returns */
  atomic_int stop, ready, final_seen;
  atomic_long calls, wrong;
};

static void* caller_main(void* arg) {
  struct shared* s = arg;
  patchcall_thread* self = NULL;
  CHECK_CODE(patchcall_thread_register(s->rt, "capi-caller", &self), PATCHCALL_OK);
  atomic_fetch_add(&s->ready, 1);
  capi_int_fn fns[3] = {capi_as_fn(s->direct.code), capi_as_fn(s->toggle.code), capi_as_fn(s->trampoline)};
  long calls = 0, wrong = 0;
  while (!atomic_load(&s->stop)) {
    for (int i = 0; i < 3; ++i) {
      int r = fns[i]();
      if (r != 1 && r != 2) wrong++; /* only the two targets ever installed */
      calls++;
    }
    patchcall_safepoint();
  }
  /* After the last update and a grace period, every call sees the final target. */
  int finalOk = 1;
  for (int i = 0; i < 3; ++i) finalOk &= fns[i]() == s->final_value;
  if (finalOk) atomic_fetch_add(&s->final_seen, 1);
  atomic_fetch_add(&s->calls, calls);
  atomic_fetch_add(&s->wrong, wrong);
  CHECK_CODE(patchcall_thread_unregister(self), PATCHCALL_OK);
  return NULL;
}

static void updates_while_threads_call(void) {
  struct shared s;
  memset(&s, 0, sizeof s);
  s.rt = capi_new_runtime();
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(s.rt, PATCHCALL_FN(capi_target_one), "mt", &key), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_trampoline(s.rt, key, &s.trampoline), PATCHCALL_OK);
  s.direct = capi_install(s.rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, key, PATCHCALL_SITE_DIRECT);
  /* Without the toggle form (aarch64) a second Direct site takes its place. */
  s.toggle = CAPI_HAS_X86_FORMS
                 ? capi_install(s.rt, capi_toggle_code, CAPI_TOGGLE_CODE_SIZE, CAPI_TOGGLE_SITE_OFFSET, key, PATCHCALL_SITE_TOGGLE)
                 : capi_install(s.rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, key, PATCHCALL_SITE_DIRECT);
  pthread_t threads[CALLERS];
  for (int i = 0; i < CALLERS; ++i) CHECK(pthread_create(&threads[i], NULL, caller_main, &s) == 0);
  while (atomic_load(&s.ready) < CALLERS) sched_yield();
  for (int u = 0; u < UPDATES; ++u) {
    const void* t = (u % 2 == 0) ? PATCHCALL_FN(capi_target_two) : PATCHCALL_FN(capi_target_one);
    CHECK_CODE(patchcall_key_update(s.rt, key, t, NULL), PATCHCALL_OK);
  }
  s.final_value = ((UPDATES - 1) % 2 == 0) ? 2 : 1;
  CHECK_CODE(patchcall_synchronize(s.rt, 5000), PATCHCALL_OK);
  atomic_store(&s.stop, 1);
  for (int i = 0; i < CALLERS; ++i) pthread_join(threads[i], NULL);
  CHECK(atomic_load(&s.wrong) == 0);
  CHECK(atomic_load(&s.final_seen) == CALLERS);
  CHECK(atomic_load(&s.calls) > 0);
  patchcall_stats st;
  CHECK_CODE(patchcall_stats_get(s.rt, &st), PATCHCALL_OK);
  CHECK(st.updates == UPDATES);
  if (CAPI_HAS_X86_FORMS) CHECK(st.toggle_grace_waits > 0); /* the toggle made successive updates wait for a grace period */
  fprintf(stderr, "  %ld calls by %d threads during %d updates, %llu toggle grace waits, 0 wrong\n",
          (long)atomic_load(&s.calls), CALLERS, UPDATES, (unsigned long long)st.toggle_grace_waits);
  patchcall_runtime_destroy(s.rt);
}

/* ---- retire callbacks from several threads; synchronize inside a callback ------------------ */

static atomic_int callback_sum;
static atomic_int nested_sync_code = -1;
static patchcall_runtime* callback_rt;
static void add_to_sum(void* user) { atomic_fetch_add(&callback_sum, (int)(intptr_t)user); }
static void sync_inside_callback(void* user) {
  (void)user;
  atomic_store(&nested_sync_code, patchcall_synchronize(callback_rt, 100));
}

static void* retire_from_thread(void* arg) {
  for (int i = 1; i <= 100; ++i) CHECK_CODE(patchcall_retire_callback(arg, add_to_sum, (void*)(intptr_t)i), PATCHCALL_OK);
  return NULL;
}

static void retire_callbacks_from_many_threads(void) {
  patchcall_runtime* rt = capi_new_runtime();
  callback_rt = rt;
  pthread_t t[4];
  for (int i = 0; i < 4; ++i) CHECK(pthread_create(&t[i], NULL, retire_from_thread, rt) == 0);
  for (int i = 0; i < 4; ++i) pthread_join(t[i], NULL);
  CHECK_CODE(patchcall_retire_callback(rt, sync_inside_callback, NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_barrier(rt, 5000), PATCHCALL_OK);
  CHECK(atomic_load(&callback_sum) == 4 * 5050);
  CHECK(atomic_load(&nested_sync_code) == PATCHCALL_E_WOULD_DEADLOCK);
  patchcall_runtime_destroy(rt);
}

int main(void) {
  RUN(registration_and_offline_online);
  RUN(stuck_thread_times_out_synchronize);
  RUN(thread_limit_is_an_error);
  RUN(updates_while_threads_call);
  RUN(retire_callbacks_from_many_threads);
  return capi_finish("CApi_Threads");
}
