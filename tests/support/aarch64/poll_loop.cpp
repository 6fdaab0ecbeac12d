// tests/support/poll_loop.h on aarch64: 27 general counters (x2-x15, x17, x18, x19-x28, x30)
// and 30 vector counters (v0-v29) across the poll. x0 points to the frame, x1 counts
// iterations, x16 is the poll's own scratch (IP0), x29 keeps the frame record (as JIT code's
// frames do).
#include "poll_loop.h"

#include <cstdio>
#include <cstring>

namespace patchcall::test {
namespace {

namespace a64 = asmjit::a64;

const uint32_t kCounterIds[] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 30};
constexpr int kNumCounters = sizeof(kCounterIds) / sizeof(kCounterIds[0]);
constexpr int kNumVecCounters = 30;  // v0..v29 accumulate v30; v31 holds the marker
static_assert(kNumCounters <= kMaxLoopCounters && kNumVecCounters <= kMaxLoopVectors);
constexpr int kSaveArea = 160;  // x19-x30, d8-d15

a64::Mem field(size_t offset) { return a64::ptr(a64::x0, static_cast<int32_t>(offset)); }

uint32_t word(const std::vector<uint8_t>& b, size_t i) {
  uint32_t w;
  std::memcpy(&w, &b[4 * i], 4);
  return w;
}

std::string hex(const std::vector<uint8_t>& b) {
  std::string s;
  char t[12];
  for (size_t i = 0; i + 4 <= b.size() && i < 16; i += 4) std::snprintf(t, sizeof t, "%08x ", word(b, i / 4)), s += t;
  return s;
}

// The callee-saved registers, in pairs at [sp, #16 i].
template <typename Op>
void forSavedPairs(Op op) {
  for (int i = 0; i < 6; ++i) op(a64::x(19 + 2 * i), a64::x(20 + 2 * i), 16 * i);
}
template <typename Op>
void forSavedVecPairs(Op op) {
  for (int i = 0; i < 4; ++i) op(a64::d(8 + 2 * i), a64::d(9 + 2 * i), 96 + 16 * i);
}

}  // namespace

const CountingLoopRegisters& countingLoopRegisters() {
  static const CountingLoopRegisters r{"x0",
                                       {"x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10", "x11", "x12", "x13", "x14",
                                        "x15", "x17", "x18", "x19", "x20", "x21", "x22", "x23", "x24", "x25", "x26", "x27",
                                        "x28", "x30"},
                                       kNumVecCounters, "v", "v31"};
  return r;
}

Result<Blob> emitCountingLoop(Runtime& rt, bool withPoll) {
  jit::Assembler a(rt);
  a.sub(a64::sp, a64::sp, kSaveArea);  // sp stays 16-byte aligned (the poll needs it)
  forSavedPairs([&](const a64::Gp& r1, const a64::Gp& r2, int off) { a.stp(r1, r2, a64::ptr(a64::sp, off)); });
  forSavedVecPairs([&](const a64::Vec& r1, const a64::Vec& r2, int off) { a.stp(r1, r2, a64::ptr(a64::sp, off)); });
  a.add(a64::x29, a64::sp, 80);  // x29 -> the saved x29/x30 pair: a frame record
  a.mov(a64::x1, a64::xzr);
  for (uint32_t id : kCounterIds) a.mov(a64::x(id), a64::xzr);
  a.ldr(a64::q30, field(offsetof(CountingLoopFrame, inc)));
  a.ldr(a64::q31, field(offsetof(CountingLoopFrame, marker)));
  for (int i = 0; i < kNumVecCounters; ++i) a.eor(a64::v(i).b16(), a64::v(i).b16(), a64::v(i).b16());
  asmjit::Label top = a.newLabel();
  a.bind(top);
  a.add(a64::x1, a64::x1, 1);
  for (int k = 0; k < kNumCounters; ++k) a.add(a64::x(kCounterIds[k]), a64::x(kCounterIds[k]), loopCounterStep(k));
  for (int i = 0; i < kNumVecCounters; ++i) a.add(a64::v(i).d2(), a64::v(i).d2(), a64::v(30).d2());
  a.str(a64::x1, field(offsetof(CountingLoopFrame, progress)));
  if (withPoll) PATCHCALL_TRY(jit::emitSafepointPoll(a));
  a.ldrb(a64::w16, field(offsetof(CountingLoopFrame, stop)));
  a.cbz(a64::w16, top);
  a.str(a64::x1, field(offsetof(CountingLoopFrame, iterations)));
  a.str(a64::x0, field(offsetof(CountingLoopFrame, argOut)));
  for (int k = 0; k < kNumCounters; ++k) a.str(a64::x(kCounterIds[k]), field(offsetof(CountingLoopFrame, gpr) + 8 * k));
  for (int i = 0; i < kNumVecCounters; ++i) a.str(a64::v(i), field(offsetof(CountingLoopFrame, vec) + 16 * i));
  a.str(a64::q31, field(offsetof(CountingLoopFrame, markerOut)));
  forSavedVecPairs([&](const a64::Vec& r1, const a64::Vec& r2, int off) { a.ldp(r1, r2, a64::ptr(a64::sp, off)); });
  forSavedPairs([&](const a64::Gp& r1, const a64::Gp& r2, int off) { a.ldp(r1, r2, a64::ptr(a64::sp, off)); });
  a.add(a64::sp, a64::sp, kSaveArea);
  a.ret(a64::x30);
  return jit::install(a);
}

// adrp x16, page ; ldrb w16, [x16, #lo12] ; cbnz w16, slow
std::string checkPollInstructions(const std::vector<uint8_t>& b, const void* codeAddress, const volatile void* flag) {
  if (b.size() < 12) return "shorter than three instructions: " + hex(b);
  uint32_t adrp = word(b, 0), ldrb = word(b, 1), cbnz = word(b, 2);
  if ((adrp & 0x9F00001F) != 0x90000010) return "not `adrp x16, page`: " + hex(b);
  if ((ldrb & 0xFFC003FF) != 0x39400210) return "not `ldrb w16, [x16, #imm]`: " + hex(b);
  if ((cbnz & 0xFF00001F) != 0x35000010) return "the load is not followed by `cbnz w16`: " + hex(b);
  int64_t pages = static_cast<int64_t>((adrp >> 5 & 0x7FFFF) << 2 | (adrp >> 29 & 3));
  if (pages & (int64_t{1} << 20)) pages -= int64_t{1} << 21;  // sign-extend the 21-bit page offset
  uintptr_t page = (reinterpret_cast<uintptr_t>(codeAddress) & ~uintptr_t{0xFFF}) + static_cast<uintptr_t>(pages * 4096);
  uintptr_t loaded = page + (ldrb >> 10 & 0xFFF);
  if (loaded != reinterpret_cast<uintptr_t>(flag)) return "the poll loads the wrong byte: " + hex(b);
  return "";
}

}  // namespace patchcall::test
