// Test support: decode one instruction with Zydis.
#pragma once

#include <cstdint>
#include <string>

namespace patchcall::test {

struct Decoded {
  bool ok = false;
  uint8_t length = 0;
  uint8_t opcode = 0;         // primary opcode byte (E8 for call rel32)
  bool isCall = false;        // mnemonic == call
  bool isRelative = false;    // target is an immediate (rel32/rel8)
  uint64_t target = 0;        // absolute branch target when isRelative
  std::string text;           // Intel syntax, for failure messages
};

// Decodes the instruction at `address` (as if executing at `runtimeAddress`, default: same).
Decoded decodeAt(const void* address, uint64_t runtimeAddress = 0);

}  // namespace patchcall::test
