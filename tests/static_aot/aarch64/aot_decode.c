/* tests/static_aot on aarch64: the site decoder of aot_sites.h, with Capstone's ARM64 mode. A
 * branch or an inline site is one word, nop or b / bl imm26; the trampoline
 * (static_call_aot.h) is
 *   +0 b (patched: the target, +8 when it is beyond +-128 MiB, +4 for NULL); +4 ret;
 *   +8 adrp x16, <slot page>; +12 ldr x16, [x16, :lo12:<slot>] (the slot holds the call
 *   object); +16 ldr x16, [x16] (its target); +20 br x16; +24, +28 udf #0.
 * Capstone 4.0.2 does not decode udf (the all-zero word): it is compared as a word. */
#include <capstone/capstone.h>
#include <stdio.h>
#include <string.h>

#include "../aot_sites.h"

static uint32_t aot_word(uintptr_t at) {
  uint32_t w;
  memcpy(&w, (const void*)at, sizeof w);
  return w;
}

/* One instruction at `at`, decoded with details; NULL when Capstone does not know it. Each
 * thread that decodes keeps its own handle (a handle is not shared between threads). */
static cs_insn* aot_cs_decode(uintptr_t at) {
  static __thread csh handle;
  static __thread int opened;
  if (!opened) {
    if (cs_open(CS_ARCH_ARM64, CS_MODE_ARM, &handle) != CS_ERR_OK) return NULL;
    cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON);
    opened = 1;
  }
  cs_insn* insn = NULL;
  if (cs_disasm(handle, (const uint8_t*)at, 4, at, 1, &insn) != 1) return NULL;
  return insn;
}

static void aot_cs_text(const cs_insn* insn, uintptr_t at, char* text, size_t size) {
  if (insn) snprintf(text, size, "%.31s %.60s", insn->mnemonic, insn->op_str); /* (fits aot_insn.text) */
  else snprintf(text, size, "<undecodable: %08x>", aot_word(at));
}

void aot_decode(const void* address, struct aot_insn* out) {
  memset(out, 0, sizeof *out);
  uintptr_t at = (uintptr_t)address;
  cs_insn* insn = aot_cs_decode(at);
  aot_cs_text(insn, at, out->text, sizeof out->text);
  if (!insn) return;
  out->ok = 1;
  out->length = 4;
  const cs_arm64* a = &insn->detail->arm64;
  int imm = a->op_count == 1 && a->operands[0].type == ARM64_OP_IMM;
  if (insn->id == ARM64_INS_NOP) {
    out->kind = AOT_INSN_NOP;
  } else if (insn->id == ARM64_INS_B && imm && a->cc == ARM64_CC_INVALID) { /* not b.cond */
    out->kind = AOT_INSN_JUMP;
  } else if (insn->id == ARM64_INS_BL && imm) {
    out->kind = AOT_INSN_CALL;
  } else if (insn->id == ARM64_INS_RET && a->op_count == 0) { /* ret x30 */
    out->kind = AOT_INSN_RET;
  }
  if (out->kind == AOT_INSN_JUMP || out->kind == AOT_INSN_CALL) out->target = (uintptr_t)a->operands[0].imm;
  cs_free(insn, 1);
}

const char* aot_insn_name(int kind) {
  switch (kind) {
    case AOT_INSN_NOP: return "NOP";
    case AOT_INSN_JUMP: return "B";
    case AOT_INSN_CALL: return "BL";
    case AOT_INSN_RET: return "RET";
  }
  return "other";
}

/* The operands of one decoded instruction, checked against what the trampoline or a PLT entry
 * holds. */
