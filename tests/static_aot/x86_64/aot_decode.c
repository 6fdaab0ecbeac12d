/* tests/static_aot on x86-64: the site decoder of aot_sites.h, with Zydis. A branch or an
 * inline site is a 5-byte NOP or an E9 / E8 rel32; the trampoline (static_call_aot.h) is
 *   +0 jmp rel32 (patched); +5 int3 x3; +8 movq <slot>(%rip), %r11; +15 jmpq *(%r11);
 *   +18 ret (the NULL target); +19 int3 x13. */
#include <Zydis/Zydis.h>
#include <stdio.h>
#include <string.h>

#include "../aot_sites.h"

void aot_decode(const void* address, struct aot_insn* out) {
  memset(out, 0, sizeof *out);
  ZydisDisassembledInstruction insn;
  uintptr_t at = (uintptr_t)address;
  if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, at, address, 15, &insn))) {
    const unsigned char* b = (const unsigned char*)address;
    snprintf(out->text, sizeof out->text, "<undecodable: %02x %02x %02x %02x %02x>", b[0], b[1], b[2], b[3], b[4]);
    return;
  }
  out->ok = 1;
  out->length = insn.info.length;
  snprintf(out->text, sizeof out->text, "%s", insn.text);
  const unsigned char* b = (const unsigned char*)address;
  int rel32 = insn.info.length == 5 && insn.info.operand_count_visible > 0 &&
              insn.operands[0].type == ZYDIS_OPERAND_TYPE_IMMEDIATE && insn.operands[0].imm.is_relative;
  if (insn.info.mnemonic == ZYDIS_MNEMONIC_NOP && insn.info.length == 5) {
    out->kind = AOT_INSN_NOP;
  } else if (insn.info.mnemonic == ZYDIS_MNEMONIC_JMP && rel32 && b[0] == 0xe9) {
    out->kind = AOT_INSN_JUMP;
  } else if (insn.info.mnemonic == ZYDIS_MNEMONIC_CALL && rel32 && b[0] == 0xe8) {
    out->kind = AOT_INSN_CALL;
  } else if (insn.info.mnemonic == ZYDIS_MNEMONIC_RET) {
    out->kind = AOT_INSN_RET;
  }
  if (out->kind == AOT_INSN_JUMP || out->kind == AOT_INSN_CALL) {
    ZyanU64 abs = 0;
    if (ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&insn.info, &insn.operands[0], at, &abs))) out->target = (uintptr_t)abs;
  }
}

const char* aot_insn_name(int kind) {
  switch (kind) {
    case AOT_INSN_NOP: return "NOP5";
    case AOT_INSN_JUMP: return "JMP32";
    case AOT_INSN_CALL: return "CALL32";
    case AOT_INSN_RET: return "RET";
  }
  return "other";
}

int aot_reaches(const void* destination, const void* trampoline) {
  if (destination == trampoline) return 1;
  if (destination == NULL) return 0;
  uintptr_t at = (uintptr_t)destination;
  for (int step = 0; step < 2; step++) {
    ZydisDisassembledInstruction insn;
    if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, at, (const void*)at, 15, &insn))) return 0;
    if (insn.info.mnemonic == ZYDIS_MNEMONIC_ENDBR64) {
      at += insn.info.length;
      continue;
    }
    if (insn.info.mnemonic != ZYDIS_MNEMONIC_JMP || insn.operands[0].type != ZYDIS_OPERAND_TYPE_MEMORY ||
        insn.operands[0].mem.base != ZYDIS_REGISTER_RIP)
      return 0;
    ZyanU64 slot = 0;
    if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&insn.info, &insn.operands[0], at, &slot))) return 0;
    const void* bound = NULL;
    memcpy(&bound, (const void*)(uintptr_t)slot, sizeof bound);
    return bound == trampoline;
  }
  return 0;
}

int aot_in_branch_reach(const void* instruction, const void* target) {
  int64_t delta = (int64_t)((uintptr_t)target - ((uintptr_t)instruction + 5));
  return delta >= INT32_MIN && delta <= INT32_MAX;
}

int aot_trampoline_body_ok(const void* trampoline, const void* call, char* why, size_t why_size) {
  const unsigned char* t = (const unsigned char*)trampoline;
  uintptr_t at = (uintptr_t)t;
  for (int i = 5; i < PATCHCALL_SCT_SIZE; i++) {
    if (i >= PATCHCALL_SCT_INDIRECT && i <= PATCHCALL_SCT_RET) continue;
    if (t[i] != 0xcc) {
      snprintf(why, why_size, "byte +%d is %02x, not the int3 filler", i, t[i]);
      return 0;
    }
  }
  ZydisDisassembledInstruction load, jump, ret;
  if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, at + 8, t + 8, 7, &load)) ||
      !ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, at + 15, t + 15, 3, &jump)) ||
      !ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, at + PATCHCALL_SCT_RET, t + PATCHCALL_SCT_RET, 1, &ret))) {
    snprintf(why, why_size, "its indirect path or ret does not decode");
    return 0;
  }
  ZyanU64 slot = 0;
  int load_ok = load.info.mnemonic == ZYDIS_MNEMONIC_MOV && load.info.length == 7 &&
                load.operands[0].type == ZYDIS_OPERAND_TYPE_REGISTER && load.operands[0].reg.value == ZYDIS_REGISTER_R11 &&
                load.operands[1].type == ZYDIS_OPERAND_TYPE_MEMORY && load.operands[1].mem.base == ZYDIS_REGISTER_RIP &&
                ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&load.info, &load.operands[1], at + 8, &slot));
  const void* held = NULL;
  if (load_ok) memcpy(&held, (const void*)(uintptr_t)slot, sizeof held);
  int jump_ok = jump.info.mnemonic == ZYDIS_MNEMONIC_JMP && jump.info.length == 3 &&
                jump.operands[0].type == ZYDIS_OPERAND_TYPE_MEMORY && jump.operands[0].mem.base == ZYDIS_REGISTER_R11 &&
                jump.operands[0].mem.index == ZYDIS_REGISTER_NONE && jump.operands[0].mem.disp.value == 0;
  if (!load_ok || held != call || !jump_ok || ret.info.mnemonic != ZYDIS_MNEMONIC_RET) {
    snprintf(why, why_size, "'%s' (slot holds %p, the call is %p); '%s'; '%s'", load.text, held, call, jump.text, ret.text);
    return 0;
  }
  return 1;
}

int aot_breakpoint_protocol(void) { return 1; }

size_t aot_debugger_breakpoint(unsigned char out[8]) {
  out[0] = 0xcc;
  return 1;
}
