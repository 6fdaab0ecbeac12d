// Emission, checked by a disassembler (Zydis): every site form at each of the 64 start
// offsets within a cache line, the safepoint poll and the runtime's safepoint stub.
// Invariant 1 of DESIGN.md: a Direct site is `E8 rel32`, its rel32 4-byte aligned (so it
// never crosses a 64-byte line), decoding as a call to the key's current target.
#include <Zydis/Zydis.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "disasm.h"
#include "patchcall/jit.h"
#include "patchcall/testing.h"

namespace patchcall {
namespace {

using test::Decoded;
using test::decodeAt;
namespace x86 = asmjit::x86;

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}
uint64_t addr(const void* p) { return reinterpret_cast<uint64_t>(p); }

// A JIT target that returns its identity (`mov eax, id ; ret`).
Blob installReturner(Runtime& rt, int id) {
  jit::Assembler a(rt);
  a.mov(x86::eax, id);
  a.ret();
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  return b.isOk() ? *b : Blob{};
}

// Emits `k` bytes of ordinary instructions (5-byte `mov ecx, imm32`, then 1-byte NOPs),
// so the next instruction starts at offset `k` plus whatever precedes it.
void emitFiller(jit::Assembler& a, size_t k) {
  for (; k >= 5; k -= 5) a.mov(x86::ecx, 0x5a5a5a5a);
  for (; k > 0; --k) a.nop();
}

// Decodes every instruction from `from` up to `to`; they must end exactly at `to`, which
// proves the padding before a site is made of whole instructions.
void expectDecodesUpTo(const uint8_t* from, const uint8_t* to) {
  const uint8_t* p = from;
  while (p < to) {
    Decoded d = decodeAt(p);
    ASSERT_TRUE(d.ok) << "undecodable byte " << hex(*p) << " at " << static_cast<const void*>(p);
    p += d.length;
  }
  EXPECT_EQ(p, to) << "the instruction stream runs past the site start " << static_cast<const void*>(to);
}

// Checks the call at `call` decodes as `E8 rel32` to `target`.
void expectCallTo(const void* call, const void* target, const std::string& where) {
  Decoded d = decodeAt(call);
  ASSERT_TRUE(d.ok) << where << ": undecodable at " << call;
  EXPECT_EQ(d.opcode, 0xE8) << where << ": " << d.text;
  EXPECT_TRUE(d.isCall) << where << ": " << d.text;
  EXPECT_EQ(d.length, 5) << where << ": " << d.text;
  EXPECT_EQ(d.target, addr(target)) << where << ": decoded '" << d.text << "' at " << call << ", expected target "
                                    << target;
}

// A Direct site: E8, rel32 4-byte aligned and inside one cache line, decodes to the key's
// current target, and the registry reports the same.
void expectDirectSite(Runtime& rt, const uint8_t* site, Key key, const std::string& where) {
  Result<const void*> current = rt.target(key);
  ASSERT_TRUE(current.isOk()) << current.status().toString();
  uint64_t rel32 = addr(site) + 1;
  EXPECT_EQ(rel32 % 4, 0u) << where << ": rel32 at " << hex(rel32) << " is not 4-byte aligned";
  EXPECT_EQ(rel32 / 64, (rel32 + 3) / 64) << where << ": rel32 at " << hex(rel32) << " crosses a cache line";
  expectCallTo(site, *current, where);
  Result<SiteInfo> info = rt.site(site);
  ASSERT_TRUE(info.isOk()) << where << ": " << info.status().toString();
  EXPECT_EQ(info->form, SiteForm::kDirect) << where;
  EXPECT_EQ(info->key, key) << where;
  EXPECT_EQ(info->target, *current) << where << ": registry says " << info->target;
}

__attribute__((noinline)) int cxxTarget() { return 42; }

// The arena sits within rel32 reach of the executable's text, so a site calls a C++
// function directly (no veneer).
TEST(EmissionPlacement, CxxTargetIsCalledDirectly) {
  Result<Runtime> r = Runtime::create();
  ASSERT_TRUE(r.isOk()) << r.status().toString();
  Runtime& rt = *r;
  ArenaInfo info = rt.arenaInfo();
  ASSERT_TRUE(info.nearText) << "arena at " << info.rxBase << ", " << info.distanceFromText << " bytes from the text";
  auto target = reinterpret_cast<const void*>(&cxxTarget);
  Result<Key> key = rt.createKey(target);
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  jit::Assembler a(rt);
  a.sub(x86::rsp, 8);
  ASSERT_TRUE(jit::emitCall(a, *key).isOk());
  a.add(x86::rsp, 8);
  a.ret();
  uint32_t offset = a.sites().at(0).offset;
  Result<Blob> b = jit::install(a);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  expectCallTo(static_cast<const uint8_t*>(b->code) + offset, target, "C++ target");
  EXPECT_EQ(reinterpret_cast<int (*)()>(b->code)(), 42);
  EXPECT_EQ(rt.stats().veneers, 0u);
}

class Emission : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<Runtime> r = Runtime::create();
    ASSERT_TRUE(r.isOk()) << r.status().toString();
    rt_.emplace(std::move(*r));
    for (int i = 0; i < 3; ++i) targets_[i] = installReturner(*rt_, 100 + i);
  }
  Runtime& rt() { return *rt_; }
  const void* target(int i) const { return targets_[i].code; }

  std::optional<Runtime> rt_;
  Blob targets_[3];
};

