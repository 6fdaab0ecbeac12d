// patchcall — cross-core instruction-stream serialization.
#include "cross_core_sync.h"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "test_hooks.h"

namespace patchcall::detail {
namespace {

long membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0U, 0); }

bool registerSyncCore() {
  long supported = membarrier(MEMBARRIER_CMD_QUERY);
  if (supported < 0 || (supported & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) == 0) return false;
  return membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE) == 0;
}

// The "flags" line of the first CPU in /proc/cpuinfo ("" if unreadable).
std::string cpuFlags() {
  std::string flags;
  FILE* f = std::fopen("/proc/cpuinfo", "re");
  if (f == nullptr) return flags;
  char line[8192];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, "flags", 5) == 0) {
      flags = line;
      break;
    }
  }
  std::fclose(f);
  return flags;
}

bool hasWord(const std::string& text, const char* word) {
  size_t n = std::strlen(word);
  for (size_t at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) {
    bool startOk = at == 0 || text[at - 1] == ' ' || text[at - 1] == '\t' || text[at - 1] == ':';
    bool endOk = at + n == text.size() || text[at + n] == ' ' || text[at + n] == '\n';
    if (startOk && endOk) return true;
  }
  return false;
}

}  // namespace

std::string CrossCoreSync::fallbackUnsafeReason(const char* release, const char* flags) {
  int major = 0, minor = 0;
  if (std::sscanf(release, "%d.%d", &major, &minor) != 2) {
    return std::string("cannot parse the kernel release '") + release + "'";
  }
  if (major < 6 || (major == 6 && minor < 15)) return {};  // no INVLPGB broadcast flushes before 6.15
  std::string f = flags;
  if (f.empty()) return "kernel " + std::string(release) + " may flush TLBs with INVLPGB, and /proc/cpuinfo cannot be read to rule it out";
  if (!hasWord(f, "invlpgb")) return {};
  return "kernel " + std::string(release) + " on a CPU with INVLPGB flushes remote TLBs with a broadcast "
         "instruction, not an IPI, so an mprotect downgrade no longer serializes the other cores";
}

bool CrossCoreSync::emulatorRequested() noexcept {
  const char* env = std::getenv("PATCHCALL_SYNC");
  return env != nullptr && std::strcmp(env, "emulator-remap") == 0;
}

Status CrossCoreSync::init(SyncMethod method, int (*remap)(void*), void* remapArg) {
  // The environment asks for the emulator's sync where there is code to remap (an arena); a
  // writer without one (AOT text, written through /proc/self/mem: it drops the emulator's
  // translations itself) keeps membarrier.
  if (method == SyncMethod::kAuto && remap != nullptr && emulatorRequested()) {
    method = SyncMethod::kEmulatorRemap;
  }
  if (method == SyncMethod::kEmulatorRemap) {
    if (remap == nullptr) return Status(Error::kSyncUnsupported, "SyncMethod::kEmulatorRemap needs the arena's remap");
    if (!registerSyncCore()) {
      return Status(Error::kSyncUnsupported, std::string("the kernel refused membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE): ") +
                                                 std::strerror(errno) + " (SyncMethod::kEmulatorRemap)");
    }
    method_ = SyncMethod::kEmulatorRemap;
    remap_ = remap;
    remapArg_ = remapArg;
    return Status::ok();
  }
  std::string membarrierError;
  if (method != SyncMethod::kMprotectIpi) {
    if (registerSyncCore()) {
      method_ = SyncMethod::kMembarrier;
      return Status::ok();
    }
    membarrierError = std::string("the kernel refused membarrier(REGISTER_PRIVATE_EXPEDITED_SYNC_CORE): ") + std::strerror(errno);
    if (method == SyncMethod::kMembarrier) {
      return Status(Error::kSyncUnsupported,
                    membarrierError + "; use SyncMethod::kAuto or kMprotectIpi for the mprotect-IPI fallback");
    }
  }
  method_ = SyncMethod::kMprotectIpi;
  // The fallback's safety condition: every remote TLB flush is an IPI.
  struct utsname u;
  std::string release = uname(&u) == 0 ? u.release : "?";
  std::string flags = cpuFlags();
  if (TestHooks* hooks = testHooks(); hooks != nullptr && hooks->fakeKernelRelease.load() != nullptr) {
    release = hooks->fakeKernelRelease.load();
    flags = hooks->fakeCpuFlags.load() != nullptr ? hooks->fakeCpuFlags.load() : "";
  }
  std::string unsafe = fallbackUnsafeReason(release.c_str(), flags.c_str());
  if (!unsafe.empty()) {
    return Status(Error::kSyncUnsupported, (membarrierError.empty() ? "" : membarrierError + "; ") +
                                               "the mprotect-IPI fallback cannot be used: " + unsafe);
  }
  ipiPage_ = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (ipiPage_ == MAP_FAILED) {
    ipiPage_ = nullptr;
    return Status(Error::kMapFailed, std::string("mmap of the IPI page for the mprotect fallback failed: ") + std::strerror(errno));
  }
  if (int e = syncOnce(); e != 0) {  // once now, so a kernel that refuses it fails create()
    return Status(Error::kSystemError, std::string("the mprotect fallback's first mprotect failed: ") + std::strerror(e));
  }
  return Status::ok();
}

