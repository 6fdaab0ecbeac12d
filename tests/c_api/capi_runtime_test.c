/* C API: runtime lifetime, options, introspection, error strings, the per-thread last
 * error message, manual reclamation, and the sync fallback when the kernel refuses
 * membarrier (a child process under a seccomp filter). */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "capi_check.h"

static void options_init_matches_documented_defaults(void) {
  patchcall_options o;
  memset(&o, 0xAB, sizeof o);
  patchcall_options_init(&o);
  CHECK(o.struct_size == sizeof(patchcall_options));
  CHECK(o.arena_size == (size_t)256 << 20);
  CHECK(o.arena_hint == NULL);
  CHECK(o.allow_veneers == 1);
  CHECK(o.target_alignment == 1);
  CHECK(o.sync == PATCHCALL_SYNC_AUTO);
  CHECK(o.grace_deadline_ms == 10000);
  CHECK(o.grace_spin_us > 0 && o.grace_spin_us < 1000000); /* a tuning value: only sane */
  CHECK(o.background_reclaimer == 1);
  CHECK(o.max_threads == 1024);
  CHECK(o.max_sites == 1u << 24);
  CHECK(o.max_keys == 1u << 20);
  CHECK(o.patch_observer == NULL && o.patch_observer_user == NULL);
  CHECK(o.diagnostic_sink == NULL && o.diagnostic_user == NULL);
  patchcall_options_init(NULL); /* tolerated */
}

static void create_with_defaults_and_destroy(void) {
  patchcall_runtime* rt = (patchcall_runtime*)1;
  CHECK_CODE(patchcall_runtime_create(NULL, &rt), PATCHCALL_OK);
  CHECK(rt != NULL);
  CHECK(strcmp(patchcall_last_error_message(), "") == 0);
  patchcall_arena_info a;
  CHECK_CODE(patchcall_arena_info_get(rt, &a), PATCHCALL_OK);
  CHECK(a.size == (size_t)256 << 20);
  CHECK(a.rx_base != NULL && a.rw_base != NULL && a.rx_base != a.rw_base);
  CHECK(a.used > 0); /* the runtime page */
#if defined(__aarch64__)
  CHECK(a.near_text == 0); /* BL reaches +-128 MiB: part of a 256 MiB arena (handed out first) */
#else
  CHECK(a.near_text == 1); /* rel32 reaches the whole arena */
#endif
  CHECK(a.sync == PATCHCALL_SYNC_MEMBARRIER || a.sync == PATCHCALL_SYNC_MPROTECT_IPI ||
        a.sync == PATCHCALL_SYNC_EMULATOR_REMAP); /* the last under qemu-user (scripts/test-aarch64) */
  patchcall_stats s;
  memset(&s, 0xFF, sizeof s);
  CHECK_CODE(patchcall_stats_get(rt, &s), PATCHCALL_OK);
  CHECK(s.keys == 0 && s.sites == 0 && s.blobs == 0 && s.updates == 0);
  CHECK(patchcall_safepoint_flag(rt) != NULL && *patchcall_safepoint_flag(rt) == 0);
  CHECK(patchcall_safepoint_stub(rt) != NULL);
  CHECK(patchcall_safepoint_flag(NULL) == NULL && patchcall_safepoint_stub(NULL) == NULL);
  patchcall_runtime_destroy(rt);
  patchcall_runtime_destroy(NULL); /* tolerated */
}

