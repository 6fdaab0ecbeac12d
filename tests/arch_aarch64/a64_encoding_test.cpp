// The aarch64 arch layer's encoders, decoded by Capstone (ARM64 mode) on any host: every BL at
// many offsets up to the +-128 MiB edges (and the refusal beyond), the trampoline's B, the
// veneer, the poll, the site forms, the breakpoint and the safepoint stub. Includes the
// aarch64 headers directly (never arch.h, which selects the host's ISA) and links none of the
// runtime, so the two ISAs' definitions never meet in one binary.
#include <capstone/capstone.h>
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "a64_disasm.h"
#include "arch/aarch64/branch.h"
#include "arch/aarch64/poll.h"
#include "arch/aarch64/safepoint_stub.h"
#include "arch/aarch64/site_layout.h"
#include "arch/aarch64/stubs.h"

namespace patchcall::arch {
namespace {

constexpr int64_t kMiB = int64_t{1} << 20;

using Decoded = test::A64Decoded;
using test::A64Disasm;

// A branch's target as Capstone reads it (its first operand, an absolute immediate).
int64_t branchTarget(const Decoded& d) {
  EXPECT_GE(d.detail.op_count, 1) << d.text;
  EXPECT_EQ(d.detail.operands[0].type, ARM64_OP_IMM) << d.text;
  return d.detail.operands[0].imm;
}

// Distances a call site's BL must reach: small, every power of two, and both edges.
std::vector<int64_t> distances() {
  std::vector<int64_t> d = {0, 4, -4, 8, -8, 0x1000, -0x1000, 127 * kMiB, -127 * kMiB,
                            kBranchReach - 4, -kBranchReach, kBranchReach - 8, -kBranchReach + 4};
  for (int64_t p = 4; p < kBranchReach; p <<= 1) d.insert(d.end(), {p, -p, p - 4, -(p - 4)});
  for (int64_t x = 12345 * 4; x < kBranchReach; x = x * 7 + 4) d.insert(d.end(), {x, -x});  // irregular ones
  return d;
}

// Where sites sit: low and high in the address space, around a 4 KiB page and a 2 MiB boundary.
constexpr uint64_t kSites[] = {0x0000'0040'0000'0000, 0x0000'7fff'8000'0ffc, 0x0000'5555'5560'0000 - 4,
                               0x0000'0000'1000'0000 + 0x1f'fffc};

TEST(A64Encoding, BlAtEveryDistanceDecodesToItsDestination) {
  A64Disasm dis;
  int checked = 0;
  for (uint64_t site : kSites) {
    for (int64_t d : distances()) {
      uint64_t dest = site + static_cast<uint64_t>(d);
      ASSERT_TRUE(inReach(site, dest)) << std::hex << site << " -> " << dest;
      uint8_t bytes[kCallSize];
      encodeCall(callFieldValue(branchField(site), dest), bytes);
      ASSERT_TRUE(isCall(bytes));
      ASSERT_EQ(callDestination(site, bytes), dest);
      Decoded insn = dis.decode(bytes, kCallSize, site)[0];
      ASSERT_EQ(insn.id, ARM64_INS_BL) << insn.text;
      ASSERT_EQ(branchTarget(insn), static_cast<int64_t>(dest)) << insn.text;
      ASSERT_EQ(branchField(site) % kFieldAlign, 0u);
      ++checked;
    }
  }
  EXPECT_GT(checked, 400);
}

TEST(A64Encoding, BlBeyondReachOrMisalignedIsRefused) {
  for (uint64_t site : kSites) {
    EXPECT_FALSE(inReach(site, site + kBranchReach));          // +128 MiB: one word too far
    EXPECT_FALSE(inReach(site, site - kBranchReach - 4));      // -128 MiB - 4
    EXPECT_FALSE(inReach(site, site + 4 * kBranchReach));
    EXPECT_FALSE(inReach(site, site - (int64_t{1} << 40)));
    for (int r = 1; r < 4; ++r) EXPECT_FALSE(inReach(site, site + 64 + r)) << r;  // not a whole word
    EXPECT_TRUE(inReach(site, site + kBranchReach - 4));
    EXPECT_TRUE(inReach(site, site - kBranchReach));
  }
}

TEST(A64Encoding, TrampolineJumpIsOneAlignedB) {
  A64Disasm dis;
  alignas(16) uint8_t slot[kTrampolineSlotSize];
  std::memset(slot, kFillByte, sizeof slot);
  const uint64_t slotAt = 0x0000'0040'0000'1230;  // slots are 16-byte aligned
  uintptr_t entry = trampolineEntry(slotAt);
  EXPECT_EQ(trampolineCell(entry), slotAt);
  EXPECT_EQ(trampolineCell(entry) % 8, 0u);                 // the cell: one 8-byte store
  EXPECT_EQ(branchField(entry), entry);                     // the field is the B itself
  EXPECT_EQ(branchField(entry) % kFieldAlign, 0u);
  EXPECT_EQ(trampolineJumpHead().size(), 0u);                // nothing but the field to write
  EXPECT_LE(entry + 4, slotAt + kTrampolineSlotSize);
  for (int64_t d : distances()) {
    uint64_t dest = entry + static_cast<uint64_t>(d);
    int32_t field = jumpFieldValue(branchField(entry), dest);
    std::memcpy(slot + (entry - slotAt), &field, 4);
    Decoded b = dis.decode(slot + (entry - slotAt), 4, entry)[0];
    ASSERT_EQ(b.id, ARM64_INS_B) << b.text;
    ASSERT_EQ(branchTarget(b), static_cast<int64_t>(dest)) << b.text;
    ASSERT_FALSE(isCall(slot + (entry - slotAt)));  // a jump, never mistaken for a call site
  }
  // The word after the B is fill: udf #0, which Capstone 4 does not decode (and never a branch).
  EXPECT_EQ(a64::wordAt(slot + (entry - slotAt) + 4), a64::kUdf0);
}

TEST(A64Encoding, VeneerLoadsItsQuadIntoX16AndBranches) {
  A64Disasm dis;
  const uint64_t targets[] = {0x0000'7fff'f7a0'1234 & ~uint64_t{3}, 0x0000'0000'0040'0000, 0xffff'0000'0000'1000};
  for (uint64_t target : targets) {
    alignas(16) uint8_t v[kVeneerSize];
    encodeVeneer(target, v);
    const uint64_t at = 0x0000'0040'0000'2000;
    std::vector<Decoded> insns = dis.decode(v, 8, at);
    ASSERT_EQ(insns[0].id, ARM64_INS_LDR) << insns[0].text;
    ASSERT_EQ(insns[0].detail.operands[0].reg, ARM64_REG_X16) << insns[0].text;
    ASSERT_EQ(insns[0].detail.operands[1].type, ARM64_OP_IMM) << insns[0].text;
    EXPECT_EQ(insns[0].detail.operands[1].imm, static_cast<int64_t>(at + 8)) << insns[0].text;  // the quad
    ASSERT_EQ(insns[1].id, ARM64_INS_BR) << insns[1].text;
    EXPECT_EQ(insns[1].detail.operands[0].reg, ARM64_REG_X16) << insns[1].text;
    uint64_t quad;
    std::memcpy(&quad, v + 8, 8);
    EXPECT_EQ(quad, target);
    EXPECT_EQ(veneerTarget(reinterpret_cast<uintptr_t>(v)), target);
    EXPECT_EQ((at + 8) % 8, 0u);  // the literal is naturally aligned (one 8-byte load)
  }
}

TEST(A64Encoding, NoopAndReturnZeroTargetsDecode) {
  A64Disasm dis;
  std::vector<Decoded> noop = dis.decode(noopStub().data(), noopStub().size(), 0x3000);
  ASSERT_EQ(noop.size(), 1u);
  EXPECT_EQ(noop[0].id, ARM64_INS_RET) << noop[0].text;
  std::vector<Decoded> zero = dis.decode(returnZeroStub().data(), returnZeroStub().size(), 0x3040);
  ASSERT_EQ(zero.size(), 2u);
  EXPECT_EQ(zero[0].text, "movz x0, #0") << zero[0].text;  // the whole x0 (x86: xor eax, eax)
  EXPECT_EQ(zero[1].id, ARM64_INS_RET) << zero[1].text;
}

TEST(A64Encoding, PollLoadsTheFlagByteThroughX16AndBranchesOnIt) {
  A64Disasm dis;
  struct Case {
    uint64_t at, flag;
  };
  const Case cases[] = {{0x0000'0040'0001'0000, 0x0000'0040'0000'0000},
                        {0x0000'0040'0001'0ffc, 0x0000'0040'0001'0fff},
                        {0x0000'0040'8000'0000, 0x0000'0040'0000'0abc},
                        {0x0000'0040'0000'0000, 0x0000'0040'0000'0000 + (int64_t{1} << 32) - 1},  // last byte adrp reaches
                        {0x0000'0041'0000'0000, 0x0000'0040'0000'0000 + 0x123}};                  // -4 GiB
  for (const Case& c : cases) {
    uint32_t poll[3];
    ASSERT_TRUE(a64::encodePollLoad(c.at, c.flag, poll)) << std::hex << c.at << " " << c.flag;
    const uint64_t slow = c.at + 0x400;
    ASSERT_TRUE(a64::encodePollBranch(c.at + kPollSize, slow, &poll[2]));
    std::vector<Decoded> insns = dis.decode(reinterpret_cast<const uint8_t*>(poll), sizeof poll, c.at);
    ASSERT_EQ(insns[0].id, ARM64_INS_ADRP) << insns[0].text;
    EXPECT_EQ(insns[0].detail.operands[0].reg, ARM64_REG_X16);
    EXPECT_EQ(insns[0].detail.operands[1].imm, static_cast<int64_t>(c.flag & ~uint64_t{0xFFF})) << insns[0].text;
    ASSERT_EQ(insns[1].id, ARM64_INS_LDRB) << insns[1].text;
    EXPECT_EQ(insns[1].detail.operands[0].reg, ARM64_REG_W16);
    ASSERT_EQ(insns[1].detail.operands[1].type, ARM64_OP_MEM);
    EXPECT_EQ(insns[1].detail.operands[1].mem.base, ARM64_REG_X16);
    EXPECT_EQ(insns[1].detail.operands[1].mem.disp, static_cast<int32_t>(c.flag & 0xFFF)) << insns[1].text;
    ASSERT_EQ(insns[2].id, ARM64_INS_CBNZ) << insns[2].text;
    EXPECT_EQ(insns[2].detail.operands[0].reg, ARM64_REG_W16);
    EXPECT_EQ(insns[2].detail.operands[1].imm, static_cast<int64_t>(slow)) << insns[2].text;
    EXPECT_EQ(c.at % 4, 0u);
  }
  // Out of reach: a flag 4 GiB away (adrp), a slow path 1 MiB away (cbnz) or not a whole word.
  uint32_t poll[2], branch;
  EXPECT_FALSE(a64::encodePollLoad(0x0000'0040'0000'0000, 0x0000'0041'0000'0000, poll));
  EXPECT_FALSE(a64::encodePollLoad(0x0000'0041'0000'1000, 0x0000'0040'0000'0fff, poll));
  EXPECT_FALSE(a64::encodePollBranch(0x1000, 0x1000 + kMiB, &branch));
  EXPECT_TRUE(a64::encodePollBranch(0x1000 + kMiB, 0x1000, &branch));
  EXPECT_FALSE(a64::encodePollBranch(0x1000, 0x1002, &branch));
  // The template the jit copies: adrp x16 / ldrb w16, [x16] with zero immediates.
  std::vector<Decoded> t = dis.decode(pollCompare().data(), pollCompare().size(), 0x10000);
  ASSERT_EQ(pollCompare().size(), kPollSize);
  EXPECT_EQ(t[0].id, ARM64_INS_ADRP) << t[0].text;
  EXPECT_EQ(t[1].id, ARM64_INS_LDRB) << t[1].text;
  EXPECT_EQ(kRedZoneSize, 0);
}

TEST(A64Encoding, OnlyDirectSitesAreAccepted) {
  alignas(4) uint8_t bl[4], nop[4];
  encodeCall(callFieldValue(0x1000, 0x2000), bl);
  std::memcpy(nop, &a64::kNop, 4);
  bool stallGap = true;
  EXPECT_EQ(checkSiteBytes(SiteForm::kDirect, bl, &stallGap), SiteCheck::kOk);
  EXPECT_FALSE(stallGap);
  EXPECT_EQ(checkSiteBytes(SiteForm::kDirect, nop, &stallGap), SiteCheck::kNotACall);
  EXPECT_EQ(checkSiteBytes(SiteForm::kToggle, bl, &stallGap), SiteCheck::kUnsupportedForm);
  EXPECT_EQ(checkSiteBytes(SiteForm::kBreakpoint, bl, &stallGap), SiteCheck::kUnsupportedForm);
  EXPECT_EQ(checkSiteBytes(SiteForm::kAuto, bl, &stallGap), SiteCheck::kUnresolvedForm);
  EXPECT_EQ(siteSize(SiteForm::kDirect, false), kCallSize);
  EXPECT_EQ(siteLength(SiteForm::kDirect, bl, 4), kCallSize);
  EXPECT_EQ(directSiteRemainder(), 0u);  // the emitter never pads
  EXPECT_FALSE(kBreakpointProtocol);
  EXPECT_NE(std::string(kUnsupportedFormWhy).find("Direct"), std::string::npos);
}

TEST(A64Encoding, BreakpointAndFillDecode) {
  A64Disasm dis;
  Decoded brk = dis.decode(kBreakpoint, kBreakpointSize, 0x1000)[0];
  ASSERT_EQ(brk.id, ARM64_INS_BRK) << brk.text;
  EXPECT_EQ(brk.detail.operands[0].imm, static_cast<int64_t>(a64::kBrkImm)) << brk.text;
  // Freed code (kFillByte words) is udf #0: Capstone 4 refuses to decode it, as the CPU does.
  uint8_t fill[4];
  std::memset(fill, kFillByte, 4);
  EXPECT_EQ(dis.decode(fill, 4, 0x1000)[0].id, 0u);
  EXPECT_EQ(a64::wordAt(fill), a64::kUdf0);
}

TEST(A64Encoding, ToggleLayoutDecodes) {
  // Refused at install, but defined: nop (or b B) / bl A / b +8 / bl B.
  A64Disasm dis;
  uint8_t t[kToggleSize];
  std::memcpy(t, toggleSelectorInitial().data(), kToggleFlipSize);
  std::memcpy(t + kToggleFlipSize, toggleCalls().data(), toggleCalls().size());
  ToggleLayout l = toggleLayout(0x2000, false);
  std::vector<Decoded> insns = dis.decode(t, sizeof t, 0x2000);
  EXPECT_EQ(insns[0].id, ARM64_INS_NOP) << insns[0].text;
  EXPECT_EQ(insns[1].id, ARM64_INS_BL);
  EXPECT_EQ(insns[2].id, ARM64_INS_B);
  EXPECT_EQ(branchTarget(insns[2]), static_cast<int64_t>(l.callB + 4));  // skips B
  EXPECT_EQ(insns[3].id, ARM64_INS_BL);
  toggleFlip(l, true, t);
  Decoded flip = dis.decode(t, 4, 0x2000)[0];
  EXPECT_EQ(flip.id, ARM64_INS_B) << flip.text;
  EXPECT_EQ(branchTarget(flip), static_cast<int64_t>(l.callB));
}

TEST(A64Encoding, SafepointStubSavesEverythingAroundBothCalls) {
  A64Disasm dis;
  uint8_t stub[kSafepointStubMaxSize];
  auto pending = reinterpret_cast<bool (*)() noexcept>(uintptr_t{0x0000'5555'1234'5678});
  auto slow = reinterpret_cast<void (*)() noexcept>(uintptr_t{0x0000'7fff'abcd'ef00});
  size_t n = encodeSafepointStub(stub, detectStateSave(), pending, slow);
  ASSERT_LE(n, kSafepointStubMaxSize);
  ASSERT_EQ(n % 4, 0u);
  std::vector<Decoded> insns = dis.decode(stub, n, 0x40000);
  std::string listing;
  for (const Decoded& d : insns) listing += d.text + "\n";
  for (size_t i = 0; i < insns.size(); ++i) ASSERT_NE(insns[i].id, 0u) << "word " << i << " does not decode\n" << listing;
  EXPECT_EQ(insns.front().text, "stp x29, x30, [sp, #-0x10]!") << listing;
  EXPECT_EQ(insns.back().id, ARM64_INS_RET) << listing;
  EXPECT_EQ(insns[insns.size() - 2].text, "ldp x29, x30, [sp], #0x10") << listing;
  auto count = [&](const std::string& needle) {
    int c = 0;
    for (const Decoded& d : insns) c += d.text.find(needle) != std::string::npos;
    return c;
  };
  // Every general register x0-x18 stored and loaded, all of q0-q31, the three status registers.
  for (int r = 0; r <= 18; ++r) {
    std::string x = "x" + std::to_string(r);
    int stores = 0, loads = 0;
    for (const Decoded& d : insns) {
      bool names = (d.text.find(" " + x + ",") != std::string::npos);
      stores += names && (d.id == ARM64_INS_STP || d.id == ARM64_INS_STR) && d.text.find("[sp") != std::string::npos;
      loads += names && (d.id == ARM64_INS_LDP || d.id == ARM64_INS_LDR) && d.text.find("[sp") != std::string::npos;
    }
    // x0-x2 carry NZCV, FPSR and FPCR to and from their slots, after being saved themselves.
    EXPECT_EQ(stores, r <= 2 ? 2 : 1) << x << "\n" << listing;
    EXPECT_EQ(loads, r <= 2 ? 2 : 1) << x << "\n" << listing;
  }
  auto firstIndex = [&](const std::string& prefix) {
    for (size_t i = 0; i < insns.size(); ++i)
      if (insns[i].text.rfind(prefix, 0) == 0) return i;
    return insns.size();
  };
  EXPECT_LT(firstIndex("stp x2, x3, [sp"), firstIndex("mrs x0, nzcv")) << listing;  // saved before reused
  EXPECT_LT(firstIndex("msr fpcr, x2"), firstIndex("ldp x2, x3, [sp")) << listing;  // restored after use
  for (int q = 0; q < 32; q += 2) {
    std::string pair = "q" + std::to_string(q) + ", q" + std::to_string(q + 1) + ", [sp";
    EXPECT_EQ(count("stp " + pair), 1) << pair << "\n" << listing;
    EXPECT_EQ(count("ldp " + pair), 1) << pair << "\n" << listing;
  }
  for (const char* sys : {"nzcv", "fpsr", "fpcr"}) {
    EXPECT_EQ(count(std::string("mrs x")) >= 3 && count(sys) == 2, true) << sys << "\n" << listing;
  }
  EXPECT_EQ(count("blr x16"), 2) << listing;
  EXPECT_EQ(count("cbz w0"), 1) << listing;
  // The two movz/movk sequences build exactly `pending` and `slowPath`.
  std::vector<uint64_t> built;
  uint64_t value = 0;
  for (size_t i = 0; i < insns.size(); ++i) {
    uint32_t w;
    std::memcpy(&w, stub + 4 * i, 4);
    if ((w & 0xFF80001F) == 0xD2800010) value = (w >> 5) & 0xFFFF;  // movz x16
    if ((w & 0xFF80001F) == 0xF2800010) value |= uint64_t{(w >> 5) & 0xFFFF} << (16 * ((w >> 21) & 3));  // movk x16
    if (w == (a64::kBlr | a64::kX16 << 5)) built.push_back(value);
  }
  ASSERT_EQ(built.size(), 2u) << listing;
  EXPECT_EQ(built[0], reinterpret_cast<uint64_t>(pending));
  EXPECT_EQ(built[1], reinterpret_cast<uint64_t>(slow));
  // The cbz skips exactly the second call: it lands on the first q restore.
  for (size_t i = 0; i < insns.size(); ++i) {
    if (insns[i].text.rfind("cbz w0", 0) == 0) {
      int64_t to = insns[i].detail.operands[1].imm;
      size_t landing = static_cast<size_t>((to - 0x40000) / 4);
      ASSERT_LT(landing, insns.size());
      EXPECT_EQ(insns[landing].text.rfind("ldp q0, q1", 0), 0u) << insns[landing].text;
      EXPECT_EQ(insns[landing - 1].text, "blr x16");
    }
  }
}

}  // namespace
}  // namespace patchcall::arch
