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

/* movz w0, #7 ; ret */
__attribute__((unused)) static const uint8_t capi_return7_code[8] = {0xE0, 0x00, 0x80, 0x52, 0xC0, 0x03, 0x5F, 0xD6};

#endif
