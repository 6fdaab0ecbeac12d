/* patchcall — static keys (jump labels) for ahead-of-time compiled C and C++.
 *
 *   PATCHCALL_DEFINE_STATIC_KEY_FALSE(tracing);           (at file scope, once per program)
 *   ...
 *   if (PATCHCALL_STATIC_BRANCH_UNLIKELY(&tracing)) trace(event);   (costs one NOP)
 *   ...
 *   patchcall_static_key_enable(&tracing);    (every branch of the key now jumps to trace())
 *
 * Each branch is an `asm goto` whose instruction is (x86-64) a 5-byte NOP or a `jmp rel32` to
 * the branch's code; a record of it goes into the module's __patchcall_jump_table (see
 * static_module.h). Enabling or disabling a key rewrites all of its branches, in every loaded
 * module, in one batch of the breakpoint protocol (int3 on every first byte, sync all cores,
 * the tails, sync, the first bytes: two syncs), while other threads run them: a thread reaching a
 * branch mid-batch sees its old or its new direction, never a mix. Text stays read-execute:
 * the writes go through /proc/self/mem (checked, and the kernel's copy is not promised to be one
 * store, so no single-store shortcut is taken for compiled code). Modules loaded later (dlopen) get branches
 * in the key's current direction; a dlclose'd module's branches are forgotten.
 *
 * Rules: define keys at file scope (in C++ at namespace scope, any namespace); a key is a
 * plain object, and the functions below refuse (UNKNOWN_KEY, never a crash) an address that
 * is not a key of a loaded module, e.g. one of a library already dlclose'd. The key functions
 * take a process-wide mutex; they may be called from any thread (not from a signal handler)
 * and are fork-safe (a child flips its own copy; the parent is unaffected).
 *
 * On aarch64 a branch is a NOP or `b label`, and a batch needs no breakpoint: B and NOP may
 * replace each other while other cores run them (the Arm ARM's concurrent modification and
 * execution rule), so each branch is one aligned 32-bit store through /proc/self/mem, and one
 * sync of every core (membarrier SYNC_CORE) follows the batch.
 *
 * Elsewhere (PATCHCALL_STATIC_PATCHING 0) a branch is a relaxed load of the key's state. */
#ifndef PATCHCALL_STATIC_KEY_H
#define PATCHCALL_STATIC_KEY_H

#include <stddef.h>
#include <stdint.h>

#include "patchcall/static_module.h"

#ifdef __cplusplus
#include <type_traits>
#endif

PATCHCALL_EXTERN_C_BEGIN_

struct patchcall_static_key {
  int32_t enabled;   /* the current state; read it with patchcall_static_key_enabled */
  uint32_t initial;  /* the state the program was compiled with (1: DEFINE_STATIC_KEY_TRUE) */
  uint64_t reserved;
};
/* Two types so a branch knows at compile time which instruction the key's default needs. */
struct patchcall_static_key_true {
  struct patchcall_static_key key;
};
struct patchcall_static_key_false {
  struct patchcall_static_key key;
};

/* Sets the key's state and rewrites every branch of it (no write, no sync when unchanged; more
 * branches than one protocol round protects, 16,384, flip in several rounds). Errors:
 * UNKNOWN_KEY (not a key of a loaded module), TABLE_FULL (the key's module did not fit the key
 * table; see PATCHCALL_STATIC_KEYS_MAX), UNSUPPORTED_SITE (a branch no longer holds what
 * patchcall wrote, e.g. a debugger's int3: nothing is changed), SYSTEM_ERROR (a write through
 * /proc/self/mem or the cross-core sync failed: the message says which; every branch is left
 * in the old or the new direction, and the key keeps its old state, so a retry rewrites all). */
int patchcall_static_key_set(struct patchcall_static_key* key, int enabled);
/* The number of branches of `key` in loaded modules (0 on error). */
int patchcall_static_key_branches(const struct patchcall_static_key* key, size_t* count);

/* Most keys one process can register (a fixed table; a module that would exceed it is not
 * registered, and its keys report TABLE_FULL). */
#define PATCHCALL_STATIC_KEYS_MAX 65536

PATCHCALL_EXTERN_C_END_

#define PATCHCALL_STATIC_KEY_OBJECT_ __attribute__((section("__patchcall_keys"), used, aligned(16)))

/* (The trailing _Static_assert takes the caller's semicolon after the extern "C" block.) */
#define PATCHCALL_DEFINE_STATIC_KEY_TRUE(name)                                                       \
  PATCHCALL_EXTERN_C_BEGIN_ struct patchcall_static_key_true name PATCHCALL_STATIC_KEY_OBJECT_ = {{1, 1, 0}}; \
  PATCHCALL_EXTERN_C_END_ PATCHCALL_TAKE_SEMICOLON_