CrossCoreSync::~CrossCoreSync() {
  if (ipiPage_ != nullptr) munmap(ipiPage_, 4096);
}

int CrossCoreSync::syncOnce() noexcept {
  if (TestHooks* hooks = testHooks(); hooks != nullptr && hooks->syncFailures.load() > 0) {
    hooks->syncFailures.fetch_sub(1);
    return hooks->syncErrno.load();
  }
  if (TestHooks* hooks = testHooks(); hooks != nullptr && hooks->syncSleepUs.load() > 0) {
    usleep(static_cast<useconds_t>(hooks->syncSleepUs.load()));  // a slow sync that leaves the CPU free
  }
  if (method_ == SyncMethod::kEmulatorRemap) {
    if (int e = remap_(remapArg_); e != 0) return e;  // qemu-user retranslates the arena from here on
  }
  if (method_ == SyncMethod::kMembarrier || method_ == SyncMethod::kEmulatorRemap) {
    return membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) == 0 ? 0 : errno;
  }
  // Fallback: dirty the page so its TLB entry is live, then revoke write access. The kernel
  // must shoot down the entry on every core that may cache it (all cores running this mm);
  // each IPI ends in an interrupt return, which serializes that core (init refused the
  // kernels that flush with INVLPGB broadcasts instead).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  static_cast<volatile uint8_t*>(ipiPage_)[0] = 1;
  if (mprotect(ipiPage_, 4096, PROT_READ) != 0) return errno;
  if (mprotect(ipiPage_, 4096, PROT_READ | PROT_WRITE) != 0) return errno;
  return 0;
}

int CrossCoreSync::sync() noexcept {
  count_.fetch_add(1, std::memory_order_relaxed);
  // membarrier's ENOMEM (a cpumask allocation) and mprotect's are transient: retry a little.
  int e = 0;
  for (int attempt = 0; attempt < 3; ++attempt) {
    e = syncOnce();
    if (e == 0) return 0;
    usleep(100);
  }
  return e;
}

Status CrossCoreSync::syncOrError(const char* what) {
  int e = sync();
  if (e == 0) return Status::ok();
  return Status(Error::kSystemError, std::string(what) + ": the cross-core sync (" +
                                         (method_ == SyncMethod::kMembarrier       ? "membarrier SYNC_CORE"
                                          : method_ == SyncMethod::kEmulatorRemap ? "emulator remap + membarrier SYNC_CORE"
                                                                                  : "mprotect fallback") +
                                         ") failed three times: " + std::strerror(e) +
                                         "; the code is written, but other cores may run the old bytes until they next serialize");
}

}  // namespace patchcall::detail