static int aot_is_reg(const cs_arm64_op* op, arm64_reg reg) { return op->type == ARM64_OP_REG && op->reg == reg; }
/* adrp <rd>, <page>: the page. */
static int aot_adrp(uintptr_t at, arm64_reg rd, uintptr_t* page) {
  cs_insn* insn = aot_cs_decode(at);
  if (!insn) return 0;
  const cs_arm64* a = &insn->detail->arm64;
  int ok = insn->id == ARM64_INS_ADRP && a->op_count == 2 && aot_is_reg(&a->operands[0], rd) &&
           a->operands[1].type == ARM64_OP_IMM;
  if (ok) *page = (uintptr_t)a->operands[1].imm;
  cs_free(insn, 1);
  return ok;
}
/* ldr <rt>, [<rn>, #disp] (64-bit, no index, no writeback): the displacement. */
static int aot_ldr(uintptr_t at, arm64_reg rt, arm64_reg rn, int32_t* disp) {
  cs_insn* insn = aot_cs_decode(at);
  if (!insn) return 0;
  const cs_arm64* a = &insn->detail->arm64;
  int ok = insn->id == ARM64_INS_LDR && a->op_count == 2 && !a->writeback && aot_is_reg(&a->operands[0], rt) &&
           a->operands[1].type == ARM64_OP_MEM && a->operands[1].mem.base == rn &&
           a->operands[1].mem.index == ARM64_REG_INVALID;
  if (ok) *disp = a->operands[1].mem.disp;
  cs_free(insn, 1);
  return ok;
}
/* add <rd>, <rn>, #imm: the immediate. */
static int aot_add_imm(uintptr_t at, arm64_reg rd, arm64_reg rn, int64_t* imm) {
  cs_insn* insn = aot_cs_decode(at);
  if (!insn) return 0;
  const cs_arm64* a = &insn->detail->arm64;
  int ok = insn->id == ARM64_INS_ADD && a->op_count == 3 && aot_is_reg(&a->operands[0], rd) &&
           aot_is_reg(&a->operands[1], rn) && a->operands[2].type == ARM64_OP_IMM && a->operands[2].shift.value == 0;
  if (ok) *imm = a->operands[2].imm;
  cs_free(insn, 1);
  return ok;
}
/* br <rn>. */
static int aot_br(uintptr_t at, arm64_reg rn) {
  cs_insn* insn = aot_cs_decode(at);
  if (!insn) return 0;
  const cs_arm64* a = &insn->detail->arm64;
  int ok = insn->id == ARM64_INS_BR && a->op_count == 1 && aot_is_reg(&a->operands[0], rn);
  cs_free(insn, 1);
  return ok;
}
/* bti c: hint #34 to Capstone 4. */
static int aot_bti_c(uintptr_t at) {
  cs_insn* insn = aot_cs_decode(at);
  if (!insn) return 0;
  const cs_arm64* a = &insn->detail->arm64;
  int ok = insn->id == ARM64_INS_HINT && a->op_count == 1 && a->operands[0].type == ARM64_OP_IMM && a->operands[0].imm == 34;
  cs_free(insn, 1);
  return ok;
}

int aot_reaches(const void* destination, const void* trampoline) {
  if (destination == trampoline) return 1;
  if (destination == NULL) return 0;
  /* A PLT entry: [bti c;] adrp x16, <page>; ldr x17, [x16, #off]; add x16, x16, #off; br x17. */
  uintptr_t at = (uintptr_t)destination;
  if (aot_bti_c(at)) at += 4;
  uintptr_t page = 0;
  int32_t off = 0;
  int64_t add = 0;
  if (!aot_adrp(at, ARM64_REG_X16, &page) || !aot_ldr(at + 4, ARM64_REG_X17, ARM64_REG_X16, &off) ||
      !aot_add_imm(at + 8, ARM64_REG_X16, ARM64_REG_X16, &add) || add != off || !aot_br(at + 12, ARM64_REG_X17))
    return 0;
  const void* bound = NULL;
  memcpy(&bound, (const void*)(page + (uintptr_t)(intptr_t)off), sizeof bound);
  return bound == trampoline;
}

int aot_in_branch_reach(const void* instruction, const void* target) {
  int64_t delta = (int64_t)((uintptr_t)target - (uintptr_t)instruction);
  return delta >= -(INT64_C(1) << 27) && delta < (INT64_C(1) << 27);
}

int aot_trampoline_body_ok(const void* trampoline, const void* call, char* why, size_t why_size) {
  uintptr_t t = (uintptr_t)trampoline;
  struct aot_insn ret;
  aot_decode((const void*)(t + PATCHCALL_SCT_RET), &ret);
  uintptr_t page = 0;
  int32_t off = 0, zero = -1;
  int path = aot_adrp(t + 8, ARM64_REG_X16, &page) && aot_ldr(t + 12, ARM64_REG_X16, ARM64_REG_X16, &off) &&
             aot_ldr(t + 16, ARM64_REG_X16, ARM64_REG_X16, &zero) && zero == 0 && aot_br(t + 20, ARM64_REG_X16);
  const void* held = NULL;
  if (path) memcpy(&held, (const void*)(page + (uintptr_t)(intptr_t)off), sizeof held);
  int udf = aot_word(t + 24) == 0 && aot_word(t + 28) == 0;
  if (ret.kind == AOT_INSN_RET && path && held == call && udf) return 1;
  char w[4][96];
  for (int i = 0; i < 4; i++) {
    cs_insn* insn = aot_cs_decode(t + 8 + 4 * (uintptr_t)i);
    aot_cs_text(insn, t + 8 + 4 * (uintptr_t)i, w[i], sizeof w[i]);
    if (insn) cs_free(insn, 1);
  }
  snprintf(why, why_size, "+4 '%s'; +8 '%s; %s; %s; %s' (slot holds %p, the call is %p); +24 %08x, +28 %08x (udf #0 is 0)",
           ret.text, w[0], w[1], w[2], w[3], held, call, aot_word(t + 24), aot_word(t + 28));
  return 0;
}

int aot_breakpoint_protocol(void) { return 0; }

size_t aot_debugger_breakpoint(unsigned char out[8]) {
  static const uint32_t brk0 = 0xd4200000; /* brk #0, as gdb writes it */
  memcpy(out, &brk0, sizeof brk0);
  return sizeof brk0;
}
