/* A GC-style write barrier and an allocation hook in plain C, switched while threads run.
 *
 * Mutator threads store pointers into a heap of objects. While the collector marks, every
 * store must shade the object it writes (a Dijkstra-style barrier); the rest of the time the
 * barrier must cost nothing. `gc_marking` is a static key: its branch in write_field() is a
 * 5-byte NOP until the collector enables it. `on_alloc` is a static call: a no-op (NULL) until
 * the collector points it at a counting hook. The main thread runs 200 "collections" while the
 * mutators run, and checks that no store made while marking was left unshaded. */
#include <patchcall/static_call_aot.h>
#include <patchcall/static_key.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

enum { kObjects = 1024, kMutators = 3, kCycles = 200 };

struct object {
  struct object* field;
  atomic_int shaded; /* would be the mark bit */
};
static struct object heap[kObjects];
static atomic_long shades, allocations, unshaded_stores;
static atomic_int marking_epoch; /* odd while the collector marks */
static atomic_int stop;
static _Thread_local long my_shades; /* this thread's barrier executions */

static void count_allocation(struct object* o) {
  (void)o;
  atomic_fetch_add_explicit(&allocations, 1, memory_order_relaxed);
}

PATCHCALL_DEFINE_STATIC_KEY_FALSE(gc_marking);
PATCHCALL_DEFINE_STATIC_CALL(on_alloc, count_allocation);

static void write_field(struct object* o, struct object* value) {
  if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&gc_marking)) {
    atomic_store_explicit(&value->shaded, 1, memory_order_relaxed);
    ++my_shades;
  }
  o->field = value;
}

static void* mutator(void* arg) {
  unsigned seed = (unsigned)(size_t)arg;
  while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
    struct object* o = &heap[rand_r(&seed) % kObjects];
    struct object* v = &heap[rand_r(&seed) % kObjects];
    /* A store that starts and ends inside one marking phase must run the barrier. */
    int before = atomic_load_explicit(&marking_epoch, memory_order_acquire);
    long shaded_before = my_shades;
    write_field(o, v);
    PATCHCALL_STATIC_CALL_COND(on_alloc)(v);
    int after = atomic_load_explicit(&marking_epoch, memory_order_acquire);
    if (before == after && (before & 1) && my_shades == shaded_before) {
      atomic_fetch_add_explicit(&unshaded_stores, 1, memory_order_relaxed);
    }
  }
  atomic_fetch_add_explicit(&shades, my_shades, memory_order_relaxed);
  return NULL;
}

static int check(int rc, const char* what) {
  if (rc != PATCHCALL_OK) fprintf(stderr, "%s: %s (%s)\n", what, patchcall_strerror(rc), patchcall_last_error_message());
  return rc;
}

int main(void) {
  pthread_t threads[kMutators];
  if (check(patchcall_static_call_update(on_alloc, NULL), "on_alloc off")) return 1;
  for (int i = 0; i < kMutators; ++i) pthread_create(&threads[i], NULL, mutator, (void*)(size_t)(i + 1));
  for (int cycle = 0; cycle < kCycles; ++cycle) {
    /* Start marking: the barrier is on before the epoch says so. */
    if (check(patchcall_static_key_enable(&gc_marking), "enable barrier")) return 1;
    atomic_fetch_add_explicit(&marking_epoch, 1, memory_order_release);
    if (cycle % 2 == 0 && check(patchcall_static_call_update(on_alloc, count_allocation), "hook on")) return 1;
    usleep(200); /* ... the collector marks ... */
    atomic_fetch_add_explicit(&marking_epoch, 1, memory_order_release);
    if (check(patchcall_static_key_disable(&gc_marking), "disable barrier")) return 1;
    if (check(patchcall_static_call_update(on_alloc, NULL), "hook off")) return 1;
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < kMutators; ++i) pthread_join(threads[i], NULL);
  size_t branches = 0;
  patchcall_static_key_branches(&gc_marking.key, &branches);
  printf("%d collections: %ld stores shaded, %ld allocations counted, %zu barrier branch(es); %ld unshaded stores\n", kCycles,
         atomic_load(&shades), atomic_load(&allocations), branches, atomic_load(&unshaded_stores));
  /* Without patching (PATCHCALL_STATIC_PATCHING 0: neither x86-64 nor aarch64) a branch is a load, not a site. */
  return atomic_load(&unshaded_stores) == 0 && (branches > 0 || !PATCHCALL_STATIC_PATCHING) ? 0 : 1;
}