// [sub rsp,8][filler k][site][add rsp,8][ret]: callable, returns the key's target's id.
struct SiteBlob {
  Blob blob;
  SiteSpec spec;
  uint32_t siteStart = 0;  // offset where emitCall began (before any padding)
  const uint8_t* site() const { return static_cast<const uint8_t*>(blob.code) + spec.offset; }
  int call() const { return reinterpret_cast<int (*)()>(blob.code)(); }
};

SiteBlob emitSiteAfter(Runtime& rt, size_t k, Key key, SiteForm form) {
  SiteBlob out;
  jit::Assembler a(rt);
  a.sub(x86::rsp, 8);  // keep rsp 16-byte aligned at the call
  emitFiller(a, k);
  out.siteStart = static_cast<uint32_t>(a.offset());
  Status s = jit::emitCall(a, key, form);
  EXPECT_TRUE(s.isOk()) << s.toString();
  a.add(x86::rsp, 8);
  a.ret();
  EXPECT_EQ(a.sites().size(), 1u);
  if (a.sites().size() == 1) out.spec = a.sites()[0];
  Result<Blob> b = jit::install(a);
  EXPECT_TRUE(b.isOk()) << b.status().toString();
  if (b.isOk()) out.blob = *b;
  return out;
}

TEST_F(Emission, DirectSiteAtEveryCacheLineOffset) {
  for (size_t k = 0; k < 64; ++k) {
    Result<Key> key = rt().createKey(target(0));
    ASSERT_TRUE(key.isOk()) << key.status().toString();
    SiteBlob sb = emitSiteAfter(rt(), k, *key, SiteForm::kDirect);
    ASSERT_TRUE(sb.blob.valid()) << "k=" << k;
    std::string where = "k=" + std::to_string(k) + " site offset " + std::to_string(sb.spec.offset);
    EXPECT_EQ(addr(sb.blob.code) % 64, 0u) << "blobs are 64-byte aligned";
    EXPECT_EQ(sb.spec.form, SiteForm::kDirect) << where;
    EXPECT_LE(sb.spec.offset - sb.siteStart, 3u) << where << ": more padding than alignment needs";
    expectDecodesUpTo(static_cast<const uint8_t*>(sb.blob.code), sb.site());
    expectDirectSite(rt(), sb.site(), *key, where + " (initial)");
    EXPECT_EQ(sb.call(), 100) << where;

    Result<const void*> old = rt().update(*key, target(1));
    ASSERT_TRUE(old.isOk()) << old.status().toString();
    EXPECT_EQ(*old, target(0));
    expectDirectSite(rt(), sb.site(), *key, where + " (after update)");
    EXPECT_EQ(sb.call(), 101) << where;
  }
}

