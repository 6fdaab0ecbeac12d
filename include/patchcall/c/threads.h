/* patchcall — C API: threads, safepoints, grace periods and retirement.
 * The whole C API: patchcall/patchcall.h. */
#ifndef PATCHCALL_C_THREADS_H
#define PATCHCALL_C_THREADS_H

#include "patchcall/c/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- threads and quiescence -------------------------------------------------------------- */

typedef struct patchcall_thread patchcall_thread;

/* Registers the calling thread (name may be NULL). A thread belongs to one runtime at a
 * time. Errors: TOO_MANY_THREADS, INVALID_ARGUMENT (already registered). */
int patchcall_thread_register(patchcall_runtime* rt, const char* name, patchcall_thread** out);
/* Must run on the registering thread (INVALID_ARGUMENT otherwise; the handle stays valid),
 * unless that thread has exited. Frees the handle on success.
 *
 * Thread exit: a thread that ends while registered is unregistered on its way out (after
 * its C++ thread_local destructors); the diagnostic sink gets one message naming it, and no
 * grace period waits for it or scans its stack afterwards. Its handle is NOT freed then (it
 * stays the caller's and never dangles): pass it to patchcall_thread_unregister from any
 * thread, which frees it and returns OK. */
int patchcall_thread_unregister(patchcall_thread* thread);

/* Announces a quiescent state: the caller holds no reference to anything retired before
 * this point. A no-op for unregistered threads. A few instructions unless a grace period
 * is waiting for this thread. */
void patchcall_safepoint(void);
/* Around blocking calls. Errors: NOT_REGISTERED, INVALID_ARGUMENT (already offline/online). */
int patchcall_offline(void);
int patchcall_online(void);
int patchcall_thread_is_registered(void);

/* Waits for a grace period. deadline_ms < 0: options.grace_deadline_ms. Errors: TIMEOUT
 * (the message names the stuck thread), WOULD_DEADLOCK (inside a retire callback). */
int patchcall_synchronize(patchcall_runtime* rt, int64_t deadline_ms);
/* Waits until everything retired before the call has been processed (callbacks run, blobs
 * freed); what is retired meanwhile is not waited for. The deadline is honoured even while
 * the background reclaimer is busy; a registered caller is offline while it waits.
 * Errors: TIMEOUT (the message names the cause: callbacks whose grace period did not
 * complete and the thread holding it, or blobs still on a stack), WOULD_DEADLOCK. */
int patchcall_barrier(patchcall_runtime* rt, int64_t deadline_ms);
/* Processes what completed grace periods allow and takes one non-blocking step of the
 * grace period still needed (so a loop of polls makes progress in manual mode); never
 * waits (0 inside a retire callback or while another pass runs). A registered caller is
 * offline inside it. Returns how many callbacks ran plus blobs freed. */
size_t patchcall_poll(patchcall_runtime* rt);

/* Polled grace periods (Runtime::gracePeriodState, startGracePeriod, gracePeriodElapsed;
 * Linux's get_state / start_poll / poll_state_synchronize_rcu). A cookie names "a full grace
 * period after now"; cookies never decrease, and 0 has always elapsed. None of these blocks;
 * any thread may call them. A registered, online caller must pass safepoints for a grace
 * period to complete. A NULL rt gives cookie 0 / elapsed 1. */
typedef uint64_t patchcall_grace_period_cookie;
patchcall_grace_period_cookie patchcall_grace_period_state(patchcall_runtime* rt);
/* The same, and starts a grace period that completes it (at the next step if one runs). */
patchcall_grace_period_cookie patchcall_grace_period_start(patchcall_runtime* rt);
/* 1 once `cookie` has elapsed; else 0, after one non-blocking step towards it. */
int patchcall_grace_period_elapsed(patchcall_runtime* rt, patchcall_grace_period_cookie cookie);

/* Runs callback(user) after a grace period, never under the text mutex, on the reclaimer
 * thread (or in barrier / poll). */
int patchcall_retire_callback(patchcall_runtime* rt, void (*callback)(void* user), void* user);

/* Allocation-free retirement (call_rcu with an rcu_head): embed a node in the object and
 * patchcall_retire_node(rt, &obj->node, fn) calls fn(&obj->node) after a grace period (on
 * the reclaimer thread, or in barrier / poll). The fields belong to patchcall until fn is
 * called: do not touch or retire the node again before then. Same FIFO queue as
 * patchcall_retire_callback. Errors: INVALID_ARGUMENT (NULL rt, node or fn). */
typedef struct patchcall_retire_node {
  struct patchcall_retire_node* next;
  void (*fn)(struct patchcall_retire_node* node);
  uint64_t grace_period;
} patchcall_retire_node;
int patchcall_retire_with_node(patchcall_runtime* rt, patchcall_retire_node* node,
                              void (*fn)(patchcall_retire_node* node));

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PATCHCALL_C_THREADS_H */
