/* patchcall — how the static keys and static calls of one module (the executable or a shared
 * library) reach the runtime. Included by static_key.h and static_call_aot.h; nothing here is
 * called directly.
 *
 * The macros of those headers leave records in four sections of the module that uses them:
 *   __patchcall_keys        the key objects themselves (PATCHCALL_DEFINE_STATIC_KEY_*)
 *   __patchcall_calls       the static call objects (PATCHCALL_DEFINE_STATIC_CALL)
 *   __patchcall_jump_table  one entry per static branch: its NOP5/JMP32, its label, its key
 *   __patchcall_call_sites  one entry per PATCHCALL_STATIC_CALL use: a marker placed just
 *                           before the call the compiler emits, and the call's object
 * The linker brackets each with __start_/__stop_ symbols per module. Every translation unit
 * that includes this header carries the same weak, hidden constructor and destructor, so each
 * module gets exactly one pair: the constructor hands the module's sections to
 * patchcall_module_register (at load, before the module's own constructors of default
 * priority; dlopen included) and the destructor withdraws them (exit, dlclose). A module
 * whose sections are empty registers nothing.
 *
 * Process-wide state (README, "Process-wide state"): the runtime's table of registered
 * modules, keys, calls and sites, and one text mutex over every AOT patch.
 *
 * At the end: introspection of every site and the registry's counters (keys and calls alike). */
#ifndef PATCHCALL_STATIC_MODULE_H
#define PATCHCALL_STATIC_MODULE_H

#include <stddef.h>
#include <stdint.h>

#include "patchcall/error_codes.h"

/* PATCHCALL_TAKE_SEMICOLON_: a declaration that takes the semicolon after a macro's block. */
#ifdef __cplusplus
#define PATCHCALL_TAKE_SEMICOLON_ static_assert(true, "")
#define PATCHCALL_EXTERN_C_ extern "C"
#define PATCHCALL_EXTERN_C_BEGIN_ extern "C" {
#define PATCHCALL_EXTERN_C_END_ }
#else
#define PATCHCALL_TAKE_SEMICOLON_ _Static_assert(1, "")
#define PATCHCALL_EXTERN_C_
#define PATCHCALL_EXTERN_C_BEGIN_
#define PATCHCALL_EXTERN_C_END_
#endif

/* Static keys and branches patch code on x86-64 and aarch64. Elsewhere the same macros compile
 * to a relaxed load of the key's state and a call through the static call's target field: same
 * semantics, no patching (PATCHCALL_STATIC_PATCHING says which).
 * PATCHCALL_ADDRESS_CONSTRAINT_: the asm operand constraint for a link-time constant address
 * (aarch64's "i" refuses symbols under -fPIC/-fPIE; "S" is its symbolic-address constraint). */
#if (defined(__x86_64__) || defined(__aarch64__)) && (defined(__GNUC__) || defined(__clang__))
#define PATCHCALL_STATIC_PATCHING 1
#else
#define PATCHCALL_STATIC_PATCHING 0
#endif
#if defined(__aarch64__)
#define PATCHCALL_ADDRESS_CONSTRAINT_ "S"
#else
#define PATCHCALL_ADDRESS_CONSTRAINT_ "i"
#endif

PATCHCALL_EXTERN_C_BEGIN_

struct patchcall_static_key;
struct patchcall_static_call;

/* __patchcall_jump_table: `code` is the branch's instruction (x86-64: the 5-byte NOP or JMP32;
 * aarch64: NOP or B), `target` its label,
 * `key` the address of a per-use reference holding the key's address, plus 1 for a
 * PATCHCALL_STATIC_BRANCH_LIKELY branch (whose jump is taken while the key is disabled). */
struct patchcall_jump_entry {
  uintptr_t code;
  uintptr_t target;
  uintptr_t key;
};
/* __patchcall_call_sites: `marker` precedes (in the same function) the call to the call's
 * trampoline that the compiler emitted for one PATCHCALL_STATIC_CALL use. */
struct patchcall_call_site_entry {
  uintptr_t marker;
  struct patchcall_static_call* call;
};

#define PATCHCALL_MODULE_ABI 1
struct patchcall_module {
  uint32_t abi; /* PATCHCALL_MODULE_ABI */
  uint32_t reserved;
  /* [begin, end) of each section (NULL, NULL when the module has none): arrays of
   * struct patchcall_static_key, patchcall_static_call, patchcall_jump_entry and
   * patchcall_call_site_entry. */
  const void* keys_begin;
  const void* keys_end;
  const void* calls_begin;
  const void* calls_end;
  const void* jumps_begin;
  const void* jumps_end;
  const void* sites_begin;
  const void* sites_end;
};

