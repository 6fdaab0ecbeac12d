// patchcall — ForeignSites (see foreign_site.h).
#include "foreign_site.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "format.h"
#include "proc_maps.h"
#include "trap_table.h"

namespace patchcall::detail {

namespace {

std::string bytesText(const uint8_t* b, size_t n) {
  std::string s;
  char buf[4];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(buf, sizeof buf, i == 0 ? "%02X" : " %02X", b[i]);
    s += buf;
  }
  return s;
}

std::string span(uintptr_t a) { return hex(a) + " .. +" + std::to_string(arch::kCallSize); }

}  // namespace

Status ForeignSites::checkPlace(uintptr_t a) const {
  if (a == 0) return Status(Error::kInvalidArgument, "registerForeignSite: null address");
  if (a % arch::kInstructionAlign != 0) {
    return Status(Error::kInvalidArgument, "registerForeignSite: " + hex(a) + " is not " + std::to_string(arch::kInstructionAlign) +
                                               "-byte aligned, so no instruction starts there");
  }
  auto arenaBase = reinterpret_cast<uintptr_t>(arena_.rxBase());
  if (a + arch::kCallSize > arenaBase && a < arenaBase + arena_.size()) {
    return Status(Error::kInvalidArgument, "registerForeignSite: " + span(a) + " lies (partly) inside the arena; emit sites through jit/");
  }
  std::vector<Mapping> maps = readMaps();
  if (maps.empty()) return Status(Error::kUnsupportedSite, "registerForeignSite: /proc/self/maps cannot be read");
  std::vector<Mapping> cover = mappingsCovering(maps, a, a + arch::kCallSize);
  if (cover.empty()) return Status(Error::kUnsupportedSite, "registerForeignSite: " + span(a) + " is not (entirely) mapped");
  for (const Mapping& m : cover) {
    if (!m.exec()) {
      return Status(Error::kUnsupportedSite, "registerForeignSite: " + hex(a) + " lies in a mapping that is not executable (" +
                                                 hex(m.begin) + "-" + hex(m.end) + " " + m.perms +
                                                 (m.path.empty() ? "" : " " + m.path) + "): not code");
    }
  }
  return Status::ok();
}

Status ForeignSites::probe(uintptr_t a, const uint8_t expected[arch::kCallSize], const char* what) const {
  constexpr size_t n = arch::kCallSize;
  uint8_t now[n];
  if (!writer_.readForeign(a, now, n)) {
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
  if (!writer_.writeForeign(a, now, n)) {
    return Status(Error::kUnsupportedSite, std::string(what) + ": foreign site " + hex(a) +
                                               " cannot be written through /proc/self/mem (" + std::strerror(errno) +
                                               "): the kernel refuses writes to shared mappings (another JIT's "
                                               "MAP_SHARED code cache, a file mapped shared); nothing was written");
  }
  return Status::ok();
}

Result<uint32_t> ForeignSites::add(uintptr_t a, Key key) {
  if (arch::kForeignSiteForm == SiteForm::kBreakpoint && TrapTable::callEmulationBlocked()) {
    return Status(Error::kUnsupportedSite, "registerForeignSite: this process runs with shadow stacks, so the SIGTRAP handler "
                                           "cannot emulate the site's call while it is rewritten");
  }
  if (Status s = writer_.needForeignAccess(); !s.isOk()) return Status(s.code(), "registerForeignSite: " + s.message());
  const KeyRecord* k = registry_.key(key);
  if (k == nullptr) return Status(Error::kUnknownKey, "registerForeignSite: key is not live");
  if (sites_.count(a) != 0) return Status(Error::kInvalidArgument, "registerForeignSite: already registered");
  for (uintptr_t other = a - (arch::kCallSize - 1); other != a + arch::kCallSize; ++other) {
    if (sites_.count(other) != 0) {
      return Status(Error::kInvalidArgument, "registerForeignSite: " + span(a) + " overlaps the foreign site at " + hex(other) +
                                                 " (its " + std::to_string(arch::kCallSize) + " bytes)");
    }
  }
  uint8_t bytes[arch::kCallSize];
  if (!writer_.readForeign(a, bytes, sizeof bytes)) {
    return Status(Error::kUnsupportedSite, "registerForeignSite: " + hex(a) + " cannot be read: " + std::strerror(errno));
  }
  if (!arch::isCall(bytes)) {
    return Status(Error::kUnsupportedSite, "registerForeignSite: the instruction at " + hex(a) + " (" + bytesText(bytes, sizeof bytes) +
                                               ") is not a " + arch::kCallName);
  }
  PATCHCALL_TRY(probe(a, bytes, "registerForeignSite"));
  Site f;
  std::memcpy(&f.field, bytes + (arch::branchField(a) - a), arch::kFieldSize);
  auto entry = sites_.emplace(a, f).first;
  Result<uint32_t> id = Status(Error::kOutOfMemory, "registerForeignSite: out of memory");
  try {
    id = registry_.addSite(a, key.id, arch::kForeignSiteForm, kSiteForeign);
  } catch (const std::bad_alloc&) {
    sites_.erase(entry);
    throw;
  }
  if (!id) {
    sites_.erase(entry);
    return id.status();
  }
  entry->second.id = *id;
  return *id;
}

void ForeignSites::remove(uintptr_t a) {
  auto it = sites_.find(a);
  if (it == sites_.end()) return;
  registry_.removeSites(MiVector<uint32_t>{it->second.id});
  sites_.erase(it);
}

Status ForeignSites::unregister(uintptr_t a) {
  if (sites_.count(a) == 0) return Status(Error::kUnknownSite, "unregisterForeignSite: not a registered foreign site");
  remove(a);
  return Status::ok();
}

uint32_t ForeignSites::siteAt(uintptr_t a) const {
  auto it = sites_.find(a);
  return it == sites_.end() ? 0 : it->second.id;
}

Status ForeignSites::probeBeforeUpdate(uintptr_t a) const {
  auto it = sites_.find(a);
  if (it == sites_.end()) return Status::ok();  // cannot happen: flagged foreign when registered
  uint8_t expected[arch::kCallSize];
  arch::encodeCall(it->second.field, expected);  // what it holds since our last write
  return probe(a, expected, "update");
}

bool ForeignSites::lastField(uintptr_t a, int32_t* field) const {
  auto it = sites_.find(a);
  if (it == sites_.end()) return false;
  *field = it->second.field;
  return true;
}

void ForeignSites::noteWritten(uintptr_t a, int32_t field) {
  if (auto it = sites_.find(a); it != sites_.end()) it->second.field = field;
}

}  // namespace patchcall::detail
