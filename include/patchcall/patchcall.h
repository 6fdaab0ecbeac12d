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

#include <stddef.h>
#include <stdint.h>

#include "patchcall/error_codes.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PATCHCALL_FN(f) ((const void*)(uintptr_t)(f))

/* ---- runtime ----------------------------------------------------------------------------- */

typedef struct patchcall_runtime patchcall_runtime;

enum patchcall_site_form {
  PATCHCALL_SITE_DIRECT = 0,      /* E8 rel32 with a 4-byte aligned rel32 */
  PATCHCALL_SITE_TOGGLE = 1,      /* dual call selected by a 2-byte toggle */
  PATCHCALL_SITE_BREAKPOINT = 2,  /* any 5-byte E8 call, patched with the int3 protocol */
  PATCHCALL_SITE_AUTO = 3         /* emission only (C++ jit/); not valid in a site spec */
};

enum patchcall_sync_method {
  PATCHCALL_SYNC_AUTO = 0,        /* membarrier SYNC_CORE, else the mprotect-IPI fallback where it is safe */
  PATCHCALL_SYNC_MEMBARRIER = 1,  /* membarrier only; create fails if the kernel refuses */
  PATCHCALL_SYNC_MPROTECT_IPI = 2,
  /* qemu-user only (PATCHCALL_SYNC=emulator-remap), never on hardware: what arena_info reports
   * there; not accepted in patchcall_options */
  PATCHCALL_SYNC_EMULATOR_REMAP = 3
};

/* One code write, reported under the runtime's text mutex. */
typedef struct patchcall_patch_event {
  const void* site;        /* first byte of the patched instruction */
  const void* new_target;  /* where it now calls (a veneer when the target is far) */
  int form;                /* enum patchcall_site_form */
} patchcall_patch_event;

/* Fill with patchcall_options_init before changing fields; fields mirror patchcall::Options. */
typedef struct patchcall_options {
  size_t struct_size;            /* sizeof(patchcall_options), set by patchcall_options_init */
  size_t arena_size;             /* bytes, in [64 KiB, 2 GiB) */
  const void* arena_hint;        /* NULL: within rel32 reach of the executable's text */
  int allow_veneers;             /* nonzero: far targets go through veneers */
  uint32_t target_alignment;     /* targets must be multiples of this (power of two) */
  int sync;                      /* enum patchcall_sync_method */
  uint32_t grace_deadline_ms;    /* default bound of synchronize / barrier / reclamation */
  uint32_t grace_spin_us;        /* spin before sleeping while waiting for a grace period */
  int background_reclaimer;      /* zero: no runtime thread; call patchcall_barrier / _poll */
  uint32_t max_threads, max_sites, max_keys;
  /* Called under the text mutex for every site or trampoline write; it must not update
   * keys (that returns PATCHCALL_E_REENTRANT_UPDATE). NULL: none. */
  void (*patch_observer)(void* user, const patchcall_patch_event* event);
  void* patch_observer_user;
  /* Receives diagnostics (a stuck thread, a refused membarrier). NULL: stderr. */
  void (*diagnostic_sink)(void* user, const char* message);
  void* diagnostic_user;
  /* Added in 0.2 (a smaller struct_size from an older header keeps the default, 0):
   * nonzero reports, once per thread, a safepoint / offline / online call on a thread that
   * is not registered (patchcall::Options::reportUnregisteredThreads). */
  int report_unregistered_threads;
  /* Added in 0.3 (patchcall::Options::perfMap, jitDump, jitDumpDirectory, gdbJit; README
   * "Profiling and debugging JIT code"). An older struct_size keeps the defaults: off, off,
   * NULL, PATCHCALL_GDB_JIT_DESCRIBED. */
  int perf_map;                    /* nonzero: /tmp/perf-<pid>.map */
  int jitdump;                     /* nonzero: jit-<pid>.dump */
  const char* jitdump_directory;   /* NULL: $JITDUMPDIR, else /tmp (copied at create) */
  int gdb_jit;                     /* enum patchcall_gdb_jit */
} patchcall_options;

/* Which blobs get an ELF image for gdb's JIT interface (patchcall::GdbJitMode). */
enum patchcall_gdb_jit {
  PATCHCALL_GDB_JIT_DESCRIBED = 0, /* installed with a name, ranges or a frame layout */
  PATCHCALL_GDB_JIT_ALL = 1,
  PATCHCALL_GDB_JIT_OFF = 2
};

/* The defaults of patchcall::Options. */
void patchcall_options_init(patchcall_options* options);

/* options may be NULL (defaults). On success *out is a runtime to pass to
 * patchcall_runtime_destroy; on failure *out is NULL. */
int patchcall_runtime_create(const patchcall_options* options, patchcall_runtime** out);
/* Unregister threads first. NULL is accepted. */
void patchcall_runtime_destroy(patchcall_runtime* rt);

