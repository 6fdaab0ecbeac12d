// The aarch64 emitters (jit/aarch64/emitters.cpp) on asmjit's a64 assembler, linked at many
// base addresses and decoded by Capstone (ARM64 mode): every Direct site's BL, fixed call,
// poll (adrp/ldrb/cbnz and its slow path) and veneer at every offset, with its opcode, target
// and alignment; and what the emitters refuse. Runs on any host whose asmjit has the a64
// backend (the x86-64 build) and in the aarch64 build (under qemu here). Links none of the
// runtime: the emitters and the aarch64 arch headers only, never arch.h.
#include <capstone/capstone.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "a64_disasm.h"
#include "aarch64/emitters.h"
#include "asmjit_status.h"
#include "arch/aarch64/branch.h"
#include "arch/aarch64/poll.h"
#include "arch/aarch64/stubs.h"

namespace patchcall::jit {
namespace {

using detail::Emission;
using detail::LinkTargets;
namespace a64 = asmjit::a64;
constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kReach = arch::kBranchReach;

using Decoded = test::A64Decoded;
using test::A64Disasm;

// An A64 CodeHolder with the emitters' record, as jit::Assembler holds them (it needs a
// Runtime; these tests link the code themselves, at any address).
struct Code {
  asmjit::CodeHolder holder;
  std::unique_ptr<a64::Assembler> a;
  Emission e;
  Code() {
    holder.init(asmjit::Environment(asmjit::Arch::kAArch64));
    a = std::make_unique<a64::Assembler>(&holder);
  }
  void nops(size_t n) {
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(a->nop(), asmjit::kErrorOk);
  }
  // install()'s steps without the arena: out-of-line code, flatten, relocate, copy, link.
  Status link(uint64_t base, const LinkTargets& t, std::vector<uint8_t>* out) {
    PATCHCALL_TRY(isa::emitOutOfLine(*a, e));
    PATCHCALL_TRY(asmjitStatus(holder.flatten()));
    PATCHCALL_TRY(asmjitStatus(holder.resolveUnresolvedLinks()));
    EXPECT_FALSE(holder.hasUnresolvedLinks());
    PATCHCALL_TRY(asmjitStatus(holder.relocateToBase(base)));
    out->assign(holder.codeSize(), 0xEE);
    PATCHCALL_TRY(asmjitStatus(holder.copyFlattenedData(out->data(), out->size(), asmjit::CopySectionFlags::kPadTargetBuffer)));
    return isa::link(e, base, out->data(), t);
  }
};

int64_t branchTarget(const Decoded& d) {
  EXPECT_GE(d.detail.op_count, 1) << d.text;
  const cs_arm64_op& op = d.detail.operands[d.detail.op_count - 1];  // cbnz: the last operand
  EXPECT_EQ(op.type, ARM64_OP_IMM) << d.text;
  return op.imm;
}

// A BL at `offset` that reaches `dest`, directly or through a veneer in the code: returns where
// the BL itself branches.
void expectCallReaches(A64Disasm& dis, const std::vector<uint8_t>& code, uint64_t base, size_t offset, uint64_t dest,
                       bool* viaVeneer) {
  ASSERT_EQ((base + offset) % 4, 0u);
  Decoded bl = dis.at(code, base, offset);
  ASSERT_EQ(bl.id, ARM64_INS_BL) << bl.text << " at +" << offset;
  auto to = static_cast<uint64_t>(branchTarget(bl));
  *viaVeneer = to != dest;
  if (!*viaVeneer) return;
  int64_t d = static_cast<int64_t>(dest) - static_cast<int64_t>(base + offset);
  EXPECT_TRUE(d < -kReach || d >= kReach) << "a veneer for a target in reach, at +" << offset;
  ASSERT_GE(to, base);
  size_t v = to - base;
  ASSERT_LE(v + arch::kVeneerSize, code.size());
  EXPECT_EQ(to % 8, 0u) << "veneer not 8-byte aligned";
  Decoded ldr = dis.at(code, base, v), br = dis.at(code, base, v + 4);
  ASSERT_EQ(ldr.id, ARM64_INS_LDR) << ldr.text;
  EXPECT_EQ(ldr.detail.operands[0].reg, ARM64_REG_X16) << ldr.text;
  ASSERT_EQ(ldr.detail.operands[1].type, ARM64_OP_IMM) << ldr.text;
  EXPECT_EQ(static_cast<uint64_t>(ldr.detail.operands[1].imm), to + 8) << ldr.text;
  ASSERT_EQ(br.id, ARM64_INS_BR) << br.text;
  EXPECT_EQ(br.detail.operands[0].reg, ARM64_REG_X16) << br.text;
  uint64_t quad;
  std::memcpy(&quad, code.data() + v + 8, 8);
  EXPECT_EQ(quad, dest);
}

// Blob bases: 64-byte aligned (as the arena's), low and high, around page and 2 MiB boundaries.
constexpr uint64_t kBases[] = {0x0000'0040'0000'0000, 0x0000'7fff'8000'0fc0, 0x0000'5555'5560'0000 - 64,
                               0x0000'0001'1000'0000 + 0x1f'ffc0};  // every one >= 4 GiB: flags 4 GiB below
constexpr size_t kOffsets = 80;  // instructions of padding before the emitted one: offsets 0..316

// Distances from a call to its target: in reach (small, edges) and beyond (either side).
std::vector<int64_t> callDistances() {
  std::vector<int64_t> d = {4, -4, 0x1000, -0x1000, 127 * kMiB, -127 * kMiB, kReach - 4 - 4096, -kReach + 4096};
  d.insert(d.end(), {kReach + 4096, -kReach - 4096, int64_t{1} << 32, -(int64_t{1} << 33), int64_t{1} << 40});
  return d;
}

TEST(A64JitEmission, DirectSiteIsOneAlignedBlAtEveryOffset) {
  A64Disasm dis;
  for (SiteForm form : {SiteForm::kDirect, SiteForm::kAuto}) {
    for (size_t n = 0; n < kOffsets; ++n) {
      Code c;
      c.nops(n);
      ASSERT_TRUE(isa::emitCall(*c.a, c.e, Key{7}, form).isOk());
      ASSERT_EQ(c.a->ret(a64::x30), asmjit::kErrorOk);
      ASSERT_EQ(c.e.sites.size(), 1u);
      EXPECT_EQ(c.e.sites[0].offset, 4 * n);  // no padding, ever
      EXPECT_EQ(c.e.sites[0].form, SiteForm::kDirect);
      EXPECT_EQ(c.e.sites[0].key, Key{7});
      for (uint64_t base : kBases) {
        std::vector<uint8_t> code;
        ASSERT_TRUE(c.link(base, {}, &code).isOk());
        ASSERT_EQ(code.size(), 4 * n + 8);  // nothing out of line: no poll, no fixed call
        size_t at = c.e.sites[0].offset;
        EXPECT_EQ((base + at) % arch::kFieldAlign, 0u);
        Decoded bl = dis.at(code, base, at);
        ASSERT_EQ(bl.id, ARM64_INS_BL) << bl.text;
        // Until commitCode writes the key's target: `bl .`, a complete BL (never udf).
        EXPECT_EQ(static_cast<uint64_t>(branchTarget(bl)), base + at) << bl.text;
        EXPECT_TRUE(arch::isCall(code.data() + at));
        EXPECT_EQ(dis.at(code, base, at + 4).id, ARM64_INS_RET);
      }
    }
  }
}

TEST(A64JitEmission, FixedCallReachesItsTargetDirectlyOrThroughOneVeneer) {
  A64Disasm dis;
  int direct = 0, veneered = 0;
  for (size_t n = 0; n < kOffsets; ++n) {
    for (uint64_t base : kBases) {
      for (int64_t d : callDistances()) {
        Code c;
        c.nops(n);
        uint64_t target = base + 4 * n + static_cast<uint64_t>(d);
        ASSERT_TRUE(isa::emitFixedCall(*c.a, c.e, reinterpret_cast<const void*>(target)).isOk());
        ASSERT_EQ(c.a->ret(a64::x30), asmjit::kErrorOk);
        std::vector<uint8_t> code;
        ASSERT_TRUE(c.link(base, {}, &code).isOk());
        bool viaVeneer = false;
        expectCallReaches(dis, code, base, 4 * n, target, &viaVeneer);
        (viaVeneer ? veneered : direct) += 1;
        EXPECT_EQ(viaVeneer, d < -kReach || d >= kReach) << d;
        EXPECT_EQ(c.e.veneers.size(), 1u);  // one per target, used or not
      }
    }
  }
  EXPECT_GT(direct, 500);
  EXPECT_GT(veneered, 500);
}

TEST(A64JitEmission, CallsToOneTargetShareOneVeneer) {
  A64Disasm dis;
  const uint64_t base = kBases[0];
  const uint64_t far1 = base + (int64_t{1} << 36), far2 = base - (int64_t{1} << 35), near = base + 0x10'0000;
  Code c;
  const uint64_t order[] = {far1, near, far2, far1, far2, near, far1};
  std::vector<size_t> at;
  for (uint64_t t : order) {
    at.push_back(c.a->offset());
    ASSERT_TRUE(isa::emitFixedCall(*c.a, c.e, reinterpret_cast<const void*>(t)).isOk());
    c.nops(1);
  }
  ASSERT_EQ(c.a->ret(a64::x30), asmjit::kErrorOk);
  std::vector<uint8_t> code;
  ASSERT_TRUE(c.link(base, {}, &code).isOk());
  EXPECT_EQ(c.e.veneers.size(), 3u);
  for (size_t i = 0; i < at.size(); ++i) {
    bool viaVeneer = false;
    expectCallReaches(dis, code, base, at[i], order[i], &viaVeneer);
    EXPECT_EQ(viaVeneer, order[i] != near);
  }
  // The first veneer right after the code (after one fill word when the code ends off 8).
  size_t codeEnd = 4 * (2 * std::size(order) + 1);
  EXPECT_EQ(c.e.veneers[0].at, (codeEnd + 7) / 8 * 8);
  EXPECT_EQ(code.size(), c.e.veneers[0].at + 3 * arch::kVeneerSize);
}

// The poll at `at`: adrp x16 / ldrb w16 on the flag, cbnz w16 to a slow path that saves the
// frame record, calls the stub (directly or through a veneer) and branches back after the poll.
void expectPoll(A64Disasm& dis, const std::vector<uint8_t>& code, uint64_t base, size_t at, const LinkTargets& t,
                bool* stubViaVeneer) {
  auto flag = reinterpret_cast<uint64_t>(t.safepointFlag);
  ASSERT_EQ((base + at) % 4, 0u);
  Decoded adrp = dis.at(code, base, at), ldrb = dis.at(code, base, at + 4), cbnz = dis.at(code, base, at + 8);
  ASSERT_EQ(adrp.id, ARM64_INS_ADRP) << adrp.text;
  EXPECT_EQ(adrp.detail.operands[0].reg, ARM64_REG_X16) << adrp.text;
  EXPECT_EQ(static_cast<uint64_t>(adrp.detail.operands[1].imm), flag & ~uint64_t{0xFFF}) << adrp.text;
  ASSERT_EQ(ldrb.id, ARM64_INS_LDRB) << ldrb.text;
  EXPECT_EQ(ldrb.detail.operands[0].reg, ARM64_REG_W16) << ldrb.text;
  ASSERT_EQ(ldrb.detail.operands[1].type, ARM64_OP_MEM) << ldrb.text;
  EXPECT_EQ(ldrb.detail.operands[1].mem.base, ARM64_REG_X16) << ldrb.text;
  EXPECT_EQ(static_cast<uint64_t>(ldrb.detail.operands[1].mem.disp), flag & 0xFFF) << ldrb.text;
  ASSERT_EQ(cbnz.id, ARM64_INS_CBNZ) << cbnz.text;
  EXPECT_EQ(cbnz.detail.operands[0].reg, ARM64_REG_W16) << cbnz.text;
  auto slow = static_cast<uint64_t>(branchTarget(cbnz));
  ASSERT_GT(slow, base + at);
  size_t s = slow - base;
  ASSERT_LE(s + 16, code.size());
  Decoded stp = dis.at(code, base, s), ldp = dis.at(code, base, s + 8), b = dis.at(code, base, s + 12);
  ASSERT_EQ(stp.id, ARM64_INS_STP) << stp.text;
  EXPECT_EQ(stp.detail.operands[0].reg, ARM64_REG_X29) << stp.text;
  EXPECT_EQ(stp.detail.operands[1].reg, ARM64_REG_X30) << stp.text;
  EXPECT_EQ(stp.detail.operands[2].mem.base, ARM64_REG_SP) << stp.text;
  EXPECT_EQ(stp.detail.operands[2].mem.disp, -16) << stp.text;
  EXPECT_TRUE(stp.detail.writeback) << stp.text;
  expectCallReaches(dis, code, base, s + 4, reinterpret_cast<uint64_t>(t.safepointStub), stubViaVeneer);
  ASSERT_EQ(ldp.id, ARM64_INS_LDP) << ldp.text;
  EXPECT_EQ(ldp.detail.operands[0].reg, ARM64_REG_X29) << ldp.text;
  EXPECT_EQ(ldp.detail.operands[1].reg, ARM64_REG_X30) << ldp.text;
  EXPECT_EQ(ldp.detail.operands[2].mem.base, ARM64_REG_SP) << ldp.text;
  EXPECT_TRUE(ldp.detail.writeback) << ldp.text;
  EXPECT_EQ(ldp.text, "ldp x29, x30, [sp], #0x10");  // post-index: sp back up by 16
  ASSERT_EQ(b.id, ARM64_INS_B) << b.text;
  EXPECT_EQ(static_cast<uint64_t>(branchTarget(b)), base + at + 12) << b.text;  // right after the cbnz
}

TEST(A64JitEmission, PollAtEveryOffsetLoadsTheFlagAndReachesTheStub) {
  A64Disasm dis;
  int direct = 0, veneered = 0;
  for (size_t n = 0; n < kOffsets; ++n) {
    for (uint64_t base : kBases) {
      // The flag within adrp's +-4 GiB (both edges); the stub near (the runtime page) or far.
      const int64_t flagDistances[] = {-0x40, 0x123, 0x1000, -(int64_t{1} << 32) + 0x1000, (int64_t{1} << 32) - 0x2000};
      const int64_t stubDistances[] = {-0x2000, 64 * kMiB, -kReach - 0x1000, int64_t{1} << 34};
      int64_t fd = flagDistances[n % std::size(flagDistances)], sd = stubDistances[(n / 2) % std::size(stubDistances)];
      Code c;
      c.nops(n);
      ASSERT_TRUE(isa::emitPoll(*c.a, c.e).isOk());
      ASSERT_EQ(c.a->ret(a64::x30), asmjit::kErrorOk);
      LinkTargets t{reinterpret_cast<const void*>(base + fd + static_cast<int64_t>(n % 5)),
                    reinterpret_cast<const void*>(base + sd)};
      std::vector<uint8_t> code;
      ASSERT_TRUE(c.link(base, t, &code).isOk()) << n;
      bool viaVeneer = false;
      expectPoll(dis, code, base, 4 * n, t, &viaVeneer);
      (viaVeneer ? veneered : direct) += 1;
      EXPECT_EQ(dis.at(code, base, 4 * n + 12).id, ARM64_INS_RET);  // the poll's fall-through
    }
  }
  EXPECT_GT(direct, 50);
  EXPECT_GT(veneered, 50);
}

TEST(A64JitEmission, ManyPollsShareTheStubVeneerAndReturnToTheirOwnPoll) {
  A64Disasm dis;
  const uint64_t base = kBases[1];
  LinkTargets t{reinterpret_cast<const void*>(base + 0x5000 + 3), reinterpret_cast<const void*>(base + (int64_t{1} << 35))};
  Code c;
  std::vector<size_t> polls, sites;
  for (int i = 0; i < 12; ++i) {
    polls.push_back(c.a->offset());
    ASSERT_TRUE(isa::emitPoll(*c.a, c.e).isOk());
    sites.push_back(c.a->offset());
    ASSERT_TRUE(isa::emitCall(*c.a, c.e, Key{static_cast<uint32_t>(i + 1)}, SiteForm::kDirect).isOk());
    c.nops(static_cast<size_t>(i % 3));
  }
  ASSERT_EQ(c.a->ret(a64::x30), asmjit::kErrorOk);
  std::vector<uint8_t> code;
  ASSERT_TRUE(c.link(base, t, &code).isOk());
  EXPECT_EQ(c.e.veneers.size(), 1u);  // one for the stub, shared by every slow path
  for (size_t at : polls) {
    bool viaVeneer = false;
    expectPoll(dis, code, base, at, t, &viaVeneer);
    EXPECT_TRUE(viaVeneer);
  }
  ASSERT_EQ(c.e.sites.size(), sites.size());
  for (size_t i = 0; i < sites.size(); ++i) {
    EXPECT_EQ(c.e.sites[i].offset, sites[i]);
    EXPECT_EQ(dis.at(code, base, sites[i]).id, ARM64_INS_BL);
  }
}

TEST(A64JitEmission, RefusesWhatA64CannotEmit) {
  Code c;
  for (SiteForm form : {SiteForm::kToggle, SiteForm::kBreakpoint}) {
    Status s = isa::emitCall(*c.a, c.e, Key{1}, form);
    EXPECT_EQ(s.code(), Error::kInvalidArgument);
    EXPECT_NE(s.message().find("only Direct"), std::string::npos) << s.message();
  }
  EXPECT_EQ(isa::emitToggle(*c.a, c.e, Key{1}, nullptr).code(), Error::kInvalidArgument);
  EXPECT_EQ(isa::emitFixedCall(*c.a, c.e, reinterpret_cast<const void*>(0x1002)).code(), Error::kMisalignedTarget);
  EXPECT_TRUE(c.e.sites.empty() && c.e.fixups.empty());
  EXPECT_EQ(c.a->offset(), 0u);  // nothing emitted by a refusal

  const uint8_t two[2] = {1, 2};
  ASSERT_EQ(c.a->embed(two, 2), asmjit::kErrorOk);  // leaves the offset off a word
  EXPECT_EQ(isa::emitCall(*c.a, c.e, Key{1}, SiteForm::kDirect).code(), Error::kInvalidArgument);
  EXPECT_EQ(isa::emitPoll(*c.a, c.e).code(), Error::kInvalidArgument);
  EXPECT_EQ(isa::emitFixedCall(*c.a, c.e, reinterpret_cast<const void*>(0x1000)).code(), Error::kInvalidArgument);
}

TEST(A64JitEmission, FlagBeyondAdrpReachIsOutOfRange) {
  const uint64_t base = kBases[0];
  for (int64_t d : {int64_t{1} << 32, -(int64_t{1} << 32) - 0x1000, int64_t{1} << 40}) {
    Code c;
    ASSERT_TRUE(isa::emitPoll(*c.a, c.e).isOk());
    ASSERT_EQ(c.a->ret(a64::x30), asmjit::kErrorOk);
    std::vector<uint8_t> code;
    Status s = c.link(base, {reinterpret_cast<const void*>(base + d), reinterpret_cast<const void*>(base + 0x100)}, &code);
    EXPECT_EQ(s.code(), Error::kOutOfRange) << d;
  }
}

}  // namespace
}  // namespace patchcall::jit