// All 64 offsets bound to one key: one update retargets every one of them.
TEST_F(Emission, OneKeyManySitesFollowEachUpdate) {
  Result<Key> key = rt().createKey(target(0));
  ASSERT_TRUE(key.isOk()) << key.status().toString();
  std::vector<SiteBlob> blobs;
  for (size_t k = 0; k < 64; ++k) blobs.push_back(emitSiteAfter(rt(), k, *key, SiteForm::kDirect));
  for (int round = 1; round <= 3; ++round) {
    int t = round % 3;
    ASSERT_TRUE(rt().update(*key, target(t)).isOk());
    for (size_t k = 0; k < blobs.size(); ++k) {
      expectDirectSite(rt(), blobs[k].site(), *key, "k=" + std::to_string(k) + " round " + std::to_string(round));
      EXPECT_EQ(blobs[k].call(), 100 + t) << "k=" << k;
    }
  }
}

// Toggle: [66 90 | EB xx][E8 A][EB 05][E8 B]; the 2-byte toggle is 2-aligned (one store,
// never straddles a line); the active call decodes to the key's target.
TEST_F(Emission, ToggleSiteAtEveryCacheLineOffset) {
  for (size_t k = 0; k < 64; ++k) {
    Result<Key> key = rt().createKey(target(0));
    ASSERT_TRUE(key.isOk()) << key.status().toString();
    SiteBlob sb = emitSiteAfter(rt(), k, *key, SiteForm::kToggle);
    ASSERT_TRUE(sb.blob.valid()) << "k=" << k;
    std::string where = "k=" + std::to_string(k) + " toggle at " + hex(addr(sb.site()));
    const uint8_t* t = sb.site();
    EXPECT_EQ(sb.spec.form, SiteForm::kToggle);
    EXPECT_EQ(addr(t) % 2, 0u) << where << ": toggle is not 2-byte aligned";
    expectDecodesUpTo(static_cast<const uint8_t*>(sb.blob.code), t);

    // Fresh: toggle is a 2-byte nop selecting call A; both calls reach the initial target.
    Decoded nop = decodeAt(t);
    EXPECT_TRUE(nop.ok && nop.length == 2 && !nop.isRelative) << where << ": " << nop.text;
    expectCallTo(t + 2, target(0), where + " call A");
    Decoded skip = decodeAt(t + 7);
    EXPECT_TRUE(skip.isRelative && skip.length == 2) << where << ": " << skip.text;
    EXPECT_EQ(skip.target, addr(t + 14)) << where << ": the jmp after call A must skip call B: " << skip.text;
    expectCallTo(t + 9, target(0), where + " call B");
    EXPECT_EQ(sb.call(), 100) << where;

    // First update: call B rewritten, toggle jumps to B.
    ASSERT_TRUE(rt().update(*key, target(1)).isOk());
    Decoded toB = decodeAt(t);
    EXPECT_TRUE(toB.isRelative && toB.length == 2 && toB.target == addr(t + 9))
        << where << ": toggle should jump to call B, decoded " << toB.text;
    expectCallTo(t + 9, target(1), where + " call B after update");
    Result<SiteInfo> info = rt().site(t);
    ASSERT_TRUE(info.isOk()) << info.status().toString();
    EXPECT_EQ(info->form, SiteForm::kToggle);
    EXPECT_EQ(info->target, target(1)) << where;
    EXPECT_EQ(sb.call(), 101) << where;

    // Second update (waits a grace period): call A rewritten, toggle back to the nop.
    ASSERT_TRUE(rt().update(*key, target(2)).isOk());
    Decoded back = decodeAt(t);
    EXPECT_TRUE(back.ok && back.length == 2 && !back.isRelative) << where << ": " << back.text;
    expectCallTo(t + 2, target(2), where + " call A after second update");
    info = rt().site(t);
    ASSERT_TRUE(info.isOk());
    EXPECT_EQ(info->target, target(2)) << where;
    EXPECT_EQ(sb.call(), 102) << where;
  }
}