typedef struct patchcall_arena_info {
  const void* rx_base;
  const void* rw_base;
  size_t size, used;
  int64_t distance_from_text;
  int near_text;  /* nonzero: from every arena byte a direct call (rel32, BL) reaches the executable */
  int sync;       /* enum patchcall_sync_method create() settled on */
} patchcall_arena_info;

typedef struct patchcall_stats {
  uint64_t keys, sites, blobs, veneers;
  uint64_t updates, site_writes, syncs;
  uint64_t traps_emulated;
  uint64_t grace_periods, toggle_grace_waits;
  uint64_t callbacks_retired, callbacks_run;
  uint64_t blobs_retired, blobs_freed, blobs_pinned_by_stacks;
  uint64_t site_metadata_bytes;
} patchcall_stats;

int patchcall_arena_info_get(const patchcall_runtime* rt, patchcall_arena_info* out);
int patchcall_stats_get(const patchcall_runtime* rt, patchcall_stats* out);

/* Added in 0.3 (ArenaInfo::sharedAfterFork, RuntimeStats::codeCopiesAfterFork; README "fork()").
 * After fork() parent and child share the arena's pages until each one's first code write,
 * which copies the used bytes into a memfd of that process's own. A struct of its own: the two
 * above keep their 0.1 layout for callers built against an older header. */
typedef struct patchcall_fork_state {
  int shared_after_fork;           /* nonzero: nothing written since the fork, no copy made yet */
  uint64_t code_copies_after_fork; /* copies this process made at a first write after a fork */
} patchcall_fork_state;
int patchcall_fork_state_get(const patchcall_runtime* rt, patchcall_fork_state* out);
/* The byte JIT polls compare with zero, and the shared poll slow path (for C code
 * generators that emit their own polls). The stub preserves every register, rflags and the
 * whole XSAVE state; it does not move rsp first, so a poll that keeps the red zone calls it
 * as `lea rsp,[rsp-128] ; call stub ; lea rsp,[rsp+128]`. NULL for a NULL runtime. */
const volatile uint8_t* patchcall_safepoint_flag(const patchcall_runtime* rt);
/* Shared targets for any key (Runtime::noopTarget / returnZeroTarget): returns at once, and
 * returns 0. NULL for a NULL runtime. */
const void* patchcall_noop_target(const patchcall_runtime* rt);
const void* patchcall_return_zero_target(const patchcall_runtime* rt);
const void* patchcall_safepoint_stub(const patchcall_runtime* rt);

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

/* ---- code ---------------------------------------------------------------------------------- */

typedef struct patchcall_blob {
  uint32_t id;  /* 0 is never a valid blob */
  void* code;   /* RX address of the first byte (64-byte aligned) */
  size_t size;
} patchcall_blob;

/* A call site inside code being installed: offset of its first byte (the E8, or the toggle
 * for PATCHCALL_SITE_TOGGLE). DIRECT needs (code + offset + 1) % 4 == 0; blobs are 64-byte
 * aligned, so (offset + 1) % 4 == 0. The rel32 bytes are written by patchcall. */
typedef struct patchcall_site_spec {
  uint32_t offset;
  patchcall_key key;
  int form; /* enum patchcall_site_form, not AUTO */
} patchcall_site_spec;

/* Copies position-independent `bytes` into the arena, binds each site to its key's current
 * target and makes the code visible to every core. Errors: INVALID_ARGUMENT (size 0, a
 * site that overlaps or is not an E8 / toggle, AUTO form), UNKNOWN_KEY, ARENA_EXHAUSTED,
 * TOO_MANY_SITES, OUT_OF_RANGE. */
int patchcall_code_install(patchcall_runtime* rt, const uint8_t* bytes, size_t size, const patchcall_site_spec* sites,
                           size_t site_count, patchcall_blob* out);

/* For code that must know its final address (rip-relative references out of the blob):
 * reserve, write the code for `rx` through `rw`, then commit (or abandon). */
typedef struct patchcall_reservation {
  uint8_t* rx;
  uint8_t* rw;
  size_t size;
} patchcall_reservation;
int patchcall_code_reserve(patchcall_runtime* rt, size_t size, patchcall_reservation* out);
int patchcall_code_commit(patchcall_runtime* rt, const patchcall_reservation* reservation,
                          const patchcall_site_spec* sites, size_t site_count, patchcall_blob* out);
/* Frees an uncommitted reservation: exactly what patchcall_code_reserve returned (only a
 * range outside the arena is detected: INVALID_ARGUMENT). */
int patchcall_code_abandon(patchcall_runtime* rt, const patchcall_reservation* reservation);

/* Names and frame layout of installed code (patchcall::CodeInfo, code_info.h): perf, jitdump
 * and gdb show the names; a declared frame layout is checked against the bytes and its
 * .eh_frame registered with the unwinder until the blob is freed. */