static void bad_options_are_rejected(void) {
  patchcall_runtime* rt = (patchcall_runtime*)1;
  patchcall_options o;
  patchcall_options_init(&o);
  o.struct_size = 8;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK(rt == NULL);
  CHECK_MESSAGE_HAS("patchcall_options_init");
  patchcall_options_init(&o);
  o.max_threads = 0;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("maxThreads");
  patchcall_options_init(&o);
  o.target_alignment = 3;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("power of two");
  patchcall_options_init(&o);
  o.arena_size = 4096;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("arena size");
  patchcall_options_init(&o);
  o.sync = 7;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_runtime_create(NULL, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_arena_info_get(NULL, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_stats_get(NULL, NULL), PATCHCALL_E_INVALID_ARGUMENT);
}

static void strerror_names_every_code(void) {
  for (int i = 0; i < PATCHCALL_ERROR_COUNT; ++i) {
    const char* s = patchcall_strerror(i);
    CHECK(s != NULL && s[0] != '\0');
    CHECK(strcmp(s, "unknown error") != 0);
    for (int j = 0; j < i; ++j) CHECK(strcmp(s, patchcall_strerror(j)) != 0);
  }
  CHECK(strcmp(patchcall_strerror(PATCHCALL_OK), "ok") == 0);
  CHECK(strcmp(patchcall_strerror(PATCHCALL_E_UNKNOWN_KEY), "unknown key") == 0);
  CHECK(strcmp(patchcall_strerror(PATCHCALL_E_EMIT_FAILED), "emission failed") == 0);
  CHECK(strcmp(patchcall_strerror(-1), "unknown error") == 0);
  CHECK(strcmp(patchcall_strerror(PATCHCALL_ERROR_COUNT), "unknown error") == 0);
}

/* The last error message is per thread: a failure on one thread does not show on another,
 * and a successful call clears it. */
static void* fail_on_other_thread(void* arg) {
  patchcall_runtime* rt = arg;
  CHECK(strcmp(patchcall_last_error_message(), "") == 0);
  CHECK_CODE(patchcall_key_destroy(rt, 4242), PATCHCALL_E_UNKNOWN_KEY);
  CHECK_MESSAGE_HAS("4242");
  return NULL;
}

static void last_error_message_is_per_thread(void) {
  patchcall_runtime* rt = capi_new_runtime();
  CHECK_CODE(patchcall_key_update(rt, 777, PATCHCALL_FN(capi_target_one), NULL), PATCHCALL_E_UNKNOWN_KEY);
  CHECK_MESSAGE_HAS("key 777");
  pthread_t t;
  CHECK(pthread_create(&t, NULL, fail_on_other_thread, rt) == 0);
  pthread_join(t, NULL);
  CHECK_MESSAGE_HAS("key 777"); /* not 4242 */
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), NULL, &key), PATCHCALL_OK);
  CHECK(strcmp(patchcall_last_error_message(), "") == 0);
  patchcall_runtime_destroy(rt);
}

/* Without the background reclaimer, retired callbacks run from poll/barrier only. */
static int manual_runs = 0;
static void count_manual_run(void* user) { manual_runs += *(int*)user; }

static void manual_reclamation_with_poll(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)1 << 20;
  o.background_reclaimer = 0;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  int weight = 5;
  CHECK_CODE(patchcall_retire_callback(rt, count_manual_run, &weight), PATCHCALL_OK);
  CHECK(manual_runs == 0);
  /* poll starts the grace period itself; with no registered thread it completes at once */
  CHECK(patchcall_poll(rt) == 1);
  CHECK(manual_runs == 5);
  CHECK_CODE(patchcall_synchronize(rt, 1000), PATCHCALL_OK);
  CHECK(patchcall_poll(rt) == 0);
  CHECK_CODE(patchcall_retire_callback(rt, count_manual_run, &weight), PATCHCALL_OK);
  CHECK_CODE(patchcall_barrier(rt, 1000), PATCHCALL_OK);
  CHECK(manual_runs == 10);
  patchcall_stats s;
  CHECK_CODE(patchcall_stats_get(rt, &s), PATCHCALL_OK);
  CHECK(s.callbacks_retired == 2 && s.callbacks_run == 2);
  CHECK(patchcall_poll(NULL) == 0);
  patchcall_runtime_destroy(rt);
}

/* ---- membarrier refused: SYNC_UNSUPPORTED with sync = MEMBARRIER, the fallback with AUTO -- */

static int deny_membarrier(void) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, (uint32_t)offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {(unsigned short)(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

static int diagnostics_seen = 0;
static void collect_diagnostic(void* user, const char* message) {
  (void)user;
  if (strstr(message, "membarrier") != NULL) diagnostics_seen++;
}

static void refused_membarrier_child(void) {
  if (deny_membarrier() != 0) {
    fprintf(stderr, "cannot install the seccomp filter (errno %d); skipping\n", errno);
    _exit(77);
  }
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)1 << 20;
  o.sync = PATCHCALL_SYNC_MEMBARRIER;
  patchcall_runtime* rt = (patchcall_runtime*)1;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_E_SYNC_UNSUPPORTED);
  CHECK(rt == NULL);
  CHECK_MESSAGE_HAS("membarrier");

  o.sync = PATCHCALL_SYNC_AUTO;
  o.diagnostic_sink = collect_diagnostic;
  int created = patchcall_runtime_create(&o, &rt);
  if (created == PATCHCALL_E_SYNC_UNSUPPORTED && strstr(patchcall_last_error_message(), "INVLPGB") != NULL) {
    fprintf(stderr, "the mprotect fallback is refused on this kernel and CPU (INVLPGB): nothing more to check\n");
    _exit(capi_failures == 0 ? 0 : 1);
  }
  CHECK_CODE(created, PATCHCALL_OK);
  CHECK(diagnostics_seen == 1);
  patchcall_arena_info a;
  CHECK_CODE(patchcall_arena_info_get(rt, &a), PATCHCALL_OK);
  CHECK(a.sync == PATCHCALL_SYNC_MPROTECT_IPI);
  /* The fallback still patches code correctly. */
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "fallback", &key), PATCHCALL_OK);
  patchcall_blob blob = capi_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, key,
                                     PATCHCALL_SITE_DIRECT);
  CHECK(capi_as_fn(blob.code)() == 1);
  CHECK_CODE(patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_two), NULL), PATCHCALL_OK);
  CHECK(capi_as_fn(blob.code)() == 2);
  patchcall_runtime_destroy(rt);
  _exit(capi_failures == 0 ? 0 : 1);
}

