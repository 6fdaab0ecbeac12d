/* tests/static_aot: a small failure harness and the disassembler check of every AOT site that
 * patchcall_static_sites_each reports. C11, also valid C++ (the clang++ variants).
 *
 * aot_check_sites() walks the sites once and checks, for each (the instruction names are the
 * ISA's, aot_insn_name(): x86-64 NOP5 / JMP32 / CALL32, A64 NOP / B / BL):
 *  - BRANCH: it is one record of a loaded module's __patchcall_jump_table (found by its
 *    address; visited exactly once), the record's key is the site's object, and the
 *    instruction is a JUMP to the record's label iff (expected enabled) XOR (likely), else a
 *    NOP; `destination` agrees with the instruction (the label, or NULL for the NOP).
 *  - TRAMPOLINE: at the call's trampoline, exactly one per call; a JUMP to the expected
 *    target when it is within branch reach, else to the trampoline's indirect path; for the
 *    no-op (NULL) target to the trampoline's `ret` (directly or through the indirect path);
 *    the call object's `target` field holds the target (the `ret` for NULL); the rest of the
 *    trampoline is as the header emits it (aot_trampoline_body_ok).
 *  - CALL / TAIL_CALL (inline sites): after one of the call's markers in the same module; a
 *    CALL / JUMP to the target when in reach, else to a destination that reaches the
 *    trampoline (the trampoline, or a PLT entry bound to it); a NOP for the no-op target (a
 *    tail call site must never become a NOP: it would fall through; it must reach a `ret`).
 * Everything that disagrees is printed (up to a limit) and counted. */
#ifndef PATCHCALL_AOT_SITES_H
#define PATCHCALL_AOT_SITES_H

#include <stddef.h>
#include <stdint.h>

#include "patchcall/static_call_aot.h"
#include "patchcall/static_key.h"

PATCHCALL_EXTERN_C_BEGIN_