// kAuto: Direct where the rel32 is aligned without padding, otherwise Breakpoint in place.
TEST_F(Emission, AutoSitePicksDirectOnlyWhereAligned) {
  int direct = 0, breakpoint = 0;
  for (size_t k = 0; k < 64; ++k) {
    Result<Key> key = rt().createKey(target(0));
    ASSERT_TRUE(key.isOk()) << key.status().toString();
    SiteBlob sb = emitSiteAfter(rt(), k, *key, SiteForm::kAuto);
    ASSERT_TRUE(sb.blob.valid()) << "k=" << k;
    std::string where = "k=" + std::to_string(k) + " site at " + hex(addr(sb.site()));
    EXPECT_EQ(sb.spec.offset, sb.siteStart) << where << ": kAuto must not pad";
    bool aligned = (addr(sb.site()) + 1) % 4 == 0;
    SiteForm expected = aligned ? SiteForm::kDirect : SiteForm::kBreakpoint;
    (aligned ? direct : breakpoint)++;
    EXPECT_EQ(sb.spec.form, expected) << where;
    Result<SiteInfo> info = rt().site(sb.site());
    ASSERT_TRUE(info.isOk()) << info.status().toString();
    EXPECT_EQ(info->form, expected) << where;
    expectCallTo(sb.site(), target(0), where);
    EXPECT_EQ(sb.call(), 100);

    ASSERT_TRUE(rt().update(*key, target(1)).isOk());
    expectCallTo(sb.site(), target(1), where + " after update");
    info = rt().site(sb.site());
    ASSERT_TRUE(info.isOk());
    EXPECT_EQ(info->target, target(1)) << where;
    EXPECT_EQ(sb.call(), 101) << where;
  }
  EXPECT_EQ(direct, 16);
  EXPECT_EQ(breakpoint, 48);
}

// The RIP-relative memory operand of the instruction at `p` (Zydis computes the address).
bool ripMemoryOperand(const void* p, ZydisDisassembledInstruction* insn, uint64_t* absolute) {
  if (!ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, addr(p), p, 15, insn))) return false;
  for (int i = 0; i < insn->info.operand_count_visible; ++i) {
    const ZydisDecodedOperand& op = insn->operands[i];
    if (op.type == ZYDIS_OPERAND_TYPE_MEMORY && op.mem.base == ZYDIS_REGISTER_RIP) {
      ZyanU64 abs = 0;
      if (!ZYAN_SUCCESS(ZydisCalcAbsoluteAddress(&insn->info, &op, addr(p), &abs))) return false;
      *absolute = abs;
      return true;
    }
  }
  return false;
}

// `lea rsp, [rsp+disp]` at `p` (Zydis): how the slow path steps over the red zone and back.
void expectLeaRsp(const uint8_t* p, int64_t disp, const std::string& where) {
  ZydisDisassembledInstruction lea;
  ASSERT_TRUE(ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, addr(p), p, 15, &lea))) << where;
  EXPECT_EQ(lea.info.mnemonic, ZYDIS_MNEMONIC_LEA) << where << ": " << lea.text;
  ASSERT_GE(lea.info.operand_count_visible, 2) << where << ": " << lea.text;
  EXPECT_EQ(lea.operands[0].reg.value, ZYDIS_REGISTER_RSP) << where << ": " << lea.text;
  EXPECT_EQ(lea.operands[1].mem.base, ZYDIS_REGISTER_RSP) << where << ": " << lea.text;
  EXPECT_EQ(lea.operands[1].mem.index, ZYDIS_REGISTER_NONE) << where << ": " << lea.text;
  EXPECT_EQ(lea.operands[1].mem.disp.value, disp) << where << ": " << lea.text;
}

