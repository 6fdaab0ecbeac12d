/* C API: stacks. Bad arguments, and a ucontext fiber on a registered stack that parks while
 * holding a pointer into a retired blob: the blob stays pinned until the fiber dropped it.
 * The host thread (registered) runs the fiber; the main thread (not registered, so its own
 * stack with the blob handle is not scanned) retires and waits. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <time.h>
#include <ucontext.h>

#include "capi_check.h"

enum { STACK_SIZE = 256 * 1024 };

static patchcall_runtime* g_rt;
static patchcall_stack g_stack;
static ucontext_t g_fiber, g_host;
static atomic_uintptr_t g_pointer;
static atomic_int g_parked, g_resume, g_finished, g_host_done;

static void nap(void) {
  struct timespec ts = {0, 200000};
  nanosleep(&ts, NULL);
}

/* Overwrites dead stack below the caller so a stale copy of the pointer cannot pin. Not
 * instrumented: ASan would put redzones around buf, and those it never writes. */
__attribute__((noinline, no_sanitize_address)) static void scrub(void) {
  volatile char buf[8192];
  for (size_t i = 0; i < sizeof buf; ++i) buf[i] = 0;
}

/* Its own frame, scrubbed once it returns: unoptimized builds leave copies of the pointer in
 * temporaries all over the frame that loads it. */
__attribute__((noinline)) static void hold_and_park(void) {
  volatile uintptr_t held = atomic_exchange(&g_pointer, 0); /* only on this stack now */
  CHECK_CODE(patchcall_switch_stack(patchcall_stack_home()), PATCHCALL_OK);
  atomic_store(&g_parked, 1);
  swapcontext(&g_fiber, &g_host); /* parked, holding `held` */
  held = 0;
  (void)held;
}

static void fiber_main(void) {
  hold_and_park();
  scrub();
  CHECK_CODE(patchcall_switch_stack(patchcall_stack_home()), PATCHCALL_OK);
  atomic_store(&g_finished, 1);
} /* uc_link: back to the host */

static void* host_main(void* arg) {
  (void)arg;
  patchcall_thread* self = NULL;
  CHECK_CODE(patchcall_thread_register(g_rt, "capi-fiber-host", &self), PATCHCALL_OK);
  CHECK_CODE(patchcall_switch_stack(g_stack), PATCHCALL_OK);
  swapcontext(&g_host, &g_fiber);
  CHECK_CODE(patchcall_offline(), PATCHCALL_OK); /* wait without holding up grace periods */
  while (!atomic_load(&g_resume)) nap();
  CHECK_CODE(patchcall_online(), PATCHCALL_OK);
  CHECK_CODE(patchcall_switch_stack(g_stack), PATCHCALL_OK);
  swapcontext(&g_host, &g_fiber);
  CHECK_CODE(patchcall_thread_unregister(self), PATCHCALL_OK);
  atomic_store(&g_host_done, 1);
  return NULL;
}

static void bad_arguments(void) {
  patchcall_runtime* rt = capi_new_runtime();
  void* mem = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  patchcall_stack s;
  CHECK_CODE(patchcall_stack_register(NULL, mem, STACK_SIZE, "x", &s), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_stack_register(rt, mem, STACK_SIZE, "x", NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_stack_register(rt, NULL, STACK_SIZE, "x", &s), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_stack_register(rt, mem, 0, "x", &s), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_stack_register(rt, mem, STACK_SIZE, NULL, &s), PATCHCALL_OK);
  patchcall_stack dup;
  CHECK_CODE(patchcall_stack_register(rt, mem, 4096, "dup", &dup), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("overlaps");
  CHECK_CODE(patchcall_switch_stack(s), PATCHCALL_E_NOT_REGISTERED); /* this thread is not registered */
  CHECK_CODE(patchcall_stack_unregister(rt, patchcall_stack_home()), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_stack_unregister(NULL, s), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_stack_unregister(rt, s), PATCHCALL_OK);
  CHECK_CODE(patchcall_stack_unregister(rt, s), PATCHCALL_E_INVALID_ARGUMENT); /* stale */
  CHECK_MESSAGE_HAS("stale");
  munmap(mem, STACK_SIZE);
  patchcall_runtime_destroy(rt);
}

static void parked_fiber_pins_a_blob(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)4 << 20;
  o.background_reclaimer = 0;
  CHECK_CODE(patchcall_runtime_create(&o, &g_rt), PATCHCALL_OK);
  void* mem = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  CHECK(mem != MAP_FAILED);
  CHECK_CODE(patchcall_stack_register(g_rt, mem, STACK_SIZE, "capi-fiber", &g_stack), PATCHCALL_OK);
  patchcall_blob blob;
  CHECK_CODE(patchcall_code_install(g_rt, capi_return7_code, sizeof capi_return7_code, NULL, 0, &blob), PATCHCALL_OK);
  atomic_store(&g_pointer, (uintptr_t)blob.code + 2);

  getcontext(&g_fiber);
  CAPI_CLEAR_CALLEE_SAVED(g_fiber); /* no stale values (capi_code.h: the host's registers) */
  g_fiber.uc_stack.ss_sp = mem;
  g_fiber.uc_stack.ss_size = STACK_SIZE;
  g_fiber.uc_link = &g_host;
  makecontext(&g_fiber, fiber_main, 0);
  pthread_t host;
  CHECK(pthread_create(&host, NULL, host_main, NULL) == 0);
  while (!atomic_load(&g_parked)) nap();

  CHECK_CODE(patchcall_blob_retire(g_rt, blob), PATCHCALL_OK);
  CHECK_CODE(patchcall_barrier(g_rt, 300), PATCHCALL_E_TIMEOUT); /* the parked fiber holds it */
  patchcall_stats st;
  CHECK_CODE(patchcall_stats_get(g_rt, &st), PATCHCALL_OK);
  CHECK(st.blobs_pinned_by_stacks > 0);
  CHECK(st.blobs_freed == 0);

  atomic_store(&g_resume, 1);
  pthread_join(host, NULL);
  CHECK(atomic_load(&g_finished) == 1 && atomic_load(&g_host_done) == 1);
  CHECK_CODE(patchcall_barrier(g_rt, 5000), PATCHCALL_OK);
  CHECK_CODE(patchcall_stats_get(g_rt, &st), PATCHCALL_OK);
  CHECK(st.blobs_freed == 1);
  CHECK_CODE(patchcall_stack_unregister(g_rt, g_stack), PATCHCALL_OK);
  munmap(mem, STACK_SIZE);
  patchcall_runtime_destroy(g_rt);
}

int main(void) {
  RUN(bad_arguments);
  RUN(parked_fiber_pins_a_blob);
  return capi_finish("capi_stacks_test");
}