/* ---- failures ---------------------------------------------------------------------------- */
extern long aot_failures;
/* Prints "FAIL: <message>" (the first 40 failures, then only counts) and counts it. */
void aot_failf(const char* format, ...) __attribute__((format(printf, 1, 2)));
#define AOT_CHECK(cond, format, ...)                                                         \
  do {                                                                                       \
    if (!(cond)) aot_failf("%s:%d: %s: " format, __FILE__, __LINE__, #cond, ##__VA_ARGS__);  \
  } while (0)
/* Checks a patchcall return code, printing both codes and patchcall_last_error_message(). */
#define AOT_CHECK_CODE(expr, want)                                                                        \
  do {                                                                                                    \
    int aot_got_ = (expr);                                                                                \
    int aot_want_ = (want);                                                                               \
    if (aot_got_ != aot_want_)                                                                            \
      aot_failf("%s:%d: %s returned %d (%s), expected %d (%s); message: '%s'", __FILE__, __LINE__, #expr, \
                aot_got_, patchcall_strerror(aot_got_), aot_want_, patchcall_strerror(aot_want_),        \
                patchcall_last_error_message());                                                          \
  } while (0)

/* ---- instruction decoding: one decoder per ISA (static_aot/<isa>/aot_decode.c: x86-64 with
 * Zydis, aarch64 with Capstone) behind these functions ------------------------------------- */
enum aot_insn_kind {
  AOT_INSN_OTHER = 0,
  AOT_INSN_NOP,  /* the site's NOP (x86-64: the 5-byte NOP; A64: nop) */
  AOT_INSN_JUMP, /* a direct jump of the site's form (jmp rel32; b imm26) */
  AOT_INSN_CALL, /* a direct call of the site's form (call rel32; bl imm26) */
  AOT_INSN_RET
};
struct aot_insn {
  int ok;
  int kind;
  int length;
  uintptr_t target; /* JUMP / CALL */
  char text[96];
};
void aot_decode(const void* address, struct aot_insn* out);
/* The ISA's name of an instruction kind, for messages ("NOP5", "JMP32", ... or "NOP", "B", ...). */
const char* aot_insn_name(int kind);
/* 1 when `destination` reaches `trampoline`: it is the trampoline, or a PLT entry (x86-64: an
 * optional endbr64, then jmp [rip+slot]; A64: an optional bti c, then adrp/ldr x17/add/br x17)
 * whose slot holds the trampoline. */
int aot_reaches(const void* destination, const void* trampoline);
/* 1 when a JUMP / CALL at `instruction` can reach `target` (rel32 from the 5-byte instruction's
 * end; imm26: +-128 MiB from the instruction). */
int aot_in_branch_reach(const void* instruction, const void* target);
/* 1 when the trampoline's instructions after its first (the patched one) are the header's: its
 * indirect path loads `call`'s target through a slot holding `call`, and its `ret`; else 0 with
 * what differs in `why`. */
int aot_trampoline_body_ok(const void* trampoline, const void* call, char* why, size_t why_size);
/* 1 when updates rewrite sites with the breakpoint protocol (x86-64), so a thread can meet an
 * int3 mid-batch; 0 when every site is one store (A64: no trap is ever taken). */
int aot_breakpoint_protocol(void);
/* What a debugger writes over a site's first instruction (x86-64: int3; A64: brk #0): its bytes
 * in `out`, its length returned. */
size_t aot_debugger_breakpoint(unsigned char out[8]);

/* ---- the site model --------------------------------------------------------------------------- */
#define AOT_MAX_MODULES 4
struct aot_site_module {
  const char* name;
  uintptr_t lo, hi; /* [lo, hi): the module's mapped segments */
  const struct patchcall_jump_entry* jumps_begin;
  const struct patchcall_jump_entry* jumps_end;
  const struct patchcall_call_site_entry* sites_begin;
  const struct patchcall_call_site_entry* sites_end;
};
struct aot_site_model {
  int nkeys;
  struct patchcall_static_key* const* keys; /* the keys of the loaded modules */
  const char* const* key_names;
  const int* key_enabled; /* expected */
  int ncalls;
  struct patchcall_static_call* const* calls;
  const char* const* call_names;
  const void* const* call_trampolines;
  const void* const* call_targets; /* expected target; NULL: the no-op */
  int nmodules;
  struct aot_site_module modules[AOT_MAX_MODULES];
  int ignore_other_modules; /* sites outside the modules are counted (other_sites), not failures */
};
struct aot_site_report {
  long sites;
  long by_kind[AOT_MAX_MODULES][5]; /* [module][enum patchcall_static_site_kind] */
  long inline_direct[AOT_MAX_MODULES];    /* inline sites calling their target directly */
  long inline_fallback[AOT_MAX_MODULES];  /* inline sites reaching the trampoline (target out of reach) */
  long inline_noop[AOT_MAX_MODULES];      /* inline sites of a no-op target */
  long branches_of_key_max;
  long other_sites; /* with ignore_other_modules */
  long failures;    /* found by this walk */
};
/* Walks patchcall_static_sites_each once; returns the failures found (also counted in
 * aot_failures). `where` names the moment in messages. */
long aot_check_sites(const struct aot_site_model* model, struct aot_site_report* report, const char* where);
/* The number of jump-table records of `key` in the model's modules. */
long aot_branches_in_tables(const struct aot_site_model* model, const struct patchcall_static_key* key);

/* ---- modules ------------------------------------------------------------------------------- */
/* Fills lo/hi with the span of the PT_LOAD segments of the loaded object containing `address`;
 * returns 0 when there is none. */
int aot_module_span(const void* address, uintptr_t* lo, uintptr_t* hi);

/* Monotonic time in seconds. */
double aot_now(void);
/* 1 under an emulator (qemu-user: tests/cmake/static_aot.cmake sets PATCHCALL_TEST_EMULATED=1 in
 * a cross build), for what the emulator does not do as hardware does. */
int aot_emulated(void);
/* The factor of the long runs' iteration counts: PATCHCALL_TEST_SCALE (scripts/test-aarch64
 * sets 0.1 under qemu-user), 1 when unset; 0 when it is not a positive number. */
double aot_test_scale(void);

PATCHCALL_EXTERN_C_END_

#endif /* PATCHCALL_AOT_SITES_H */
