/* patchcall — C API: a runtime, its options, arena, statistics and shared targets.
 * The whole C API: patchcall/patchcall.h. */
#ifndef PATCHCALL_C_RUNTIME_H
#define PATCHCALL_C_RUNTIME_H

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

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PATCHCALL_C_RUNTIME_H */
