// tests/support/poll_loop.h on x86-64: 13 general and 14 xmm counters across the poll.
#include "poll_loop.h"

#include <cstdio>
#include <cstring>

namespace patchcall::test {
namespace {

namespace x86 = asmjit::x86;

// rax counts iterations, rdi points to the frame.
const x86::Gp kCounters[] = {x86::rcx, x86::rdx, x86::rsi, x86::r8,  x86::r9,  x86::r10, x86::r11,
                             x86::rbx, x86::rbp, x86::r12, x86::r13, x86::r14, x86::r15};
constexpr int kNumCounters = sizeof(kCounters) / sizeof(kCounters[0]);
constexpr int kNumXmmCounters = 14;  // xmm0..xmm13 accumulate xmm14; xmm15 holds the marker
static_assert(kNumCounters <= kMaxLoopCounters && kNumXmmCounters <= kMaxLoopVectors);

x86::Mem field(size_t offset) { return x86::qword_ptr(x86::rdi, static_cast<int32_t>(offset)); }
x86::Mem xfield(size_t offset) { return x86::xmmword_ptr(x86::rdi, static_cast<int32_t>(offset)); }

std::string hex(const std::vector<uint8_t>& b) {
  std::string s;
  char t[4];
  for (size_t i = 0; i < b.size() && i < 16; ++i) std::snprintf(t, sizeof t, "%02x ", b[i]), s += t;
  return s;
}

}  // namespace

const CountingLoopRegisters& countingLoopRegisters() {
  static const CountingLoopRegisters r{
      "rdi", {"rcx", "rdx", "rsi", "r8", "r9", "r10", "r11", "rbx", "rbp", "r12", "r13", "r14", "r15"},
      kNumXmmCounters, "xmm", "xmm15"};
  return r;
}

Result<Blob> emitCountingLoop(Runtime& rt, bool withPoll) {
  jit::Assembler a(rt);
  for (x86::Gp r : {x86::rbx, x86::rbp, x86::r12, x86::r13, x86::r14, x86::r15}) a.push(r);
  a.xor_(x86::eax, x86::eax);
  for (const x86::Gp& r : kCounters) a.xor_(r.r32(), r.r32());
  a.movdqu(x86::xmm14, xfield(offsetof(CountingLoopFrame, inc)));
  a.movdqu(x86::xmm15, xfield(offsetof(CountingLoopFrame, marker)));
  for (int i = 0; i < kNumXmmCounters; ++i) a.pxor(x86::xmm(i), x86::xmm(i));
  asmjit::Label top = a.newLabel();
  a.bind(top);
  a.add(x86::rax, 1);
  for (int k = 0; k < kNumCounters; ++k) a.add(kCounters[k], static_cast<int32_t>(loopCounterStep(k)));
  for (int i = 0; i < kNumXmmCounters; ++i) a.paddq(x86::xmm(i), x86::xmm14);
  a.mov(field(offsetof(CountingLoopFrame, progress)), x86::rax);
  if (withPoll) PATCHCALL_TRY(jit::emitSafepointPoll(a));
  a.cmp(x86::byte_ptr(x86::rdi, static_cast<int32_t>(offsetof(CountingLoopFrame, stop))), 0);
  a.je(top);
  a.mov(field(offsetof(CountingLoopFrame, iterations)), x86::rax);
  a.mov(field(offsetof(CountingLoopFrame, argOut)), x86::rdi);
  for (int k = 0; k < kNumCounters; ++k) a.mov(field(offsetof(CountingLoopFrame, gpr) + 8 * k), kCounters[k]);
  for (int i = 0; i < kNumXmmCounters; ++i) a.movdqu(xfield(offsetof(CountingLoopFrame, vec) + 16 * i), x86::xmm(i));
  a.movdqu(xfield(offsetof(CountingLoopFrame, markerOut)), x86::xmm15);
  for (x86::Gp r : {x86::r15, x86::r14, x86::r13, x86::r12, x86::rbp, x86::rbx}) a.pop(r);
  a.ret();
  return jit::install(a);
}

// `cmp byte [rip+disp32], 0` (80 3D disp32 00) then jne (75 rel8 or 0F 85 rel32).
std::string checkPollInstructions(const std::vector<uint8_t>& b, const void* codeAddress, const volatile void* flag) {
  if (b.size() < 9) return "shorter than a compare and a branch: " + hex(b);
  if (b[0] != 0x80) return "not `cmp byte [mem], imm8`: " + hex(b);
  if (b[1] != 0x3D) return "not rip-relative: " + hex(b);
  if (b[6] != 0x00) return "compares against a non-zero immediate: " + hex(b);
  int32_t disp;
  std::memcpy(&disp, &b[2], 4);
  const auto* compared = static_cast<const uint8_t*>(codeAddress) + 7 + disp;
  if (static_cast<const volatile void*>(compared) != flag) return "the poll compares the wrong byte: " + hex(b);
  if (!(b[7] == 0x75 || (b[7] == 0x0F && b[8] == 0x85))) return "the compare is not followed by jne: " + hex(b);
  return "";
}

}  // namespace patchcall::test
