/* patchcall C API tests: hand-assembled x86-64 code (capi_check.h includes this). */
#ifndef PATCHCALL_CAPI_CODE_H
#define PATCHCALL_CAPI_CODE_H

#include <stdint.h>

/* Toggle and Breakpoint sites exist (aarch64 has Direct sites only). */
#define CAPI_HAS_X86_FORMS 1
/* Freed code is int3-filled. */
#define CAPI_FILL_BYTE 0xCC

/* push rbp ; nop2 ; call <site> ; pop rbp ; ret — the site's E8 sits at offset 3, so its rel32
 * (offset 4) is 4-byte aligned in a 64-byte aligned blob: a valid DIRECT site. rsp is
 * 16-byte aligned at the call. */
enum { CAPI_DIRECT_SITE_OFFSET = 3, CAPI_DIRECT_CODE_SIZE = 10 };
__attribute__((unused)) static const uint8_t capi_direct_code[CAPI_DIRECT_CODE_SIZE] = {0x55, 0x66, 0x90, 0xE8, 0, 0, 0, 0, 0x5D, 0xC3};

/* push rbp ; call <site> ; pop rbp ; ret — the E8 at offset 1 has an unaligned rel32: only a
 * BREAKPOINT site (DIRECT is rejected). */
enum { CAPI_UNALIGNED_SITE_OFFSET = 1, CAPI_UNALIGNED_CODE_SIZE = 8 };
__attribute__((unused)) static const uint8_t capi_unaligned_code[CAPI_UNALIGNED_CODE_SIZE] = {0x55, 0xE8, 0, 0, 0, 0, 0x5D, 0xC3};

/* push rbp ; nop ; [66 90 | E8 A | EB 05 | E8 B] ; pop rbp ; ret — a TOGGLE site at offset 2
 * (2-byte aligned): toggle, call A, jmp over call B, call B. */
enum { CAPI_TOGGLE_SITE_OFFSET = 2, CAPI_TOGGLE_CODE_SIZE = 18 };
__attribute__((unused)) static const uint8_t capi_toggle_code[CAPI_TOGGLE_CODE_SIZE] = {0x55, 0x90, 0x66, 0x90, 0xE8, 0, 0, 0, 0,
                                                                0xEB, 0x05, 0xE8, 0, 0, 0, 0, 0x5D, 0xC3};

/* A key's trampoline slot is [target cell: 8][CC CC CC][E9 rel32] (runtime/arch/x86_64/stubs.h): its
 * entry, what patchcall_key_trampoline returns, lies this far past the target cell. */
enum { CAPI_TRAMPOLINE_CELL_OFFSET = 11 };

/* What site errors call the patchable call (runtime/arch/x86_64/branch.h kCallName). */
#define CAPI_CALL_NAME "5-byte `call rel32` (E8)"

/* Every form exists: nothing is refused for its form (aarch64 names its refusal here). */
#define CAPI_UNSUPPORTED_FORM_TEXT ""

/* A compiled-C-like function with a foreign call site: capi_foreign_caller calls
 * capi_foreign_default through the E8 at capi_foreign_call (offset 4). Foreign sites are
 * patched with the breakpoint protocol; the caller's first bytes overlap the call's 5. */
#define CAPI_FOREIGN_SITE_FORM PATCHCALL_SITE_BREAKPOINT
#define CAPI_FOREIGN_CALLER_ASM                   \
  ".text\n"                                       \
  ".p2align 4\n"                                  \
  ".globl capi_foreign_caller\n"                  \
  ".type capi_foreign_caller, @function\n"        \
  "capi_foreign_caller:\n"                        \
  "  push %rbp\n"                                 \
  "  mov %rsp, %rbp\n"                            \
  ".globl capi_foreign_call\n"                    \
  "capi_foreign_call:\n"                          \
  "  call capi_foreign_default\n"                 \
  "  pop %rbp\n"                                  \
  "  ret\n"                                       \
  ".size capi_foreign_caller, .-capi_foreign_caller\n"
/* Instructions start anywhere: a foreign site can overlap another (capi_foreign_caller's
 * first byte does), none is misaligned. */
#define CAPI_INSTRUCTIONS_ALIGNED 0

/* ucontext: zero the callee-saved registers a fresh context would otherwise inherit. */
#define CAPI_CLEAR_CALLEE_SAVED(uc)                                                                   \
  do {                                                                                               \
    (uc).uc_mcontext.gregs[REG_RBX] = (uc).uc_mcontext.gregs[REG_RBP] = (uc).uc_mcontext.gregs[REG_R12] = 0; \
    (uc).uc_mcontext.gregs[REG_R13] = (uc).uc_mcontext.gregs[REG_R14] = (uc).uc_mcontext.gregs[REG_R15] = 0; \
  } while (0)

/* mov eax, 7 ; ret */
__attribute__((unused)) static const uint8_t capi_return7_code[6] = {0xB8, 7, 0, 0, 0, 0xC3};

#endif
