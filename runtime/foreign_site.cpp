// patchcall — foreign sites: `E8 rel32` calls in code patchcall did not emit, written through
// /proc/self/mem with the breakpoint protocol.
//
// A foreign site is checked when it is registered (executable mapping, no overlap, an E8, a
// write the kernel accepts) and probed again before every update writes it (still mapped,
// still exactly the call patchcall last wrote, still writable), so an update that cannot
// complete is refused before its first write.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "format.h"
#include "proc_maps.h"
#include "runtime_impl.h"

namespace patchcall {

namespace {

using detail::hex;

std::string bytesText(const uint8_t* b, size_t n) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, i == 0 ? "%02X" : " %02X", b[i]);
    s += buf;
  }
  return s;
}

// All five bytes in executable mappings of this process (a snapshot of /proc/self/maps).
Status checkExecutable(uintptr_t a) {
  std::vector<detail::Mapping> maps = detail::readMaps();
  if (maps.empty()) return Status(Error::kUnsupportedSite, "registerForeignSite: /proc/self/maps cannot be read");
  std::vector<detail::Mapping> cover = detail::mappingsCovering(maps, a, a + arch::kCallSize);
  if (cover.empty()) {
    return Status(Error::kUnsupportedSite, "registerForeignSite: " + hex(a) + " .. +5 is not (entirely) mapped");
  }
  for (const detail::Mapping& m : cover) {
    if (!m.exec()) {
      return Status(Error::kUnsupportedSite, "registerForeignSite: " + hex(a) + " lies in a mapping that is not executable (" +
                                                 hex(m.begin) + "-" + hex(m.end) + " " + m.perms +
                                                 (m.path.empty() ? "" : " " + m.path) + "): not code");
    }
  }
  return Status::ok();
}

}  // namespace

Status Runtime::Impl::probeForeignSite(uintptr_t a, const uint8_t expected[arch::kCallSize], const char* what) {
  constexpr size_t n = arch::kCallSize;
  uint8_t now[n];
  if (pread(procMemFd, now, n, static_cast<off_t>(a)) != static_cast<ssize_t>(n)) {
    return Status(Error::kUnsupportedSite, std::string(what) + ": foreign site " + hex(a) +
                                               " is no longer mapped (reading it through /proc/self/mem: " +
                                               std::strerror(errno) + "); was its code unmapped or dlclosed? "
                                               "unregister the site before its code goes away");
  }
  if (std::memcmp(now, expected, n) != 0) {
    return Status(Error::kUnsupportedSite, std::string(what) + ": foreign site " + hex(a) + " holds " + bytesText(now, n) +
                                               ", not the call patchcall last wrote there (" + bytesText(expected, n) +
                                               "); was its code replaced? nothing was written");
  }
  // The same bytes back: harmless to a thread executing them, and exactly the write the kernel
  // refuses where a real one would fail (a MAP_SHARED mapping: EIO).
  if (pwrite(procMemFd, now, n, static_cast<off_t>(a)) != static_cast<ssize_t>(n)) {
    return Status(Error::kUnsupportedSite, std::string(what) + ": foreign site " + hex(a) +
                                               " cannot be written through /proc/self/mem (" + std::strerror(errno) +
                                               "): the kernel refuses writes to shared mappings (another JIT's "
                                               "MAP_SHARED code cache, a file mapped shared); nothing was written");
  }
  return Status::ok();
}

