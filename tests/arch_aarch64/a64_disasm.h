// patchcall tests — Capstone's ARM64 decoder for the A64 tests (encoders and jit emitters).
#pragma once

#include <capstone/capstone.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace patchcall::test {

struct A64Decoded {
  unsigned id = 0;
  std::string text;  // "mnemonic op_str"
  cs_arm64 detail{};
};

// Decodes `n` bytes at `address`; one entry per 4-byte word (id 0 where Capstone refuses).
class A64Disasm {
 public:
  A64Disasm() {
    EXPECT_EQ(cs_open(CS_ARCH_ARM64, CS_MODE_ARM, &h_), CS_ERR_OK);
    cs_option(h_, CS_OPT_DETAIL, CS_OPT_ON);
  }
  ~A64Disasm() { cs_close(&h_); }
  A64Disasm(const A64Disasm&) = delete;
  A64Disasm& operator=(const A64Disasm&) = delete;

  std::vector<A64Decoded> decode(const uint8_t* code, size_t n, uint64_t address) {
    std::vector<A64Decoded> out;
    for (size_t at = 0; at + 4 <= n; at += 4) {
      cs_insn* insn = nullptr;
      size_t count = cs_disasm(h_, code + at, 4, address + at, 1, &insn);
      A64Decoded d;
      if (count == 1) {
        d.id = insn[0].id;
        d.text = std::string(insn[0].mnemonic) + " " + insn[0].op_str;
        d.detail = insn[0].detail->arm64;
        cs_free(insn, count);
      }
      out.push_back(d);
    }
    return out;
  }
  A64Decoded one(uint32_t word, uint64_t address) {
    uint8_t b[4];
    std::memcpy(b, &word, 4);
    return decode(b, 4, address)[0];
  }
  // The word at `offset` of `code` (placed at `base`); id 0 past the end.
  A64Decoded at(const std::vector<uint8_t>& code, uint64_t base, size_t offset) {
    if (offset + 4 > code.size()) return {};
    return decode(code.data() + offset, 4, base + offset)[0];
  }

 private:
  csh h_ = 0;
};

}  // namespace patchcall::test
