/* C API: threads that exit while registered (patchcall_thread_unregister never called).
 * Online: later grace periods must not wait for them. Offline on a stack the test maps and
 * unmaps itself: a blob retirement round (a stack scan) after the munmap must not read it.
 * The diagnostic sink names the thread; the handle stays valid and is freed afterwards from
 * the main thread. On code without the exit hook the first case times out and the second
 * dies of SIGSEGV. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "capi_check.h"

enum { STACK_SIZE = 256 * 1024 };

static char diag_log[4096];
static atomic_int diag_exits;

static void collect(void* user, const char* message) {
  (void)user;
  if (strstr(message, "exited while registered") != NULL) atomic_fetch_add(&diag_exits, 1);
  size_t used = strlen(diag_log);
  snprintf(diag_log + used, sizeof diag_log - used, "[%s]\n", message);
}

static patchcall_runtime* new_runtime(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)4 << 20;
  o.background_reclaimer = 0;
  o.diagnostic_sink = collect;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  diag_log[0] = '\0';
  atomic_store(&diag_exits, 0);
  return rt;
}

struct leaver {
  patchcall_runtime* rt;
  const char* name;
  int go_offline;
  patchcall_thread* handle; /* left behind: never unregistered by the thread */
};

static void* leave_registered(void* arg) {
  struct leaver* l = arg;
  CHECK_CODE(patchcall_thread_register(l->rt, l->name, &l->handle), PATCHCALL_OK);
  patchcall_safepoint();
  if (l->go_offline) CHECK_CODE(patchcall_offline(), PATCHCALL_OK);
  return NULL; /* exits registered */
}

/* Runs leave_registered on a stack mapped here and unmapped after the join. */
static void run_on_mapped_stack(struct leaver* l) {
  void* stack = mmap(NULL, STACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  CHECK(stack != MAP_FAILED);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstack(&attr, stack, STACK_SIZE);
  pthread_t t;
  CHECK(pthread_create(&t, &attr, leave_registered, l) == 0);
  pthread_attr_destroy(&attr);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(munmap(stack, STACK_SIZE) == 0); /* any later read of that stack faults */
}

static void check_one_exit_diagnostic(const char* name) {
  if (atomic_load(&diag_exits) != 1 || strstr(diag_log, name) == NULL) {
    fprintf(stderr, "expected one 'exited while registered' diagnostic naming '%s'; got:\n%s\n", name, diag_log);
    capi_failures++;
  }
}

static void online_exit(void) {
  patchcall_runtime* rt = new_runtime();
  struct leaver l = {rt, "capi-exits-online", 0, NULL};
  run_on_mapped_stack(&l);
  CHECK_CODE(patchcall_synchronize(rt, 100), PATCHCALL_OK);
  CHECK_CODE(patchcall_barrier(rt, 100), PATCHCALL_OK);
  check_one_exit_diagnostic("capi-exits-online");
  /* The handle outlived its thread: released here, from another thread. */
  CHECK(l.handle != NULL);
  CHECK_CODE(patchcall_thread_unregister(l.handle), PATCHCALL_OK);
  CHECK_CODE(patchcall_synchronize(rt, 100), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

static void offline_exit_then_retirement_round(void) {
  patchcall_runtime* rt = new_runtime();
  struct leaver l = {rt, "capi-exits-offline", 1, NULL};
  run_on_mapped_stack(&l);
  /* A blob retirement round: the grace period carries a stack-scan set. */
  patchcall_blob blob;
  CHECK_CODE(patchcall_code_install(rt, capi_return7_code, sizeof capi_return7_code, NULL, 0, &blob), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, blob), PATCHCALL_OK);
  CHECK_CODE(patchcall_barrier(rt, 2000), PATCHCALL_OK);
  CHECK_CODE(patchcall_synchronize(rt, 100), PATCHCALL_OK);
  patchcall_stats stats;
  CHECK_CODE(patchcall_stats_get(rt, &stats), PATCHCALL_OK);
  CHECK(stats.blobs_freed == 1);
  check_one_exit_diagnostic("capi-exits-offline");
  CHECK_CODE(patchcall_thread_unregister(l.handle), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

int main(void) {
  RUN(online_exit);
  RUN(offline_exit_then_retirement_round);
  return capi_finish("capi_thread_exit_test");
}
