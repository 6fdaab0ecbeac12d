// The cross-core sync's failures are reported, never ignored; the mprotect fallback is refused
// where it cannot serialize the other cores; a failed sigaction is a system error with errno.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "emulation.h"
#include "error_checks.h"
#include "patchcall/testing.h"

namespace patchcall {
namespace {

using checks::callInt;
using checks::fnOne;
using checks::fnTwo;
using checks::installCaller;
using checks::quietManualOptions;

struct ResetHooks {
  ~ResetHooks() {
    testing::setSyncFailures(0, 0);
    testing::setFallbackEnvironment(nullptr, nullptr);
  }
};

TEST(SyncErrors, TransientFailuresAreRetried) {
  ResetHooks reset;
  Result<Runtime> rt = Runtime::create(quietManualOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(fnOne());
  ASSERT_TRUE(key.isOk());
  Result<Blob> caller = installCaller(*rt, *key);
  ASSERT_TRUE(caller.isOk());
  testing::setSyncFailures(2, ENOMEM);  // two attempts fail, the third succeeds
  Result<const void*> old = rt->update(*key, fnTwo());
  EXPECT_TRUE(old.isOk()) << old.status().toString();
  EXPECT_EQ(callInt(caller->code), 2);
}

// The syncs' results used to be ignored: every call below returned OK.
TEST(SyncErrors, PersistentFailureIsASystemErrorAndNothingIsHandedOut) {
  ResetHooks reset;
  Result<Runtime> rt = Runtime::create(quietManualOptions());
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Result<Key> key = rt->createKey(fnOne());
  ASSERT_TRUE(key.isOk());
  Result<Blob> caller = installCaller(*rt, *key);
  ASSERT_TRUE(caller.isOk());
  RuntimeStats before = rt->stats();
  ArenaInfo arena = rt->arenaInfo();

  testing::setSyncFailures(1000, ENOMEM);
  EXPECT_STATUS(rt->update(*key, fnTwo()).status(), Error::kSystemError, std::strerror(ENOMEM));
  EXPECT_EQ(callInt(caller->code), 2) << "the writes are finished even when their sync fails";
  EXPECT_STATUS(installCaller(*rt, *key).status(), Error::kSystemError, "commitCode");
  EXPECT_STATUS(rt->createKey(fnOne()).status(), Error::kSystemError, "createKey");
  testing::setSyncFailures(0, 0);

  RuntimeStats after = rt->stats();
  EXPECT_EQ(after.blobs, before.blobs) << "a blob whose sync failed was handed out";
  EXPECT_EQ(after.sites, before.sites);
  EXPECT_EQ(after.keys, before.keys) << "a key whose sync failed was handed out";
  EXPECT_EQ(rt->arenaInfo().used, arena.used) << "the refused blob's code was not released";
  ASSERT_TRUE(rt->update(*key, fnOne()).isOk());
  EXPECT_EQ(callInt(caller->code), 1);
  EXPECT_TRUE(installCaller(*rt, *key).isOk());
}

TEST(SyncErrors, MprotectFallbackIsRefusedWhereRemoteFlushesAreBroadcasts) {
  ResetHooks reset;
  Options o = quietManualOptions();
  o.sync = SyncMethod::kMprotectIpi;
  struct Case {
    const char *release, *flags;
    bool safe;
  } cases[] = {
      {"6.15.0", "flags\t\t: fpu vme pcid invlpgb rdpru\n", false},
      {"6.18.44-fc", "flags\t\t: fpu invlpgb\n", false},
      {"7.0.1", "flags\t\t: invlpgb fpu\n", false},
      {"6.18.0", "", false},  // flags unknown: cannot rule INVLPGB out
      {"6.14.11", "flags\t\t: fpu invlpgb\n", true},
      {"5.10.0", "flags\t\t: fpu invlpgb\n", true},
      {"6.18.44", "flags\t\t: fpu vme pcid invpcid\n", true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.release) + " / '" + c.flags + "'");
    testing::setFallbackEnvironment(c.release, c.flags);
    Result<Runtime> rt = Runtime::create(o);
    if (c.safe) {
      ASSERT_TRUE(rt.isOk()) << rt.status().toString();
      EXPECT_EQ(rt->arenaInfo().sync, SyncMethod::kMprotectIpi);
      Result<Key> key = rt->createKey(fnOne());
      ASSERT_TRUE(key.isOk());
      Result<Blob> caller = installCaller(*rt, *key);
      ASSERT_TRUE(caller.isOk() && rt->update(*key, fnTwo()).isOk());
      EXPECT_EQ(callInt(caller->code), 2);
    } else {
      EXPECT_STATUS(rt.status(), Error::kSyncUnsupported, "INVLPGB");
    }
  }
}

// On this machine, for real: the decision matches /proc/cpuinfo and uname.
TEST(SyncErrors, MprotectFallbackDecisionOnThisMachine) {
  struct utsname u;
  ASSERT_EQ(uname(&u), 0);
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line, flags;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) == 0) {
      flags = line + " ";
      break;
    }
  }
  int major = 0, minor = 0;
  ASSERT_EQ(std::sscanf(u.release, "%d.%d", &major, &minor), 2);
  bool broadcast = (major > 6 || (major == 6 && minor >= 15)) && (flags.empty() || flags.find(" invlpgb ") != std::string::npos);
  Options o = quietManualOptions();
  o.sync = SyncMethod::kMprotectIpi;
  Result<Runtime> rt = Runtime::create(o);
  std::fprintf(stderr, "kernel %s, invlpgb %s: the mprotect fallback is %s\n", u.release,
               flags.find(" invlpgb ") != std::string::npos ? "yes" : "no", rt.isOk() ? "allowed" : "refused");
  if (broadcast) EXPECT_EQ(rt.code(), Error::kSyncUnsupported);
  else EXPECT_TRUE(rt.isOk()) << rt.status().toString();
}

TEST(SyncErrors, FallbackWhoseMprotectFailsIsASystemError) {
  ResetHooks reset;
  Options o = quietManualOptions();
  o.sync = SyncMethod::kMprotectIpi;
  testing::setFallbackEnvironment("6.1.0", "flags\t\t: fpu\n");
  testing::setSyncFailures(1, EACCES);
  EXPECT_STATUS(Runtime::create(o).status(), Error::kSystemError, std::strerror(EACCES));
}

// ---- the SIGTRAP handler ---------------------------------------------------------------------

// seccomp makes rt_sigaction(SIGTRAP, ...) fail with EPERM in a fresh child process.
int denySigtrapSigaction() {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(offsetof(struct seccomp_data, nr))),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rt_sigaction, 0, 3),
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(offsetof(struct seccomp_data, args[0]))),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SIGTRAP, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
  return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}

void refusedSigactionChild() {
  if (denySigtrapSigaction() != 0) {
    std::fprintf(stderr, "seccomp unavailable (errno %d): nothing to check\n", errno);
    _exit(0);
  }
  Result<Runtime> rt = Runtime::create(quietManualOptions());
  std::fprintf(stderr, "create without sigaction: %s\n", rt.status().toString().c_str());
  if (rt.code() != Error::kSystemError) _exit(1);
  if (rt.status().message().find("sigaction(SIGTRAP)") == std::string::npos) _exit(2);
  if (rt.status().message().find(std::strerror(EPERM)) == std::string::npos) _exit(3);
  _exit(0);
}

// It used to be kInvalidArgument, as if the caller had passed something wrong.
TEST(SyncErrorsDeathTest, SigactionFailureIsASystemErrorWithErrno) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(refusedSigactionChild(), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace patchcall