enum patchcall_frame_layout {
  PATCHCALL_FRAME_NONE = 0,
  PATCHCALL_FRAME_POINTER = 1,                /* push rbp; mov rbp, rsp ... leave; ret */
  PATCHCALL_FRAME_POINTER_ANY_EPILOGUE = 2    /* the prologue; any epilogues inside */
};
typedef struct patchcall_named_range {
  uint32_t offset; /* from the blob's first byte */
  uint32_t size;
  const char* name;
} patchcall_named_range;
typedef struct patchcall_code_info {
  size_t struct_size;                   /* set by patchcall_code_info_init */
  const char* name;                     /* NULL or "": unnamed */
  const patchcall_named_range* ranges;  /* may be NULL when range_count is 0 */
  size_t range_count;
  int frame_layout;                     /* enum patchcall_frame_layout */
} patchcall_code_info;
void patchcall_code_info_init(patchcall_code_info* info);
/* As patchcall_code_install / _commit with `info` (not NULL). Errors as those, plus
 * INVALID_ARGUMENT: struct_size unknown, a range empty, overlapping or past the end, bytes
 * that do not follow the declared frame layout (nothing is installed). */
int patchcall_code_install_with(patchcall_runtime* rt, const uint8_t* bytes, size_t size, const patchcall_site_spec* sites,
                                size_t site_count, const patchcall_code_info* info, patchcall_blob* out);
int patchcall_code_commit_with(patchcall_runtime* rt, const patchcall_reservation* reservation,
                               const patchcall_site_spec* sites, size_t site_count, const patchcall_code_info* info,
                               patchcall_blob* out);

/* Frees the blob after a grace period once no key targets it and no registered thread's
 * stack holds an address inside it (freed code is filled with int3). Errors:
 * STILL_TARGETED (update the key first), DOUBLE_RETIRE, INVALID_ARGUMENT (not a blob). */
int patchcall_blob_retire(patchcall_runtime* rt, patchcall_blob blob);

/* ---- sites ------------------------------------------------------------------------------- */

typedef struct patchcall_site_info {
  const void* address;
  patchcall_key key;
  int form;
  const void* target;  /* what the site's active call decodes to now */
  int foreign;
} patchcall_site_info;

/* ---- introspection: every key, site and blob (Runtime::keys, sites, blobs) --------------------
 * Each walks a snapshot taken under the text mutex and calls `visit` outside it, in id order;
 * a nonzero return from `visit` stops the walk (and is returned). The pointers inside an info
 * are valid during that call only. Errors: INVALID_ARGUMENT (NULL), OUT_OF_MEMORY. */
typedef struct patchcall_key_info {
  patchcall_key key;
  const char* name;  /* "" when unnamed */
  const void* target;
  const void* trampoline;
  size_t sites;
} patchcall_key_info;
typedef struct patchcall_blob_info {
  patchcall_blob blob;
  const char* name;                     /* "" when unnamed */
  const patchcall_named_range* ranges;  /* range_count entries, by offset */
  size_t range_count;
  int frame_layout;                     /* enum patchcall_frame_layout */
  int retired;                          /* nonzero: retired, not yet freed */
  size_t sites;
} patchcall_blob_info;
int patchcall_keys_each(const patchcall_runtime* rt, int (*visit)(void* user, const patchcall_key_info* key), void* user);
int patchcall_sites_each(const patchcall_runtime* rt, int (*visit)(void* user, const patchcall_site_info* site), void* user);
int patchcall_blobs_each(const patchcall_runtime* rt, int (*visit)(void* user, const patchcall_blob_info* blob), void* user);

/* Error: UNKNOWN_SITE. */
int patchcall_site_info_get(const patchcall_runtime* rt, const void* address, patchcall_site_info* out);
/* An existing call in code patchcall did not emit (e.g. compiled C): x86-64 a 5-byte E8 call,
 * patched with the breakpoint protocol; aarch64 a 4-byte aligned BL, patched by one aligned
 * store (a Direct site). Written through /proc/self/mem, to the key's current target (the key
 * is not updated). What is checked: see Runtime::registerForeignSite. Errors: UNSUPPORTED_SITE
 * (not in an executable mapping, not E8 / BL, not writable through /proc/self/mem),
 * UNKNOWN_KEY, INVALID_ARGUMENT (NULL, misaligned on aarch64, inside the arena, already
 * registered, overlapping a registered foreign site), OUT_OF_RANGE. */
int patchcall_foreign_site_register(patchcall_runtime* rt, void* call_instruction, patchcall_key key);
/* Error: UNKNOWN_SITE. The instruction keeps its current target. */
int patchcall_foreign_site_unregister(patchcall_runtime* rt, void* call_instruction);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PATCHCALL_PATCHCALL_H */
