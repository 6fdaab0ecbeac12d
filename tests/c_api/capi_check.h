/* C API tests: a minimal harness (C11) and shared fixtures.
 *
 * CHECK / CHECK_CODE print the file, line, expression, both codes with their names and the
 * library's last error message, count the failure and carry on; main() returns nonzero if
 * anything failed. */
#ifndef PATCHCALL_CAPI_CHECK_H
#define PATCHCALL_CAPI_CHECK_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "patchcall/patchcall.h"

static int capi_failures = 0;
static unsigned capi_codes_seen = 0; /* bit i: code i was returned where a test expected it */

#define CHECK(cond)                                                                                  \
  do {                                                                                               \
    if (!(cond)) {                                                                                   \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n  last error message: '%s'\n", __FILE__, __LINE__, \
              #cond, patchcall_last_error_message());                                                \
      capi_failures++;                                                                               \
    }                                                                                                \
  } while (0)

#define CHECK_CODE(expr, want)                                                                          \
  do {                                                                                                  \
    int got_ = (expr);                                                                                  \
    int want_ = (want);                                                                                 \
    if (got_ != want_) {                                                                                \
      fprintf(stderr, "%s:%d: %s\n  returned %d (%s), expected %d (%s)\n  message: '%s'\n", __FILE__,   \
              __LINE__, #expr, got_, patchcall_strerror(got_), want_, patchcall_strerror(want_),        \
              patchcall_last_error_message());                                                          \
      capi_failures++;                                                                                  \
    } else if (got_ >= 0 && got_ < PATCHCALL_ERROR_COUNT) {                                             \
      capi_codes_seen |= 1u << got_;                                                                    \
    }                                                                                                   \
  } while (0)

/* A failing call must leave a message naming the problem. */
#define CHECK_MESSAGE_HAS(text)                                                                          \
  do {                                                                                                   \
    if (strstr(patchcall_last_error_message(), (text)) == NULL) {                                        \
      fprintf(stderr, "%s:%d: last error message '%s' does not mention '%s'\n", __FILE__, __LINE__,      \
              patchcall_last_error_message(), (text));                                                   \
      capi_failures++;                                                                                   \
    }                                                                                                    \
  } while (0)

#define RUN(test)                        \
  do {                                   \
    int before_ = capi_failures;         \
    test();                              \
    fprintf(stderr, "%s %s\n", capi_failures == before_ ? "[ OK ]" : "[FAIL]", #test); \
  } while (0)

static inline int capi_finish(const char* suite) {
  fprintf(stderr, "%s: %s (%d failure%s)\n", suite, capi_failures == 0 ? "PASSED" : "FAILED", capi_failures,
          capi_failures == 1 ? "" : "s");
  return capi_failures == 0 ? 0 : 1;
}

/* Under an emulator (qemu-user: tests/cmake/c_api.cmake sets PATCHCALL_TEST_EMULATED=1 for a
 * cross build's tests), for the few checks of what the emulator does not provide. */
static inline int capi_emulated(void) {
  const char* e = getenv("PATCHCALL_TEST_EMULATED");
  return e != NULL && strcmp(e, "1") == 0;
}

/* ---- call targets ---------------------------------------------------------------------------- */

/* noinline + distinct bodies so every target has its own address. */
__attribute__((noinline, aligned(16))) int capi_target_one(void) { return 1; }
__attribute__((noinline, aligned(16))) int capi_target_two(void) { return 2; }
__attribute__((noinline, aligned(16))) int capi_target_three(void) { return 3; }

typedef int (*capi_int_fn)(void);

static inline capi_int_fn capi_as_fn(const void* p) { return (capi_int_fn)(uintptr_t)p; }

/* ---- hand-assembled code ---------------------------------------------------------------------- */

/* The host ISA's hand-assembled sites and returners: c_api/<isa>/capi_code.h (the include path
 * names the host's; tests/cmake/c_api.cmake). */
#include "capi_code.h"

static inline patchcall_runtime* capi_new_runtime(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)4 << 20;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  return rt;
}

/* Installs `code` with one site of `form` at `offset` bound to `key`. */
static inline patchcall_blob capi_install(patchcall_runtime* rt, const uint8_t* code, size_t size, uint32_t offset,
                                          patchcall_key key, int form) {
  patchcall_site_spec site = {offset, key, form};
  patchcall_blob blob;
  CHECK_CODE(patchcall_code_install(rt, code, size, &site, 1, &blob), PATCHCALL_OK);
  return blob;
}

#endif /* PATCHCALL_CAPI_CHECK_H */
