/* One key with more branches than one breakpoint-protocol round protects (the trap table's
 * kMaxBatch is 16384; A64 writes one word per site in one batch): AOT_MANY_BRANCHES NOP
 * branches of one FALSE key, stamped out by the assembler in one function (aot_many_branches:
 * it falls through all of them and returns 0, or the first branch that jumps lands on a
 * `return 1`). Flipping the key must either work (every branch rewritten: every site decoded,
 * aot_sites.h) or be refused with TOO_MANY_SITES leaving every branch and the key as they
 * were; while two threads run the function, whose result must be 0 or 1 as the version window
 * allows.
 *
 *   static_aot_many_branches */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <fcntl.h>
#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <string.h>

#include "aot_sites.h"
#include "patchcall/static_key.h"

#define AOT_MANY_BRANCHES 20000
#define AOT_STR_(x) #x
#define AOT_STR(x) AOT_STR_(x)

PATCHCALL_DEFINE_STATIC_KEY_FALSE(aot_many_key);

/* The ISA's instructions: a branch's NOP (as static_key.h compiles it), `return 0`, `return 1`. */
#if defined(__aarch64__)
#define AOT_MANY_NOP "nop"
#define AOT_MANY_RETURN0 "mov w0, #0\n\tret"
#define AOT_MANY_RETURN1 "mov w0, #1\n\tret"
#else
#define AOT_MANY_NOP ".byte 0x0f, 0x1f, 0x44, 0x00, 0x00"
#define AOT_MANY_RETURN0 "xorl %eax, %eax\n\tret"
#define AOT_MANY_RETURN1 "movl $1, %eax\n\tret"
#endif

PATCHCALL_EXTERN_C_ int aot_many_branches(void);
__asm__(".pushsection .text.aot_many_branches, \"ax\", %progbits\n\t"
        ".globl aot_many_branches\n\t"
        ".type aot_many_branches, %function\n"
        "aot_many_branches:\n\t"
        ".rept " AOT_STR(AOT_MANY_BRANCHES) "\n"
        "1:\n\t" AOT_MANY_NOP "\n\t"
        ".pushsection __patchcall_jump_table, \"aw\"\n\t.balign 8\n\t"
        ".quad 1b, .Laot_many_taken, .Laot_many_ref\n\t"
        ".popsection\n\t"
        ".endr\n\t"
        AOT_MANY_RETURN0 "\n"
        ".Laot_many_taken:\n\t"
        AOT_MANY_RETURN1 "\n\t"
        ".size aot_many_branches, .-aot_many_branches\n\t"
        ".popsection\n\t"
        ".pushsection .data.rel.ro.aot_many_ref, \"aw\"\n\t.balign 8\n"
        ".Laot_many_ref:\n\t.quad aot_many_key\n\t"
        ".popsection");

static int g_enabled;           /* expected (main thread) */
static long g_version;          /* atomic: odd while a flip is in progress */
static int g_stop;              /* atomic */
static long g_observations, g_mixed;

static void* aot_reader(void* arg) {
  (void)arg;
  while (!__atomic_load_n(&g_stop, __ATOMIC_ACQUIRE)) {
    long b = __atomic_load_n(&g_version, __ATOMIC_ACQUIRE);
    int r = aot_many_branches();
    long a = __atomic_load_n(&g_version, __ATOMIC_ACQUIRE);
    /* Stable (even, unchanged) windows allow one value: the state after flip b/2. */
    if (a == b && (b & 1) == 0) {
      int want = (int)((b / 2) & 1); /* flips alternate, starting from disabled */
      if (r != want) aot_failf("a reader got %d from aot_many_branches at stable version %ld, expected %d", r, b, want);
    } else {
      __atomic_add_fetch(&g_mixed, 1, __ATOMIC_RELAXED);
    }
    __atomic_add_fetch(&g_observations, 1, __ATOMIC_RELAXED);
  }
  return NULL;
}

static void aot_walk_many(const char* where) {
  struct patchcall_static_key* keys[1] = {&aot_many_key.key};
  const char* key_names[1] = {"aot_many_key"};
  int enabled[1] = {g_enabled};
  struct aot_site_model m;
  memset(&m, 0, sizeof m);
  m.nkeys = 1;
  m.keys = keys;
  m.key_names = key_names;
  m.key_enabled = enabled;
  m.nmodules = 1;
  m.modules[0].name = "executable";
  if (!aot_module_span((const void*)(uintptr_t)&aot_many_branches, &m.modules[0].lo, &m.modules[0].hi))
    aot_failf("no module found for the executable");
  m.modules[0].jumps_begin = (const struct patchcall_jump_entry*)(const void*)__start___patchcall_jump_table;
  m.modules[0].jumps_end = (const struct patchcall_jump_entry*)(const void*)__stop___patchcall_jump_table;
  struct aot_site_report r;
  aot_check_sites(&m, &r, where);
  AOT_CHECK(r.by_kind[0][PATCHCALL_STATIC_SITE_BRANCH] == AOT_MANY_BRANCHES, "%s: %ld BRANCH sites, expected %d", where,
            r.by_kind[0][PATCHCALL_STATIC_SITE_BRANCH], AOT_MANY_BRANCHES);
  int got = aot_many_branches();
  AOT_CHECK(got == g_enabled, "%s: aot_many_branches() = %d, expected %d", where, got, g_enabled);
}

/* A branch whose bytes changed behind patchcall's back (as a debugger's breakpoint would: int3,
 * brk #0): the flip is refused with UNSUPPORTED_SITE before its first write, every other branch
 * unchanged; once the bytes are back, the key flips. */