Status Runtime::registerForeignSite(void* callInstruction, Key key) {
  return detail::catchOutOfMemory("registerForeignSite", [&]() -> Status {
    Impl& m = *impl_;
    PATCHCALL_TRY(m.refuseReentry("registerForeignSite"));
    PATCHCALL_TRY(m.checkOwnProcess());
    auto a = reinterpret_cast<uintptr_t>(callInstruction);
    if (a == 0) return Status(Error::kInvalidArgument, "registerForeignSite: null address");
    auto arenaBase = reinterpret_cast<uintptr_t>(m.arena->rxBase());
    if (a + arch::kCallSize > arenaBase && a < arenaBase + m.arena->size()) {
      return Status(Error::kInvalidArgument, "registerForeignSite: " + hex(a) +
                                                 " (or one of its 5 bytes) is inside the arena; emit sites through jit/");
    }
    PATCHCALL_TRY(checkExecutable(a));  // before reading a byte of it
    detail::TextMutexGuard guard(m.textMutex, &m);
    // A fork child opens its own /proc/self/mem only when it first needs it (fork_safety.cpp).
    if (m.procMemFd < 0 && m.forkState.procMemLazy) m.procMemFd = open("/proc/self/mem", O_RDWR | O_CLOEXEC);
    m.forkState.procMemLazy = false;
    if (m.procMemFd < 0) return Status(Error::kUnsupportedSite, "registerForeignSite: /proc/self/mem is not writable here");
    detail::KeyRecord* k = m.key(key);
    if (k == nullptr) return Status(Error::kUnknownKey, "registerForeignSite: key is not live");
    if (m.foreignSites.count(a) != 0) return Status(Error::kInvalidArgument, "registerForeignSite: already registered");
    for (uintptr_t other = a - (arch::kCallSize - 1); other != a + arch::kCallSize; ++other) {
      if (m.foreignSites.count(other) != 0) {
        return Status(Error::kInvalidArgument, "registerForeignSite: " + hex(a) + " .. +5 overlaps the foreign site at " +
                                                   hex(other) + " (its 5 bytes)");
      }
    }
    uint8_t bytes[arch::kCallSize];
    if (pread(m.procMemFd, bytes, sizeof bytes, static_cast<off_t>(a)) != static_cast<ssize_t>(sizeof bytes)) {
      return Status(Error::kUnsupportedSite, "registerForeignSite: " + hex(a) + " cannot be read: " + std::strerror(errno));
    }
    if (!arch::isCall(bytes)) {
      return Status(Error::kUnsupportedSite, "registerForeignSite: the instruction at " + hex(a) + " (" + bytesText(bytes, sizeof bytes) +
                                                 ") is not a 5-byte E8 call");
    }
    PATCHCALL_TRY(m.probeForeignSite(a, bytes, "registerForeignSite"));
    Result<uintptr_t> d = m.reachable(a, reinterpret_cast<uintptr_t>(k->target));
    if (!d) return d.status();
    detail::ForeignSite f;
    std::memcpy(&f.field, bytes + (arch::branchField(a) - a), arch::kFieldSize);
    auto entry = m.foreignSites.emplace(a, f).first;
    Result<uint32_t> id = Status(Error::kOutOfMemory, "registerForeignSite: out of memory");
    try {
      id = m.addSite(a, key.id, SiteForm::kBreakpoint, detail::kSiteForeign);
    } catch (const std::bad_alloc&) {
      m.foreignSites.erase(entry);
      throw;
    }
    if (!id) {
      m.foreignSites.erase(entry);
      return id.status();
    }
    entry->second.id = *id;
    // Point the call at the key's current target, under the same lock that read it: the key
    // itself is not updated (a concurrent update is either before or after this, never undone).
    Status patched = m.patchSiteToKey(guard, *id);
    if (!patched.isOk()) {
      m.removeSites(detail::MiVector<uint32_t>{*id});
      m.foreignSites.erase(a);
    }
    return patched;
  });
}

Status Runtime::unregisterForeignSite(void* callInstruction) {
  return detail::catchOutOfMemory("unregisterForeignSite", [&]() -> Status {
    Impl& m = *impl_;
    PATCHCALL_TRY(m.refuseReentry("unregisterForeignSite"));
    PATCHCALL_TRY(m.checkOwnProcess());
    std::lock_guard<detail::FairMutex> lock(m.textMutex);
    auto it = m.foreignSites.find(reinterpret_cast<uintptr_t>(callInstruction));
    if (it == m.foreignSites.end()) return Status(Error::kUnknownSite, "unregisterForeignSite: not a registered foreign site");
    detail::MiVector<uint32_t> ids{it->second.id};
    m.removeSites(ids);
    m.foreignSites.erase(it);
    return Status::ok();
  });
}

}  // namespace patchcall
