/* patchcall C API tests: hand-assembled A64 code (capi_check.h includes this). */
#ifndef PATCHCALL_CAPI_CODE_H
#define PATCHCALL_CAPI_CODE_H

#include <stdint.h>

/* Only Direct sites: kToggle and kBreakpoint are refused on aarch64. */
#define CAPI_HAS_X86_FORMS 0
/* Freed code is udf #0 (00 bytes). */
#define CAPI_FILL_BYTE 0x00

/* stp x29, x30, [sp, #-16]! ; bl <site> ; ldp x29, x30, [sp], #16 ; ret: the site's BL at
 * offset 4, a valid DIRECT site (every A64 instruction is aligned). */
enum { CAPI_DIRECT_SITE_OFFSET = 4, CAPI_DIRECT_CODE_SIZE = 16 };
__attribute__((unused)) static const uint8_t capi_direct_code[CAPI_DIRECT_CODE_SIZE] = {
    0xFD, 0x7B, 0xBF, 0xA9, 0x00, 0x00, 0x00, 0x94, 0xFD, 0x7B, 0xC1, 0xA8, 0xC0, 0x03, 0x5F, 0xD6};
/* No unaligned or toggle site exists here: the names stand for the Direct code, so the tests'
 * x86-only paths (if (CAPI_HAS_X86_FORMS)) still compile. */
enum { CAPI_UNALIGNED_SITE_OFFSET = CAPI_DIRECT_SITE_OFFSET, CAPI_UNALIGNED_CODE_SIZE = CAPI_DIRECT_CODE_SIZE };
enum { CAPI_TOGGLE_SITE_OFFSET = CAPI_DIRECT_SITE_OFFSET, CAPI_TOGGLE_CODE_SIZE = CAPI_DIRECT_CODE_SIZE };
#define capi_unaligned_code capi_direct_code
#define capi_toggle_code capi_direct_code

/* A key's trampoline slot is [target cell: 8][b imm26][udf #0] (runtime/arch/aarch64/stubs.h): its
 * entry, what patchcall_key_trampoline returns, lies this far past the target cell. */
enum { CAPI_TRAMPOLINE_CELL_OFFSET = 8 };

/* What site errors call the patchable call (runtime/arch/aarch64/branch.h kCallName). */
#define CAPI_CALL_NAME "4-byte `bl imm26` (94000000)"
/* What installing a Toggle or Breakpoint site reports (INVALID_ARGUMENT; kUnsupportedFormWhy). */
#define CAPI_UNSUPPORTED_FORM_TEXT "aarch64 has only Direct sites"

/* A compiled-C-like function with a foreign call site: capi_foreign_caller calls
 * capi_foreign_default through the BL at capi_foreign_call (offset 8). Foreign BLs are
 * Direct sites (one aligned store through /proc/self/mem). */
#define CAPI_FOREIGN_SITE_FORM PATCHCALL_SITE_DIRECT
#define CAPI_FOREIGN_CALLER_ASM                   \
  ".text\n"                                       \
  ".p2align 4\n"                                  \
  ".globl capi_foreign_caller\n"                  \
  ".type capi_foreign_caller, %function\n"        \
  "capi_foreign_caller:\n"                        \
  "  stp x29, x30, [sp, #-16]!\n"                 \
  "  mov x29, sp\n"                               \
  ".globl capi_foreign_call\n"                    \
  "capi_foreign_call:\n"                          \
  "  bl capi_foreign_default\n"                   \
  "  ldp x29, x30, [sp], #16\n"                   \
  "  ret\n"                                       \
  ".size capi_foreign_caller, .-capi_foreign_caller\n"
/* Every instruction is 4-byte aligned: foreign sites never overlap, and an address inside a
 * BL is refused as misaligned. */
#define CAPI_INSTRUCTIONS_ALIGNED 1

/* ucontext: zero the callee-saved registers (x19-x29) a fresh context would otherwise inherit. */
#define CAPI_CLEAR_CALLEE_SAVED(uc)                                 \
  do {                                                             \
    for (int capi_r_ = 19; capi_r_ <= 29; ++capi_r_) (uc).uc_mcontext.regs[capi_r_] = 0; \
  } while (0)

/* movz w0, #7 ; ret */
__attribute__((unused)) static const uint8_t capi_return7_code[8] = {0xE0, 0x00, 0x80, 0x52, 0xC0, 0x03, 0x5F, 0xD6};

#endif