// cmp byte [rip+flag], 0 ; jne slow  ...
// slow: lea rsp, [rsp-128] ; call safepointStub ; lea rsp, [rsp+128] ; jmp back
TEST_F(Emission, SafepointPollDecodes) {
  for (size_t k : {0, 1, 2, 3, 17, 58, 63}) {
    jit::Assembler a(rt());
    a.sub(x86::rsp, 8);
    emitFiller(a, k);
    size_t pollAt = a.offset();
    ASSERT_TRUE(jit::emitSafepointPoll(a).isOk());
    a.add(x86::rsp, 8);
    a.mov(x86::eax, 7);
    a.ret();
    Result<Blob> b = jit::install(a);
    ASSERT_TRUE(b.isOk()) << b.status().toString();
    auto* code = static_cast<const uint8_t*>(b->code);
    const uint8_t* poll = code + pollAt;
    std::string where = "k=" + std::to_string(k) + " poll at " + hex(addr(poll));

    ZydisDisassembledInstruction cmp;
    uint64_t flag = 0;
    ASSERT_TRUE(ripMemoryOperand(poll, &cmp, &flag)) << where << ": no rip-relative operand";
    EXPECT_EQ(cmp.info.mnemonic, ZYDIS_MNEMONIC_CMP) << where << ": " << cmp.text;
    EXPECT_EQ(cmp.operands[0].size, 8) << where << ": poll must compare one byte: " << cmp.text;
    EXPECT_EQ(cmp.operands[1].type, ZYDIS_OPERAND_TYPE_IMMEDIATE) << cmp.text;
    EXPECT_EQ(cmp.operands[1].imm.value.u, 0u) << cmp.text;
    EXPECT_EQ(flag, addr(const_cast<const uint8_t*>(rt().safepointFlag())))
        << where << ": " << cmp.text << " does not read the runtime's flag";

    const uint8_t* jneAt = poll + cmp.info.length;
    ZydisDisassembledInstruction jne;
    ASSERT_TRUE(ZYAN_SUCCESS(ZydisDisassembleIntel(ZYDIS_MACHINE_MODE_LONG_64, addr(jneAt), jneAt, 15, &jne)));
    EXPECT_EQ(jne.info.mnemonic, ZYDIS_MNEMONIC_JNZ) << where << ": " << jne.text;
    Decoded j = decodeAt(jneAt);
    ASSERT_TRUE(j.isRelative) << j.text;
    const uint8_t* resume = jneAt + j.length;

    // The slow path steps below the red zone, calls the stub, steps back and jumps back
    // right after the jne.
    auto* slow = reinterpret_cast<const uint8_t*>(j.target);
    ASSERT_TRUE(slow > resume && slow < code + b->size) << where << ": slow path " << hex(j.target) << " outside the blob";
    expectLeaRsp(slow, -128, where + " slow path entry");
    const uint8_t* call = slow + decodeAt(slow).length;
    expectCallTo(call, rt().safepointStub(), where + " slow path");
    const uint8_t* up = call + 5;
    expectLeaRsp(up, 128, where + " slow path exit");
    Decoded back = decodeAt(up + decodeAt(up).length);
    EXPECT_TRUE(back.isRelative && !back.isCall) << back.text;
    EXPECT_EQ(back.target, addr(resume)) << where << ": slow path returns to " << back.text;

    EXPECT_EQ(reinterpret_cast<int (*)()>(b->code)(), 7);
  }
}

