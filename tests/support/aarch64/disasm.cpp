// tests/support/disasm.h on aarch64: Capstone's ARM64 decoder (libcapstone-dev).
#include "disasm.h"

#include <capstone/capstone.h>

namespace patchcall::test {

Decoded decodeAt(const void* address, uint64_t runtimeAddress) {
  if (runtimeAddress == 0) runtimeAddress = reinterpret_cast<uint64_t>(address);
  Decoded d;
  csh h = 0;
  if (cs_open(CS_ARCH_ARM64, CS_MODE_ARM, &h) != CS_ERR_OK) {
    d.text = "<capstone unavailable>";
    return d;
  }
  cs_option(h, CS_OPT_DETAIL, CS_OPT_ON);
  cs_insn* insn = nullptr;
  if (cs_disasm(h, static_cast<const uint8_t*>(address), 4, runtimeAddress, 1, &insn) != 1) {
    d.text = "<undecodable>";
    cs_close(&h);
    return d;
  }
  d.ok = true;
  d.length = 4;
  d.text = std::string(insn->mnemonic) + " " + insn->op_str;
  d.isCall = insn->id == ARM64_INS_BL || insn->id == ARM64_INS_BLR;
  d.isDirectCall = insn->id == ARM64_INS_BL;
  const cs_arm64& a = insn->detail->arm64;
  bool branch = insn->id == ARM64_INS_BL || insn->id == ARM64_INS_B || insn->id == ARM64_INS_CBZ ||
                insn->id == ARM64_INS_CBNZ || insn->id == ARM64_INS_TBZ || insn->id == ARM64_INS_TBNZ;
  if (branch && a.op_count > 0 && a.operands[a.op_count - 1].type == ARM64_OP_IMM) {
    d.isRelative = true;
    d.target = static_cast<uint64_t>(a.operands[a.op_count - 1].imm);
  }
  cs_free(insn, 1);
  cs_close(&h);
  return d;
}

}  // namespace patchcall::test