static int aot_first_site(void* user, const patchcall_static_site_info* site) {
  const void** out = (const void**)user;
  if (site->object == (const void*)&aot_many_key.key && (*out == NULL || site->address < *out)) *out = site->address;
  return 0;
}
static void aot_refuses_a_changed_site(void) {
  const void* site = NULL;
  AOT_CHECK_CODE(patchcall_static_sites_each(aot_first_site, &site), PATCHCALL_OK);
  AOT_CHECK(site != NULL, "no branch of aot_many_key found");
  if (site == NULL) return;
  int fd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
  AOT_CHECK(fd >= 0, "cannot open /proc/self/mem");
  unsigned char saved[8], breakpoint[8];
  size_t n = aot_debugger_breakpoint(breakpoint);
  memcpy(saved, site, n);
  AOT_CHECK(pwrite(fd, breakpoint, n, (off_t)(uintptr_t)site) == (ssize_t)n, "writing the breakpoint");
  patchcall_static_stats before = {0}, after = {0};
  before.struct_size = after.struct_size = sizeof before;
  AOT_CHECK_CODE(patchcall_static_stats_get(&before), PATCHCALL_OK);
  AOT_CHECK_CODE(patchcall_static_key_set(&aot_many_key.key, !g_enabled), PATCHCALL_E_UNSUPPORTED_SITE);
  AOT_CHECK(strstr(patchcall_last_error_message(), "no longer holds") != NULL, "message: %s", patchcall_last_error_message());
  AOT_CHECK_CODE(patchcall_static_stats_get(&after), PATCHCALL_OK);
  AOT_CHECK(after.sites_written == before.sites_written, "a refused flip wrote %llu sites",
            (unsigned long long)(after.sites_written - before.sites_written));
  AOT_CHECK(patchcall_static_key_enabled(&aot_many_key) == g_enabled, "a refused flip changed the key's state");
  AOT_CHECK(pwrite(fd, saved, n, (off_t)(uintptr_t)site) == (ssize_t)n, "restoring the bytes");
  close(fd);
  aot_walk_many("after a refused flip");
  AOT_CHECK_CODE(patchcall_static_key_set(&aot_many_key.key, !g_enabled), PATCHCALL_OK);
  g_enabled = !g_enabled;
  aot_walk_many("after the flip that followed");
}

int main(void) {
  double t0 = aot_now();
  size_t count = 0;
  AOT_CHECK_CODE(patchcall_static_key_branches(&aot_many_key.key, &count), PATCHCALL_OK);
  AOT_CHECK(count == AOT_MANY_BRANCHES, "patchcall_static_key_branches = %zu, expected %d", count, AOT_MANY_BRANCHES);
  aot_walk_many("startup");

  int rc = patchcall_static_key_enable(&aot_many_key);
  fprintf(stderr, "enabling a key of %d branches: %d (%s) '%s'\n", AOT_MANY_BRANCHES, rc, patchcall_strerror(rc),
          patchcall_last_error_message());
  if (rc == PATCHCALL_E_TOO_MANY_SITES) {
    AOT_CHECK(patchcall_last_error_message()[0] != 0, "TOO_MANY_SITES without a message");
    AOT_CHECK(!patchcall_static_key_enabled(&aot_many_key), "a refused enable left the key enabled");
    aot_walk_many("after the refused enable");
  } else if (rc == PATCHCALL_OK) {
    g_enabled = 1;
    aot_walk_many("after the enable");
    AOT_CHECK_CODE(patchcall_static_key_disable(&aot_many_key), PATCHCALL_OK);
    g_enabled = 0;
    aot_walk_many("after the disable");

    /* Under two readers: 40 flips, PATCHCALL_TEST_SCALE times as many under qemu-user (each
     * flip writes and each walk decodes 20,000 sites), never fewer than 4. */
    double scale = aot_test_scale();
    int flips = scale > 0 && scale < 1 ? (int)(40 * scale) : 40;
    if (flips < 4) flips = 4;
    pthread_t t[2];
    for (int i = 0; i < 2; i++) pthread_create(&t[i], NULL, aot_reader, NULL);
    for (int flip = 0; flip < flips && aot_failures < 20; flip++) {
      __atomic_add_fetch(&g_version, 1, __ATOMIC_RELEASE); /* odd: in progress */
      g_enabled = !g_enabled;
      AOT_CHECK_CODE(g_enabled ? patchcall_static_key_enable(&aot_many_key) : patchcall_static_key_disable(&aot_many_key),
                     PATCHCALL_OK);
      __atomic_add_fetch(&g_version, 1, __ATOMIC_RELEASE); /* even: done */
      char where[64];
      snprintf(where, sizeof where, "after flip %d under readers", flip + 1);
      aot_walk_many(where);
    }
    __atomic_store_n(&g_stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    fprintf(stderr, "%d flips of %d branches under 2 readers: %ld calls (%ld during a flip)\n", flips, AOT_MANY_BRANCHES,
            g_observations, g_mixed);
    aot_refuses_a_changed_site();
  } else {
    aot_failf("enabling a key of %d branches returned %d (%s): expected OK or TOO_MANY_SITES", AOT_MANY_BRANCHES, rc,
              patchcall_strerror(rc));
  }
  fprintf(stderr, "static_aot_many_branches: %.2f s: %s (%ld failures)\n", aot_now() - t0,
          aot_failures == 0 ? "PASSED" : "FAILED", aot_failures);
  return aot_failures == 0 ? 0 : 1;
}
