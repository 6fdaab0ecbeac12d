/* patchcall — C API: keys and their updates.
 * The whole C API: patchcall/patchcall.h. */
#ifndef PATCHCALL_C_KEYS_H
#define PATCHCALL_C_KEYS_H

#include "patchcall/c/runtime.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- keys -------------------------------------------------------------------------------- */

typedef uint32_t patchcall_key; /* 0 is never a valid key */

/* name may be NULL. Errors: NULL_TARGET, MISALIGNED_TARGET, OUT_OF_RANGE, RETIRED_TARGET,
 * ARENA_EXHAUSTED, INVALID_ARGUMENT (max_keys; a target in patchcall's own memory: see
 * Runtime::createKey), REENTRANT_UPDATE. */
int patchcall_key_create(patchcall_runtime* rt, const void* initial_target, const char* name, patchcall_key* out);
/* Errors: UNKNOWN_KEY, STILL_TARGETED (sites are bound to it). */
int patchcall_key_destroy(patchcall_runtime* rt, patchcall_key key);
/* Retargets the key's trampoline and every site bound to it (one cross-core sync).
 * old_target may be NULL. Errors: UNKNOWN_KEY, NULL_TARGET, MISALIGNED_TARGET, OUT_OF_RANGE,
 * RETIRED_TARGET, INVALID_ARGUMENT (a target in patchcall's own memory, or a trampoline chain
 * back to this key), UNSUPPORTED_SITE (a foreign site no longer mapped, changed or writable:
 * nothing written), REENTRANT_UPDATE, TIMEOUT (toggle sites waiting for a grace period). */
int patchcall_key_update(patchcall_runtime* rt, patchcall_key key, const void* target, const void** old_target);

typedef struct patchcall_update_entry {
  patchcall_key key;
  const void* target;
} patchcall_update_entry;
/* All or nothing: validated first (a key twice is INVALID_ARGUMENT), then written with one
 * sync per protocol phase. count 0 is a no-op; updates may be NULL only then. */
int patchcall_key_update_batch(patchcall_runtime* rt, const patchcall_update_entry* updates, size_t count);
int patchcall_key_target(const patchcall_runtime* rt, patchcall_key key, const void** out);
/* Entry of the key's `jmp rel32` stub: cast it to the callee's function pointer type and
 * call it from C; it always reaches the key's current target. */
int patchcall_key_trampoline(const patchcall_runtime* rt, patchcall_key key, const void** out);

/* Strict updates (patchcall::UpdateOptions / KeyOptions). What holds when an update returns:
 * Direct and Breakpoint sites never start the old target afterwards; a thread that passed a
 * Toggle site's toggle before the flip may still enter the old target until its next
 * safepoint, unless the update is strict: then it returns only after a grace period that
 * follows the flip (TIMEOUT if that wait expires: the update HAS taken effect). Fill each
 * struct with its _init function, then change fields. */
typedef struct patchcall_key_options {
  size_t struct_size;  /* set by patchcall_key_options_init */
  int strict_updates;  /* nonzero: every update of this key (or a batch holding it) is strict */
  /* Added in 0.2 (a smaller struct_size keeps the default, 0): nonzero makes a NULL target
   * mean patchcall_noop_target(rt) (patchcall::KeyOptions::nullIsNoop). */
  int null_is_noop;
} patchcall_key_options;
typedef struct patchcall_update_options {
  size_t struct_size;  /* set by patchcall_update_options_init */
  int strict;          /* nonzero: wait for the grace period after the flip */
  int64_t deadline_ms; /* bound of that wait; < 0: options.grace_deadline_ms */
  /* Added in 0.2 (a smaller struct_size keeps the default, 0): nonzero defers the final
   * cross-core sync (patchcall::Publish::kDeferred; see patchcall_publish). */
  int deferred;
} patchcall_update_options;
/* Publishes every deferred update so far: one cross-core sync, shared with concurrent
 * callers, none when nothing is pending (patchcall::Runtime::publish). Until then a call
 * through a deferred-updated site lands on the old or the new target. deadline_ms < 0:
 * options.grace_deadline_ms. Errors: INVALID_ARGUMENT (rt NULL), TIMEOUT, SYSTEM_ERROR. */
int patchcall_publish(patchcall_runtime* rt, int64_t deadline_ms);
void patchcall_key_options_init(patchcall_key_options* options);
void patchcall_update_options_init(patchcall_update_options* options);
/* As patchcall_key_create / _update / _update_batch, with options (not NULL). Errors as
 * those, plus INVALID_ARGUMENT (struct_size unknown) and TIMEOUT (strict wait, see above). */
int patchcall_key_create_with(patchcall_runtime* rt, const void* initial_target, const char* name,
                              const patchcall_key_options* options, patchcall_key* out);
int patchcall_key_update_with(patchcall_runtime* rt, patchcall_key key, const void* target,
                              const patchcall_update_options* options, const void** old_target);
int patchcall_key_update_batch_with(patchcall_runtime* rt, const patchcall_update_entry* updates, size_t count,
                                    const patchcall_update_options* options);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PATCHCALL_C_KEYS_H */