static void refused_membarrier_is_an_error_or_a_fallback(void) {
  fflush(stderr);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) refused_membarrier_child();
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  if (WIFEXITED(status) && WEXITSTATUS(status) == 77) return; /* seccomp unavailable: reported above */
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}


static int unregistered_reports = 0;
static void collect_unregistered(void* user, const char* message) {
  (void)user;
  if (strstr(message, "not registered") != NULL) unregistered_reports++;
}

/* report_unregistered_threads: one diagnostic per thread for a safepoint on a thread that
 * never registered; an options struct of the 0.1 size (without that field) is still accepted
 * and keeps the default (no report). */
static void unregistered_safepoints_are_reported_once_when_asked(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  CHECK(o.report_unregistered_threads == 0);
  o.arena_size = (size_t)1 << 20;
  o.diagnostic_sink = collect_unregistered;
  o.report_unregistered_threads = 1;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_safepoint();
  patchcall_safepoint();
  CHECK(unregistered_reports == 1);
  patchcall_runtime_destroy(rt);

  unregistered_reports = 0;
  o.struct_size = offsetof(patchcall_options, diagnostic_user) + sizeof(void*);
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_safepoint();
  CHECK(unregistered_reports == 0);
  patchcall_runtime_destroy(rt);
  o.struct_size = offsetof(patchcall_options, diagnostic_user);
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_E_INVALID_ARGUMENT);
}

/* patchcall_fork_state_get: the child shares the parent's code until its first write, which
 * copies it (once); neither process's write reaches the other. The child exits with a
 * distinct code per failed check. */
static int fork_state_child(patchcall_runtime* rt, patchcall_key key) {
  patchcall_fork_state f;
  if (patchcall_fork_state_get(rt, &f) != PATCHCALL_OK) return 10;
  if (!f.shared_after_fork || f.code_copies_after_fork != 0) return 11; /* copied at the fork */
  if (patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_one), NULL) != PATCHCALL_OK) return 12;
  if (patchcall_fork_state_get(rt, &f) != PATCHCALL_OK || !f.shared_after_fork) return 13; /* a no-op copied */
  if (patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_two), NULL) != PATCHCALL_OK) return 14;
  if (patchcall_fork_state_get(rt, &f) != PATCHCALL_OK) return 15;
  if (f.shared_after_fork || f.code_copies_after_fork != 1) return 16; /* the write did not copy */
  return 0;
}

static void fork_state_reports_sharing_until_the_first_write(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)1 << 20;
  o.background_reclaimer = 0; /* no thread: the child runs under qemu-user too */
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_fork_state f;
  CHECK_CODE(patchcall_fork_state_get(rt, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_fork_state_get(NULL, &f), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_fork_state_get(rt, &f), PATCHCALL_OK);
  CHECK(f.shared_after_fork == 0 && f.code_copies_after_fork == 0);
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "fork-state", &key), PATCHCALL_OK);
  fflush(stderr);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) _exit(fork_state_child(rt, key));
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    fprintf(stderr, "  fork_state child: %s %d (fork_state_child's check)\n", WIFEXITED(status) ? "exit" : "signal",
            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
  }
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  const void* target = NULL;
  CHECK_CODE(patchcall_key_target(rt, key, &target), PATCHCALL_OK);
  CHECK(target == PATCHCALL_FN(capi_target_one)); /* the child's update stayed in the child */
  CHECK_CODE(patchcall_fork_state_get(rt, &f), PATCHCALL_OK);
  CHECK(f.shared_after_fork == 1 && f.code_copies_after_fork == 0);
  CHECK_CODE(patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_three), NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_fork_state_get(rt, &f), PATCHCALL_OK);
  CHECK(f.shared_after_fork == 0 && f.code_copies_after_fork == 1);
  patchcall_runtime_destroy(rt);
}

int main(void) {
  /* fork first, while this process has no runtime threads. */
  RUN(refused_membarrier_is_an_error_or_a_fallback);
  RUN(options_init_matches_documented_defaults);
  RUN(create_with_defaults_and_destroy);
  RUN(bad_options_are_rejected);
  RUN(strerror_names_every_code);
  RUN(last_error_message_is_per_thread);
  RUN(manual_reclamation_with_poll);
  RUN(unregistered_safepoints_are_reported_once_when_asked);
  RUN(fork_state_reports_sharing_until_the_first_write);
  return capi_finish("CApi_Runtime");
}
