/* patchcall quick start (C11): code installed as bytes calls a key through a Direct site;
 * the key is retargeted while the code is installed. Built with -Werror -Wall -Wextra
 * -pedantic by ctest (Example_QuickstartC); the README quotes it. */
#include <patchcall/patchcall.h>

#include <stdio.h>

static int slow_square(int x) { return x * x; }
static int cube(int x) { return x * x * x; }

static int fail(const char* what, int code) {
  fprintf(stderr, "quickstart.c: %s: %s (%s)\n", what, patchcall_strerror(code), patchcall_last_error_message());
  return 1;
}

int main(void) {
#if defined(__aarch64__)
  /* int f(int x) { return key(x); } as A64 words: stp x29,x30,[sp,#-16]! ; bl 0 ;
   * ldp x29,x30,[sp],#16 ; ret. The BL (offset 4) is the Direct site; patchcall writes it. */
  static const uint8_t code[] = {0xFD, 0x7B, 0xBF, 0xA9, 0x00, 0x00, 0x00, 0x94,
                                 0xFD, 0x7B, 0xC1, 0xA8, 0xC0, 0x03, 0x5F, 0xD6};
  enum { kSiteOffset = 4 };
#else
  /* int f(int x) { return key(x); } as x86-64 bytes: sub rsp,8 ; nop3 ; call rel32 ;
   * add rsp,8 ; ret. The call's rel32 (offset 8) is 4-byte aligned, as a Direct site needs;
   * patchcall writes it. */
  static const uint8_t code[] = {0x48, 0x83, 0xEC, 0x08, 0x0F, 0x1F, 0x00, 0xE8, 0, 0, 0, 0,
                                 0x48, 0x83, 0xC4, 0x08, 0xC3};
  enum { kSiteOffset = 7 };
#endif
  patchcall_runtime* rt;
  patchcall_key key;
  patchcall_blob blob;
  patchcall_thread* me;
  int (*f)(int);
  int rc = patchcall_runtime_create(NULL, &rt);
  if (rc != PATCHCALL_OK) return fail("patchcall_runtime_create", rc);
  if ((rc = patchcall_key_create(rt, PATCHCALL_FN(&slow_square), "square", &key)) != PATCHCALL_OK) {
    return fail("patchcall_key_create", rc);
  }
  {
    patchcall_site_spec site = {kSiteOffset, 0, PATCHCALL_SITE_DIRECT};
    site.key = key;
    rc = patchcall_code_install(rt, code, sizeof code, &site, 1, &blob);
    if (rc != PATCHCALL_OK) return fail("patchcall_code_install", rc);
  }
  if ((rc = patchcall_thread_register(rt, "main", &me)) != PATCHCALL_OK) return fail("patchcall_thread_register", rc);
  *(void**)&f = blob.code; /* POSIX: object and function pointers convert */
  printf("f(3) = %d\n", f(3));
  if ((rc = patchcall_key_update(rt, key, PATCHCALL_FN(&cube), NULL)) != PATCHCALL_OK) {
    return fail("patchcall_key_update", rc);
  }
  printf("f(3) = %d after the update\n", f(3));
  rc = f(3) == 27 ? 0 : 1;
  patchcall_thread_unregister(me);
  patchcall_runtime_destroy(rt);
  return rc;
}
