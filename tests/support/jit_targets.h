// Test support: small JIT targets that return their identity.
#pragma once

#include <vector>

#include "patchcall/jit.h"

namespace patchcall::test {

// `mov eax, id ; ret` in a blob of its own; nullptr (and a test failure) if install fails.
const void* installReturner(Runtime& rt, int id);
// n targets in one blob; target i is `mov eax, idBase + i ; ret`, each 16-byte aligned.
std::vector<const void*> installTargets(Runtime& rt, int n, int idBase);

}  // namespace patchcall::test