/* Called by the constructor and destructor below. Registration never fails the load: a
 * module that could not be registered (a full table, an allocation failure) is remembered
 * with its error, which patchcall_static_key_enable/_disable and patchcall_static_call_update
 * on its keys and calls then return, and patchcall_static_module_status reports. */
void patchcall_module_register(const struct patchcall_module* module);
void patchcall_module_unregister(const struct patchcall_module* module);
/* PATCHCALL_OK, or the error that kept the module containing `address` (any address inside
 * the module: a key, a call, a function) from being registered, with its message in
 * patchcall_last_error_message(). UNKNOWN_KEY: no registered module contains `address`. */
int patchcall_static_module_status(const void* address);

/* What patchcall wrote at one AOT site, for tests, debuggers and tools. */
enum patchcall_static_site_kind {
  PATCHCALL_STATIC_SITE_BRANCH = 1,     /* a static branch: NOP5 or JMP32 (aarch64: NOP or B) */
  PATCHCALL_STATIC_SITE_TRAMPOLINE = 2, /* a static call's trampoline: JMP32 (B) */
  PATCHCALL_STATIC_SITE_CALL = 3,       /* an inline call site: CALL32 or NOP5 (BL or NOP) */
  PATCHCALL_STATIC_SITE_TAIL_CALL = 4   /* an inline tail call site: JMP32 (B) */
};
typedef struct patchcall_static_site_info {
  const void* address;      /* the instruction (x86-64: 5 bytes; aarch64: one word) */
  const void* object;       /* its struct patchcall_static_key or struct patchcall_static_call */
  int kind;                 /* enum patchcall_static_site_kind */
  const void* destination;  /* where it goes now (NULL: it is a NOP5) */
} patchcall_static_site_info;
/* Visits every site of every loaded module under the mutex (visit must not call the static
 * key or call functions); a nonzero return from visit stops the walk and is returned. */
int patchcall_static_sites_each(int (*visit)(void* user, const patchcall_static_site_info* site), void* user);

/* Counters of the AOT registry (process-wide). Set struct_size = sizeof(struct
 * patchcall_static_stats) before the call: later versions only append fields. */
typedef struct patchcall_static_stats {
  size_t struct_size;
  size_t modules;            /* registered modules (with one that failed: see failed_modules) */
  size_t failed_modules;     /* modules whose registration failed (TABLE_FULL, ...) */
  size_t keys, calls;        /* registered keys and calls */
  size_t branches, trampolines, call_sites, tail_call_sites; /* sites by kind */
  uint64_t batches;          /* batches written (x86-64: of the breakpoint protocol) */
  uint64_t sites_written;    /* instructions rewritten */
  uint64_t writes;           /* pwrite calls to /proc/self/mem */
  uint64_t syncs;            /* cross-core syncs */
  uint64_t traps_emulated;   /* int3 traps the handler continued (JIT and AOT sites alike; 0 on aarch64) */
} patchcall_static_stats;
/* Errors: INVALID_ARGUMENT (NULL, or struct_size smaller than the first version's). */
int patchcall_static_stats_get(patchcall_static_stats* out);

extern const char __start___patchcall_keys[] __attribute__((weak, visibility("hidden")));
extern const char __stop___patchcall_keys[] __attribute__((weak, visibility("hidden")));
extern const char __start___patchcall_calls[] __attribute__((weak, visibility("hidden")));
extern const char __stop___patchcall_calls[] __attribute__((weak, visibility("hidden")));
extern const char __start___patchcall_jump_table[] __attribute__((weak, visibility("hidden")));
extern const char __stop___patchcall_jump_table[] __attribute__((weak, visibility("hidden")));
extern const char __start___patchcall_call_sites[] __attribute__((weak, visibility("hidden")));
extern const char __stop___patchcall_call_sites[] __attribute__((weak, visibility("hidden")));

/* One per module (weak: the copies of every translation unit merge; hidden: never the
 * executable's copy for a library). Not const: C++ would give it internal linkage. */
__attribute__((weak, visibility("hidden"))) struct patchcall_module __patchcall_this_module = {
    PATCHCALL_MODULE_ABI,      0,
    __start___patchcall_keys,  __stop___patchcall_keys,
    __start___patchcall_calls, __stop___patchcall_calls,
    __start___patchcall_jump_table, __stop___patchcall_jump_table,
    __start___patchcall_call_sites, __stop___patchcall_call_sites,
};
__attribute__((weak, visibility("hidden"), constructor(101))) void __patchcall_module_load(void) {
  patchcall_module_register(&__patchcall_this_module);
}
__attribute__((weak, visibility("hidden"), destructor(101))) void __patchcall_module_unload(void) {
  patchcall_module_unregister(&__patchcall_this_module);
}

PATCHCALL_EXTERN_C_END_

#endif /* PATCHCALL_STATIC_MODULE_H */