// The stub decodes to two calls (the pending check, the slow path) and a ret for every save instruction (forced through the test
// hook; one the CPU lacks is skipped), and saves and restores with the instructions the runtime
// reports (which also checks testing::SafepointSave matches the runtime's numbering).
TEST_F(Emission, SafepointStubDecodesForEverySaveMethod) {
  using testing::SafepointSave;
  for (SafepointSave wanted : {SafepointSave::kAuto, SafepointSave::kXsavec, SafepointSave::kXsave, SafepointSave::kFxsave}) {
    testing::setSafepointSave(wanted);
    Result<Runtime> rt = Runtime::create();
    testing::setSafepointSave(SafepointSave::kAuto);
    ASSERT_TRUE(rt.isOk()) << rt.status().toString();
    SafepointSave method = testing::safepointSaveMethod(*rt);
    if (wanted != SafepointSave::kAuto && method != wanted) {
      std::printf("[ info ] %s: not supported here (the runtime picked %s)\n", testing::toString(wanted),
                  testing::toString(method));
      continue;
    }
    auto* p = static_cast<const uint8_t*>(rt->safepointStub());
    const uint8_t* start = p;
    const uint8_t* end = p + 1024;
    int instructions = 0, calls = 0;
    Decoded d;
    std::string listing;
    while (p < end) {
      d = decodeAt(p);
      ASSERT_TRUE(d.ok) << "undecodable byte " << hex(*p) << " at " << static_cast<const void*>(p) << " after:\n" << listing;
      listing += "  " + d.text + "\n";
      ++instructions;
      calls += d.isCall;
      p += d.length;
      if (d.opcode == 0xC3) break;
    }
    std::string where = std::string("requested ") + testing::toString(wanted) + ", uses " + testing::toString(method);
    EXPECT_EQ(d.opcode, 0xC3) << where << ": the stub does not end with ret within 1 KiB:\n" << listing;
    EXPECT_LE(static_cast<size_t>(p - start), 320u) << where << ": larger than kSafepointStubMaxSize\n" << listing;
    EXPECT_EQ(calls, 2) << where << ": expected the pending check and the slow path\n" << listing;
    EXPECT_GT(instructions, 10) << where << "\n" << listing;
    const char* save = method == SafepointSave::kXsavec ? "xsavec64 [rsp]"
                       : method == SafepointSave::kXsave ? "xsave64 [rsp]"
                                                         : "fxsave64 [rsp]";
    const char* restore = method == SafepointSave::kFxsave ? "fxrstor64 [rsp]" : "xrstor64 [rsp]";
    EXPECT_NE(listing.find(save), std::string::npos) << where << ": no " << save << "\n" << listing;
    EXPECT_NE(listing.find(restore), std::string::npos) << where << ": no " << restore << "\n" << listing;
    EXPECT_NE(listing.find("cld"), std::string::npos) << where << ": DF not cleared for the C++ call\n" << listing;
    char sub[64];
    std::snprintf(sub, sizeof sub, "sub rsp, 0x%X", testing::safepointSaveAreaSize(*rt));
    EXPECT_NE(listing.find(sub), std::string::npos) << where << ": no '" << sub << "'\n" << listing;
    if (method != SafepointSave::kFxsave) {
      EXPECT_NE(listing.find("and rsp, 0xFFFFFFFFFFFFFFC0"), std::string::npos)
          << where << ": the area is not 64-byte aligned\n" << listing;
    }
  }
}

// The poll's slow path really runs: with a grace period pending, JIT code calls the stub,
// which reports the quiescent state and preserves the caller's registers.
TEST_F(Emission, PollSlowPathPreservesRegistersAndReportsQuiescence) {
  jit::Assembler a(rt());
  a.push(x86::rbx);
  a.mov(x86::eax, 0);
  a.mov(x86::ecx, 1000000);
  asmjit::Label loop = a.newLabel();
  a.bind(loop);
  a.mov(x86::edx, 3);
  a.mov(x86::esi, 4);
  ASSERT_TRUE(jit::emitSafepointPoll(a).isOk());
  a.add(x86::eax, x86::edx);  // caller-saved registers must survive the slow path
  a.add(x86::eax, x86::esi);
  a.sub(x86::eax, 7);
  a.inc(x86::eax);
  a.dec(x86::ecx);
  a.jnz(loop);
  a.pop(x86::rbx);
  a.ret();
  Result<Blob> b = jit::install(a);
  ASSERT_TRUE(b.isOk()) << b.status().toString();
  auto fn = reinterpret_cast<int (*)()>(b->code);

  std::atomic<bool> running{false}, done{false};
  Status synced;
  uint64_t before = rt().stats().gracePeriods;
  std::thread caller([&] {
    Result<ThreadScope> scope = rt().registerThread("poller");
    ASSERT_TRUE(scope.isOk()) << scope.status().toString();
    running = true;
    int calls = 0;
    while (!done.load() || calls == 0) {
      int sum = fn();
      ++calls;
      ASSERT_EQ(sum, 1000000) << "registers clobbered across the poll slow path (call " << calls << ")";
    }
  });
  // Grace periods only involve the caller once it is registered and running.
  for (int i = 0; i < 5000 && !running.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (!running.load()) {
    done = true;
    caller.join();
    FAIL() << "the poller thread did not start within 5 s";
  }
  for (int i = 0; i < 20; ++i) {
    synced = rt().synchronize(std::chrono::milliseconds(5000));
    if (!synced.isOk()) break;
  }
  done = true;
  caller.join();
  EXPECT_TRUE(synced.isOk()) << synced.toString();
  EXPECT_GE(rt().stats().gracePeriods, before + 20);
}

}  // namespace
}  // namespace patchcall
