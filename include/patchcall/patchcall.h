/* patchcall — C API (C11; also usable from C++).
 *
 * A thin layer over the C++ API (patchcall/runtime.h): the same objects behind opaque
 * handles, the same error codes (the values of patchcall::Error) as plain ints. Every
 * function that can fail returns PATCHCALL_OK (0) or an error code, and leaves a message
 * meant for a log in patchcall_last_error_message() (per thread). Nothing is ever thrown
 * or aborted on: even an allocation failure comes back as PATCHCALL_E_OUT_OF_MEMORY.
 *
 *   patchcall_runtime* rt;
 *   if (patchcall_runtime_create(NULL, &rt) != PATCHCALL_OK) { log(patchcall_last_error_message()); }
 *   patchcall_key key;
 *   patchcall_key_create(rt, PATCHCALL_FN(&slow_path), "my.key", &key);
 *   ... install code whose call sites are bound to `key` (patchcall_code_install) ...
 *   patchcall_key_update(rt, key, PATCHCALL_FN(&fast_path), NULL);   (every site follows)
 *
 * A complete program: examples/quickstart/quickstart.c.
 *
 * Code addresses are `const void*`. ISO C does not define converting a function pointer to
 * `void*` (POSIX does); PATCHCALL_FN(f) converts through uintptr_t, which stays clean under
 * -Wpedantic.
 *
 * Threads that execute code with safepoint polls, or that may be inside code that is about
 * to be retired, must be registered (patchcall_thread_register) and must pass safepoints
 * (patchcall_safepoint, or the polls in JIT code) or go offline around blocking calls.
 */
#ifndef PATCHCALL_PATCHCALL_H
#define PATCHCALL_PATCHCALL_H

/* One header per concept, as the C++ API and runtime/c_api_*.cpp are split: */
#include "patchcall/c/runtime.h" /* runtime, options, arena and fork state, stats, shared targets */
#include "patchcall/c/threads.h" /* threads, safepoints, grace periods, retirement */
#include "patchcall/c/stacks.h"  /* fibers: registered stacks and switches */
#include "patchcall/c/keys.h"    /* keys, updates, batches, strict and deferred updates */
#include "patchcall/c/code.h"    /* install, reserve/commit, code info, retire */
#include "patchcall/c/sites.h"   /* site info, introspection, foreign sites */

#endif /* PATCHCALL_PATCHCALL_H */
