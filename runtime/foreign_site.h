// patchcall — ForeignSites: calls in code patchcall did not emit (AOT code, another JIT's
// code), written through /proc/self/mem with the ISA's foreign-site protocol
// (arch::kForeignSiteForm: x86-64 the breakpoint protocol, aarch64 one aligned store).
//
// A foreign site is checked when it is registered (executable mapping, no overlap, a call,
// a write the kernel accepts) and probed again before every update writes it (still mapped,
// still exactly the call patchcall last wrote, still writable), so an update that cannot
// complete is refused before its first write. Everything here runs with the text mutex held,
// except checkExecutable.
#pragma once

#include <cstdint>

#include "arch/arch.h"
#include "metadata.h"
#include "patchcall/status.h"
#include "registry.h"
#include "text_writer.h"

namespace patchcall::detail {

class ForeignSites {
 public:
  ForeignSites(CodeArena& arena, TextWriter& writer, Registry& registry) : arena_(arena), writer_(writer), registry_(registry) {}

  // Checks made before the text mutex is taken: not the arena, every byte in an executable
  // mapping of this process (/proc/self/maps).
  Status checkPlace(uintptr_t address) const;
  // Registers the call at `address` as a site of `key` (form arch::kForeignSiteForm; its code unchanged):
  // returns the site id. The caller then points it at the key's target (Retargeter).
  Result<uint32_t> add(uintptr_t address, Key key);
  // Forgets the site (after a failed first patch, or unregisterForeignSite).
  void remove(uintptr_t address);
  Status unregister(uintptr_t address);

  // The site id at `address` (0: not a foreign site).
  uint32_t siteAt(uintptr_t address) const;
  // Before an update writes it: still mapped, still the call patchcall last wrote, writable.
  Status probeBeforeUpdate(uintptr_t address) const;
  // The call's field as patchcall last wrote it (what a failed tail write puts back).
  bool lastField(uintptr_t address, int32_t* field) const;
  void noteWritten(uintptr_t address, int32_t field);
  bool empty() const noexcept { return sites_.empty(); }

 private:
  struct Site {
    uint32_t id = 0;
    int32_t field = 0;  // the call's field as patchcall last wrote it
  };
  Status probe(uintptr_t address, const uint8_t expected[arch::kCallSize], const char* what) const;

  CodeArena& arena_;
  TextWriter& writer_;
  Registry& registry_;
  MiHashMap<uintptr_t, Site> sites_;
};

}  // namespace patchcall::detail
