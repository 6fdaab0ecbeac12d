/* patchcall — C API: stacks a registered thread runs on (fibers, coroutines).
 * The whole C API: patchcall/patchcall.h. */
#ifndef PATCHCALL_C_STACKS_H
#define PATCHCALL_C_STACKS_H

#include "patchcall/c/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- stacks (fibers, coroutines, M:N schedulers) ----------------------------------------- */

/* Names a registered stack, or (patchcall_stack_home()) the calling thread's own pthread
 * stack. A value: copy it freely; valid until patchcall_stack_unregister. Mirrors
 * patchcall::StackHandle. */
typedef struct patchcall_stack {
  const void* table;
  uint32_t index;
  uint32_t generation;
} patchcall_stack;

/* Retired code is freed only when no stack holds an address inside it, so a runtime that
 * switches stacks (ucontext, its own switch routine, fibers resumed on other threads) must
 * tell patchcall:
 *   - register every fiber stack before its first use (parked and empty);
 *   - call patchcall_switch_stack(to) on the registered thread immediately before each
 *     switch, from the function that switches (the stack it leaves is parked at the caller's
 *     sp: what lies below that sp is not scanned), and patchcall_switch_stack(
 *     patchcall_stack_home()) before switching back to the thread's own stack;
 *   - unregister a stack (while parked) before unmapping it.
 * Scanned: each thread's current stack from its sp (at its safepoint; from its offline sp
 * while offline), every parked stack from the sp it was parked at (once per grace period
 * that scans), and both stacks of a switch made while such a grace period runs. Registers
 * and contexts saved off the stack (a heap ucontext_t) are not scanned. A thread found on a
 * stack patchcall was not told about is never read outside its known stack: everything
 * being retired stays pinned and the diagnostic sink gets one message for that thread.
 * Cost of a switch: one CAS and a few stores (BM_FiberSwitch in README). */
patchcall_stack patchcall_stack_home(void);
/* [lo, lo + size). Errors: INVALID_ARGUMENT (NULL, empty, wrapping, overlaps a registered
 * stack, NULL rt/out), OUT_OF_MEMORY. name may be NULL. */
int patchcall_stack_register(patchcall_runtime* rt, void* lo, size_t size, const char* name, patchcall_stack* out);
/* Errors: INVALID_ARGUMENT (running on a thread, stale or foreign handle, the home stack). */
int patchcall_stack_unregister(patchcall_runtime* rt, patchcall_stack stack);
/* Errors: NOT_REGISTERED, INVALID_ARGUMENT (stale or foreign handle; `to` running on another
 * thread). Switching to the current stack is a no-op. */
int patchcall_switch_stack(patchcall_stack to);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PATCHCALL_C_STACKS_H */