#define PATCHCALL_DEFINE_STATIC_KEY_FALSE(name)                                                      \
  PATCHCALL_EXTERN_C_BEGIN_ struct patchcall_static_key_false name PATCHCALL_STATIC_KEY_OBJECT_ = {{0, 0, 0}}; \
  PATCHCALL_EXTERN_C_END_ PATCHCALL_TAKE_SEMICOLON_
#define PATCHCALL_DECLARE_STATIC_KEY_TRUE(name) PATCHCALL_EXTERN_C_ struct patchcall_static_key_true name
#define PATCHCALL_DECLARE_STATIC_KEY_FALSE(name) PATCHCALL_EXTERN_C_ struct patchcall_static_key_false name

#define patchcall_static_key_enable(k) patchcall_static_key_set(&(k)->key, 1)
#define patchcall_static_key_disable(k) patchcall_static_key_set(&(k)->key, 0)
#define patchcall_static_key_enabled(k) (__atomic_load_n(&(k)->key.enabled, __ATOMIC_RELAXED) != 0)

/* 1 when `k` points to a patchcall_static_key_true: a compile-time constant in C and C++. */
#ifdef __cplusplus
#define PATCHCALL_KEY_DEFAULT_TRUE_(k) \
  (std::is_same<typename std::remove_cv<typename std::remove_reference<decltype(*(k))>::type>::type, \
                patchcall_static_key_true>::value ? 1 : 0)
#else
#define PATCHCALL_KEY_DEFAULT_TRUE_(k) \
  (__builtin_types_compatible_p(__typeof__(*(k)), struct patchcall_static_key_true) ? 1 : 0)
#endif

/* The per-use reference must be a constant (C: a static initializer; C++: constexpr), so a
 * branch on a key that is not a link-time constant does not compile. */
#ifdef __cplusplus
#define PATCHCALL_CONST_REF_ static constexpr
#else
#define PATCHCALL_CONST_REF_ static
#endif

#if PATCHCALL_STATIC_PATCHING
/* A branch's instruction as compiled: the jump to its label, or the NOP. */
#if defined(__aarch64__)
#define PATCHCALL_STATIC_BRANCH_INSN_ ".if %c[jump]\n\tb %l[patchcall_yes_]\n\t.else\n\tnop\n\t.endif"
#else
#define PATCHCALL_STATIC_BRANCH_INSN_ \
  ".if %c[jump]\n\t.byte 0xe9\n\t.long %l[patchcall_yes_] - 2f\n\t.else\n\t.byte 0x0f, 0x1f, 0x44, 0x00, 0x00\n\t.endif\n2:"
#endif
/* One branch: falls through while `(enabled != likely)` is false. The record's `key` points
 * to a per-use reference (a local static) rather than to the key itself, because an "i"
 * operand naming a default-visibility object is refused under -fPIC (gcc) and -fPIE/-O0
 * (clang), while a local object is a link-time constant everywhere. */
#define PATCHCALL_STATIC_BRANCH_(k, likely, jump_initially)                                          \
  __extension__({                                                                                   \
    __label__ patchcall_yes_, patchcall_done_;                                                      \
    int patchcall_taken_;                                                                           \
    PATCHCALL_CONST_REF_ struct patchcall_static_key* const patchcall_ref_ __attribute__((used)) = &(k)->key; \
    __asm__ goto(                                                                                   \
        "1:\n\t" PATCHCALL_STATIC_BRANCH_INSN_ "\n\t"                                               \
        ".pushsection __patchcall_jump_table, \"aw\"\n\t.balign 8\n\t"                               \
        ".quad 1b, %l[patchcall_yes_], %c[ref] + %c[lk]\n\t.popsection"                             \
        : : [ref] PATCHCALL_ADDRESS_CONSTRAINT_(&patchcall_ref_), [lk] "i"(likely), [jump] "i"(jump_initially) \
        : : patchcall_yes_);                                                                        \
    patchcall_taken_ = 0;                                                                           \
    goto patchcall_done_;                                                                           \
  patchcall_yes_:                                                                                   \
    patchcall_taken_ = 1;                                                                           \
  patchcall_done_:                                                                                  \
    patchcall_taken_;                                                                               \
  })
/* True while the key is enabled; the disabled path is the fall-through. */
#define PATCHCALL_STATIC_BRANCH_UNLIKELY(k) \
  (PATCHCALL_STATIC_BRANCH_(k, 0, PATCHCALL_KEY_DEFAULT_TRUE_(k)) != 0)
/* True while the key is enabled; the enabled path is the fall-through. */
#define PATCHCALL_STATIC_BRANCH_LIKELY(k) \
  (PATCHCALL_STATIC_BRANCH_(k, 1, 1 - PATCHCALL_KEY_DEFAULT_TRUE_(k)) == 0)
#else
#define PATCHCALL_STATIC_BRANCH_UNLIKELY(k) __builtin_expect(patchcall_static_key_enabled(k), 0)
#define PATCHCALL_STATIC_BRANCH_LIKELY(k) __builtin_expect(patchcall_static_key_enabled(k), 1)
#endif

#endif /* PATCHCALL_STATIC_KEY_H */
