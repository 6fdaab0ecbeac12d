// patchcall x86-64 — inline static call sites, found by decoding with Zydis (see
// runtime/aot/call_site_discovery.h).
#include "../../aot/call_site_discovery.h"

#include <Zydis/Zydis.h>

#include <cstring>

#include "opcodes.h"

namespace patchcall::detail::aot {
namespace {

ZydisDecoder& decoder() {
  static ZydisDecoder d = [] {
    ZydisDecoder x;
    ZydisDecoderInit(&x, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
    return x;
  }();
  return d;
}

bool decodeAt(uintptr_t ip, size_t room, ZydisDecodedInstruction* insn, ZydisDecodedOperand* ops) {
  return ZYAN_SUCCESS(ZydisDecoderDecodeFull(&decoder(), reinterpret_cast<const void*>(ip), room, insn, ops));
}

// `dest` is the trampoline, or a PLT entry (optionally endbr64 first) `jmp *slot(%rip)` whose
// slot already holds it (bound: -z now, or an earlier call).
bool reachesTrampoline(uintptr_t dest, uintptr_t trampoline) {
  if (dest == trampoline) return true;
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  uintptr_t ip = dest;
  for (int i = 0; i < 2; ++i) {
    if (!decodeAt(ip, 16, &insn, ops)) return false;
    if (insn.mnemonic == ZYDIS_MNEMONIC_ENDBR64 && i == 0) {
      ip += insn.length;
      continue;
    }
    if (insn.mnemonic != ZYDIS_MNEMONIC_JMP || ops[0].type != ZYDIS_OPERAND_TYPE_MEMORY ||
        ops[0].mem.base != ZYDIS_REGISTER_RIP || ops[0].mem.index != ZYDIS_REGISTER_NONE || !ops[0].mem.disp.has_displacement) {
      return false;
    }
    uintptr_t slot = ip + insn.length + static_cast<int64_t>(ops[0].mem.disp.value);
    uintptr_t bound;
    std::memcpy(&bound, reinterpret_cast<const void*>(slot), sizeof bound);
    return bound == trampoline;
  }
  return false;
}

}  // namespace

bool findCallAfterMarker(uintptr_t marker, uintptr_t functionEnd, uintptr_t trampoline,
                         const std::function<bool(uintptr_t)>& taken, FoundCall* out) {
  ZydisDecodedInstruction insn;
  ZydisDecodedOperand ops[ZYDIS_MAX_OPERAND_COUNT];
  uintptr_t ip = marker;
  for (int n = 0; n < kMaxDecodedAfterMarker && ip < functionEnd; ++n) {
    if (!decodeAt(ip, functionEnd - ip, &insn, ops)) return false;
    bool call = insn.mnemonic == ZYDIS_MNEMONIC_CALL, jump = insn.mnemonic == ZYDIS_MNEMONIC_JMP;
    // Only the plain 5-byte forms (E8/E9 rel32, no prefix): what a site rewrites.
    if ((call || jump) && insn.length == 5 && ops[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && ops[0].imm.is_relative &&
        insn.raw.prefix_count == 0) {
      uintptr_t dest = ip + insn.length + static_cast<int64_t>(ops[0].imm.value.s);
      if (reachesTrampoline(dest, trampoline) && !taken(ip)) {
        out->address = ip;
        out->tail = jump;
        out->original = dest;
        return true;
      }
    }
    ip += insn.length;
  }
  return false;
}

}  // namespace patchcall::detail::aot
