// Test support: decode one instruction of the host ISA (x86-64: Zydis; aarch64: Capstone;
// tests/support/<isa>/disasm.cpp).
#pragma once

#include <cstdint>
#include <string>

namespace patchcall::test {

struct Decoded {
  bool ok = false;
  uint8_t length = 0;
  uint8_t opcode = 0;         // x86: primary opcode byte (E8 for call rel32); A64: 0
  bool isCall = false;        // mnemonic == call (x86), bl or blr (A64)
  bool isDirectCall = false;  // the site form's call: x86 `E8 rel32`, A64 `bl imm26`
  bool isRelative = false;    // target is an immediate (rel32/rel8)
  uint64_t target = 0;        // absolute branch target when isRelative
  std::string text;           // Intel syntax (x86) or Capstone's, for failure messages
};

// Decodes the instruction at `address` (as if executing at `runtimeAddress`, default: same).
Decoded decodeAt(const void* address, uint64_t runtimeAddress = 0);

}  // namespace patchcall::test
