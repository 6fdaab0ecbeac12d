// Test support: small JIT targets that return their identity.
#pragma once

#include <vector>

#include "patchcall/jit.h"

namespace patchcall::test {

// `result = id ; ret` in a blob of its own; nullptr (and a test failure) if install fails.
const void* installReturner(Runtime& rt, int id);
// n targets in one blob; target i returns idBase + i, each 16-byte aligned.
std::vector<const void*> installTargets(Runtime& rt, int n, int idBase);
// What calling a target of installReturner/installTargets returns, read from its code.
int idOf(const void* target);

// A JIT function `int fn()` that returns what its one site (bound to a key) returns.
struct SiteCaller {
  int (*fn)() = nullptr;
  const uint8_t* site = nullptr;  // first byte of the site (the toggle for kToggle)
};
// One caller per key, all in one blob, each site of the given form.
std::vector<SiteCaller> installCallers(Runtime& rt, const std::vector<Key>& keys, SiteForm form);

// test::foreignCaller (`frame ; call initialTarget ; unframe ; ret`) on a private page within
// the call's reach of `anchor`, made RX after it is written: code patchcall did not emit (the
// call is at +kForeignCallOffset). nullptr when no page was found.
uint8_t* mapForeignCode(const void* anchor, const void* initialTarget);
// Owns the page (unmapped once): not copyable, so two copies cannot munmap it twice.
struct ForeignPage {
  explicit ForeignPage(uint8_t* c) : code(c) {}
  ForeignPage(const ForeignPage&) = delete;
  ForeignPage& operator=(const ForeignPage&) = delete;
  ~ForeignPage();
  uint8_t* code = nullptr;
};

}  // namespace patchcall::test
