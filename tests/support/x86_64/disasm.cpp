#include "disasm.h"

#include <Zydis/Zydis.h>

namespace patchcall::test {

Decoded decodeAt(const void* address, uint64_t runtimeAddress) {
  if (runtimeAddress == 0) runtimeAddress = reinterpret_cast<uint64_t>(address);
  Decoded d;
  ZydisDisassembledInstruction insn;
  if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, runtimeAddress, address, 15, &insn))) {
    d.text = "<undecodable>";
    return d;
  }
  d.ok = true;
  d.length = insn.info.length;
  d.opcode = insn.info.opcode;
  d.isCall = insn.info.mnemonic == ZYDIS_MNEMONIC_CALL;
  d.isDirectCall = d.isCall && d.opcode == 0xE8 && d.length == 5;
  d.text = insn.text;
  if (insn.info.operand_count_visible > 0 && insn.operands[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE &&
      insn.operands[0].imm.is_relative) {
    ZyanU64 abs = 0;
    if (ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&insn.info, &insn.operands[0], runtimeAddress, &abs))) {
      d.isRelative = true;
      d.target = abs;
    }
  }
  return d;
}

}  // namespace patchcall::test
