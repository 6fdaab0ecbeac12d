// What a JIT safepoint poll preserves. JIT code loads distinct values into every general
// register, every ymm (zmm0-31 and k0-7 where the CPU has AVX-512F) and the 128-byte red zone
// below rsp, then hits a poll whose slow path really runs (a grace period holds the flag
// armed) and whose C++ side dirties every vector and opmask register (a test hook that runs
// AVX code inside the slow path). The code then stores everything back; each value must be
// intact, and a failure names the register and the first byte that differs.
#include <cpuid.h>
#include <gtest/gtest.h>
#include <immintrin.h>

#include <asmjit/x86.h>

#include <atomic>
#include <cinttypes>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "patchcall/testing.h"
#include "quiescence_util.h"

using namespace patchcall;
using namespace patchcall::qtest;
namespace x86 = asmjit::x86;
namespace pt = patchcall::testing;

namespace {

constexpr int32_t kRedZone = 128;
constexpr uint64_t kDirectionFlag = uint64_t{1} << 10;

enum class Vectors { kNone, kYmm, kZmm };

// Everything the probe loads before the poll (…In) and stores after it (…Out). The code
// addresses it absolutely, so no register has to survive to find it.
struct alignas(64) Frame {
  uint8_t vecIn[32][64];
  uint8_t vecOut[32][64];
  uint64_t kIn[8], kOut[8];
  uint64_t gprIn[16], gprOut[16];  // by register id; [4] (rsp) unused: see rspBefore/After
  uint64_t redIn[16], redOut[16];  // [rsp-128, rsp) at the poll
  uint64_t rspBefore, rspAfter;
  uint64_t rflagsOut;
};

const char* const kGprNames[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                   "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

uint64_t mix(uint64_t x) {  // splitmix64: distinct, non-trivial bit patterns
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

void fill(Frame& f) {
  std::memset(&f, 0, sizeof f);
  for (int i = 0; i < 32; ++i) {
    for (int q = 0; q < 8; ++q) {
      uint64_t v = mix(0x1000 + 8 * i + q);
      std::memcpy(&f.vecIn[i][8 * q], &v, 8);
    }
  }
  for (int i = 0; i < 8; ++i) f.kIn[i] = mix(0x2000 + i);
  for (int i = 0; i < 16; ++i) f.gprIn[i] = mix(0x3000 + i);
  for (int i = 0; i < 16; ++i) f.redIn[i] = mix(0x4000 + i);
}

// Empty when equal; else the first differing byte and both values (byte 0 printed first).
std::string diff(const void* want, const void* got, size_t n) {
  const auto* w = static_cast<const uint8_t*>(want);
  const auto* g = static_cast<const uint8_t*>(got);
  size_t i = 0;
  while (i < n && w[i] == g[i]) ++i;
  if (i == n) return {};
  auto hex = [n](const uint8_t* b) {
    std::string s;
    char buf[4];
    for (size_t k = 0; k < n; ++k) std::snprintf(buf, sizeof buf, "%02x", b[k]), s += buf;
    return s;
  };
  char head[96];
  std::snprintf(head, sizeof head, "byte %zu of %zu differs (want 0x%02x, got 0x%02x)", i, n, w[i], g[i]);
  return std::string(head) + "\n    want " + hex(w) + "\n    got  " + hex(g);
}

x86::Mem at(size_t offset, uint32_t size) {
  return x86::ptr(x86::rax, static_cast<int32_t>(offset), size);
}

// void probe(): see the file comment. `setDirection` executes std before the poll.
Result<Blob> emitProbe(Runtime& rt, Frame* f, Vectors vectors, bool setDirection) {
  jit::Assembler a(rt);
  const auto frame = reinterpret_cast<uint64_t>(f);
  for (x86::Gp r : {x86::rbx, x86::rbp, x86::r12, x86::r13, x86::r14, x86::r15}) a.push(r);
  a.mov(x86::rax, frame);
  a.mov(at(offsetof(Frame, rspBefore), 8), x86::rsp);
  for (int j = 0; j < 16; ++j) {
    a.mov(x86::rcx, at(offsetof(Frame, redIn) + 8 * j, 8));
    a.mov(x86::qword_ptr(x86::rsp, -kRedZone + 8 * j), x86::rcx);
  }
  if (vectors == Vectors::kZmm) {
    for (uint32_t i = 0; i < 32; ++i) a.vmovdqu64(x86::zmm(i), at(offsetof(Frame, vecIn) + 64 * i, 64));
    for (uint32_t i = 0; i < 8; ++i) a.kmovq(x86::k(i), at(offsetof(Frame, kIn) + 8 * i, 8));
  } else if (vectors == Vectors::kYmm) {
    for (uint32_t i = 0; i < 16; ++i) a.vmovdqu(x86::ymm(i), at(offsetof(Frame, vecIn) + 64 * i, 32));
  }
  if (setDirection) a.std();
  for (uint32_t id = 1; id < 16; ++id) {
    if (id != x86::Gp::kIdSp) a.mov(x86::gpq(id), at(offsetof(Frame, gprIn) + 8 * id, 8));
  }
  a.mov(x86::rax, at(offsetof(Frame, gprIn), 8));

  PATCHCALL_TRY(jit::emitSafepointPoll(a));

  // Step below the red zone (lea keeps the flags), then push flags and every register.
  a.lea(x86::rsp, x86::ptr(x86::rsp, -kRedZone));
  a.pushfq();
  for (uint32_t id = 0; id < 16; ++id) {
    if (id != x86::Gp::kIdSp) a.push(x86::gpq(id));
  }
  a.cld();
  // rsp = S - 256 if rsp survived: flags at [rsp+120], register id k (pushed p-th) at
  // [rsp+112-8p], the red zone at [rsp+128, rsp+256).
  a.mov(x86::rax, frame);
  a.lea(x86::rcx, x86::ptr(x86::rsp, 256));
  a.mov(at(offsetof(Frame, rspAfter), 8), x86::rcx);
  a.mov(x86::rcx, x86::qword_ptr(x86::rsp, 120));
  a.mov(at(offsetof(Frame, rflagsOut), 8), x86::rcx);
  for (uint32_t id = 0, p = 0; id < 16; ++id) {
    if (id == x86::Gp::kIdSp) continue;
    a.mov(x86::rcx, x86::qword_ptr(x86::rsp, static_cast<int32_t>(112 - 8 * p++)));
    a.mov(at(offsetof(Frame, gprOut) + 8 * id, 8), x86::rcx);
  }
  for (int j = 0; j < 16; ++j) {
    a.mov(x86::rcx, x86::qword_ptr(x86::rsp, 128 + 8 * j));
    a.mov(at(offsetof(Frame, redOut) + 8 * j, 8), x86::rcx);
  }
  if (vectors == Vectors::kZmm) {
    for (uint32_t i = 0; i < 32; ++i) a.vmovdqu64(at(offsetof(Frame, vecOut) + 64 * i, 64), x86::zmm(i));
    for (uint32_t i = 0; i < 8; ++i) a.kmovq(at(offsetof(Frame, kOut) + 8 * i, 8), x86::k(i));
  } else if (vectors == Vectors::kYmm) {
    for (uint32_t i = 0; i < 16; ++i) a.vmovdqu(at(offsetof(Frame, vecOut) + 64 * i, 32), x86::ymm(i));
  }
  a.lea(x86::rsp, x86::ptr(x86::rsp, 256));
  if (vectors != Vectors::kNone) a.vzeroupper();
  for (x86::Gp r : {x86::r15, x86::r14, x86::r13, x86::r12, x86::rbp, x86::rbx}) a.pop(r);
  a.ret();
  return jit::install(a);
}

// ---- the C++ side of the slow path: AVX code that leaves every vector register dirty ----

std::atomic<int> gHookCalls{0};
std::atomic<pid_t> gHookTid{0};
std::atomic<bool> gHookSawDirectionFlag{false};
alignas(64) uint8_t gScratch[4096];
volatile uint64_t gSink;

// A checksum over a buffer with 512-bit loads, masked compares and a masked reduction (as
// an AVX-512 memcpy, memset or hash would run), then every zmm and k register set to all
// ones so nothing the caller had there can survive by chance.
__attribute__((target("avx512f,avx512bw"), noinline)) void dirtyAvx512() {
  __m512i acc = _mm512_set1_epi64(0x0123456789abcdefll);
  for (size_t i = 0; i < sizeof gScratch; i += 64) {
    __m512i v = _mm512_load_si512(reinterpret_cast<const void*>(gScratch + i));
    __mmask64 m = _mm512_cmpneq_epi8_mask(v, acc);
    acc = _mm512_mask_add_epi8(_mm512_xor_si512(acc, v), m, acc, v);
  }
  alignas(64) uint64_t lanes[8];
  _mm512_store_si512(lanes, acc);
  gSink = lanes[0] + lanes[7];
#define Z4(a, b, c, d) "vpternlogd $0xff, %%zmm" #a ", %%zmm" #a ", %%zmm" #a "\n\t" \
                       "vpternlogd $0xff, %%zmm" #b ", %%zmm" #b ", %%zmm" #b "\n\t" \
                       "vpternlogd $0xff, %%zmm" #c ", %%zmm" #c ", %%zmm" #c "\n\t" \
                       "vpternlogd $0xff, %%zmm" #d ", %%zmm" #d ", %%zmm" #d "\n\t"
  __asm__ volatile(Z4(0, 1, 2, 3) Z4(4, 5, 6, 7) Z4(8, 9, 10, 11) Z4(12, 13, 14, 15)
                   Z4(16, 17, 18, 19) Z4(20, 21, 22, 23) Z4(24, 25, 26, 27) Z4(28, 29, 30, 31)
                   "kxnorq %%k0, %%k0, %%k0\n\tkxnorq %%k1, %%k1, %%k1\n\t"
                   "kxnorq %%k2, %%k2, %%k2\n\tkxnorq %%k3, %%k3, %%k3\n\t"
                   "kxnorq %%k4, %%k4, %%k4\n\tkxnorq %%k5, %%k5, %%k5\n\t"
                   "kxnorq %%k6, %%k6, %%k6\n\tkxnorq %%k7, %%k7, %%k7"
                   :
                   :
                   : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
                     "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19", "xmm20",
                     "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29", "xmm30",
                     "xmm31", "k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7");
#undef Z4
}

// The same with 256-bit AVX2, for a CPU without AVX-512.
__attribute__((target("avx2"), noinline)) void dirtyAvx2() {
  __m256i acc = _mm256_set1_epi64x(0x0123456789abcdefll);
  for (size_t i = 0; i < sizeof gScratch; i += 32) {
    __m256i v = _mm256_load_si256(reinterpret_cast<const __m256i*>(gScratch + i));
    acc = _mm256_add_epi64(_mm256_xor_si256(acc, v), _mm256_cmpeq_epi8(acc, v));
  }
  gSink = static_cast<uint64_t>(_mm256_extract_epi64(acc, 0) + _mm256_extract_epi64(acc, 3));
#define Y4(a, b, c, d) "vpcmpeqd %%ymm" #a ", %%ymm" #a ", %%ymm" #a "\n\t" \
                       "vpcmpeqd %%ymm" #b ", %%ymm" #b ", %%ymm" #b "\n\t" \
                       "vpcmpeqd %%ymm" #c ", %%ymm" #c ", %%ymm" #c "\n\t" \
                       "vpcmpeqd %%ymm" #d ", %%ymm" #d ", %%ymm" #d "\n\t"
  __asm__ volatile(Y4(0, 1, 2, 3) Y4(4, 5, 6, 7) Y4(8, 9, 10, 11) Y4(12, 13, 14, 15)
                   :
                   :
                   : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
                     "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
#undef Y4
}

void dirtyingHook() {
  uint64_t flags;
  __asm__ volatile("pushfq\n\tpopq %0" : "=r"(flags));
  if ((flags & kDirectionFlag) != 0) gHookSawDirectionFlag.store(true);
  gHookTid.store(currentTid());
  gHookCalls.fetch_add(1);
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) {
    dirtyAvx512();
  } else if (__builtin_cpu_supports("avx2")) {
    dirtyAvx2();
  }
}

class HookScope {
 public:
  HookScope() {
    gHookCalls = 0, gHookTid = 0, gHookSawDirectionFlag = false;
    pt::setSafepointSlowHook(&dirtyingHook);
  }
  ~HookScope() { pt::setSafepointSlowHook(nullptr); }
};

// Builds the probe, holds a grace period open (the registered probe thread has not passed a
// safepoint, so the flag stays armed), runs the probe once on that thread and lets the grace
// period finish through the probe's poll. Fails the test when the slow path did not run.
void runProbe(Frame& frame, Vectors vectors, bool setDirection, pt::SafepointSave save = pt::SafepointSave::kAuto) {
  DiagnosticLog log;
  Options o;
  o.backgroundReclaimer = false;
  o.diagnosticSink = log.sink();
  pt::setSafepointSave(save);
  auto rt = Runtime::create(o);
  pt::setSafepointSave(pt::SafepointSave::kAuto);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  pt::SafepointSave method = pt::safepointSaveMethod(*rt);
  if (save != pt::SafepointSave::kAuto && method != save) {
    GTEST_SKIP() << "this CPU cannot use the requested save instruction (" << save << "); the runtime picked "
                 << method;
  }
  std::printf("[ info ] safepoint stub saves with %s into a %u-byte area\n", pt::toString(method),
              pt::safepointSaveAreaSize(*rt));
  fill(frame);
  Result<Blob> probe = emitProbe(*rt, &frame, vectors, setDirection);
  ASSERT_TRUE(probe.isOk()) << probe.status().toString();

  HookScope hook;
  TestThread jit;
  ASSERT_TRUE(jit.registerWith(*rt, "state-probe").isOk());
  Status synced;
  std::thread syncer([&] { synced = rt->synchronize(10000ms); });
  bool armed = waitUntil([&] { return *rt->safepointFlag() != 0; });
  bool ran = armed && jit.run([&] { reinterpret_cast<void (*)()>(probe->code)(); });
  syncer.join();
  ASSERT_TRUE(armed) << "the grace period never armed the poll flag";
  ASSERT_TRUE(ran) << "the probe did not return";
  ASSERT_TRUE(synced.isOk()) << "the grace period did not end through the probe's poll: " << synced.toString()
                             << "\n" << log.all();
  ASSERT_GE(gHookCalls.load(), 1) << "the poll's slow path did not run the hook";
  ASSERT_EQ(gHookTid.load(), jit.tid()) << "the hook ran on another thread than the probe's";
  EXPECT_EQ(frame.rspAfter, frame.rspBefore) << "rsp moved across the poll";
}

void expectGprsIntact(const Frame& f) {
  for (int id = 0; id < 16; ++id) {
    if (id == x86::Gp::kIdSp) continue;
    std::string d = diff(&f.gprIn[id], &f.gprOut[id], 8);
    EXPECT_TRUE(d.empty()) << kGprNames[id] << " changed across the slow path: " << d;
  }
}

void expectVectorsIntact(const Frame& f, int count, size_t bytes, const char* name) {
  for (int i = 0; i < count; ++i) {
    std::string d = diff(f.vecIn[i], f.vecOut[i], bytes);
    EXPECT_TRUE(d.empty()) << name << i << " changed across the slow path: " << d;
  }
}

bool hasAvx() { return __builtin_cpu_supports("avx"); }
bool hasAvx512() { return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"); }

class SafepointStateBySave : public ::testing::TestWithParam<pt::SafepointSave> {};

std::string saveName(const ::testing::TestParamInfo<pt::SafepointSave>& p) {
  return pt::toString(p.param);
}

TEST_P(SafepointStateBySave, GeneralAndYmmRegistersSurviveAnAvxHeavySlowPath) {
  if (!hasAvx()) GTEST_SKIP() << "the CPU has no AVX: no ymm registers to check";
  Frame frame;
  runProbe(frame, Vectors::kYmm, false, GetParam());
  if (::testing::Test::HasFatalFailure() || ::testing::Test::IsSkipped()) return;
  expectGprsIntact(frame);
  expectVectorsIntact(frame, 16, 32, "ymm");
}

TEST_P(SafepointStateBySave, ZmmAndOpmaskRegistersSurviveAnAvx512HeavySlowPath) {
  if (!hasAvx512()) GTEST_SKIP() << "the CPU has no AVX-512F/BW: no zmm16-31 or 64-bit opmask registers to check";
  Frame frame;
  runProbe(frame, Vectors::kZmm, false, GetParam());
  if (::testing::Test::HasFatalFailure() || ::testing::Test::IsSkipped()) return;
  expectGprsIntact(frame);
  expectVectorsIntact(frame, 32, 64, "zmm");
  for (int i = 0; i < 8; ++i) {
    std::string d = diff(&frame.kIn[i], &frame.kOut[i], 8);
    EXPECT_TRUE(d.empty()) << "k" << i << " changed across the slow path: " << d;
  }
}

INSTANTIATE_TEST_SUITE_P(SafepointState, SafepointStateBySave,
                         ::testing::Values(pt::SafepointSave::kAuto, pt::SafepointSave::kXsavec,
                                           pt::SafepointSave::kXsave),
                         saveName);

// The fallback for CPUs without XSAVE, forced here: the legacy state (xmm0-15) and the
// general registers survive (the ymm upper halves a CPU without XSAVE does not have are not
// checked: this CPU's hook clobbers them).
TEST(SafepointState, FxsaveFallbackKeepsXmmAndGeneralRegisters) {
  if (!hasAvx()) GTEST_SKIP() << "the CPU has no AVX: the probe loads xmm through ymm loads";
  Frame frame;
  runProbe(frame, Vectors::kYmm, false, pt::SafepointSave::kFxsave);
  if (HasFatalFailure() || IsSkipped()) return;
  expectGprsIntact(frame);
  expectVectorsIntact(frame, 16, 16, "xmm");
}

// [rsp-128, rsp) is the SysV red zone: leaf JIT code may keep data there across a poll.
TEST(SafepointState, RedZoneBelowRspSurvivesTheSlowPath) {
  Frame frame;
  runProbe(frame, Vectors::kNone, false);
  if (HasFatalFailure()) return;
  for (int j = 0; j < 16; ++j) {
    std::string d = diff(&frame.redIn[j], &frame.redOut[j], 8);
    EXPECT_TRUE(d.empty()) << "red-zone qword at rsp-" << (kRedZone - 8 * j) << " changed across the slow path: " << d;
  }
  expectGprsIntact(frame);
}

// A thread that already acknowledged keeps taking the slow path until every thread has (the
// flag stays armed); the stub then skips the extended-state save (nothing to do in C++). That
// branch must restore just as much. A second registered thread holds the grace period open.
TEST(SafepointState, AcknowledgedThreadsSkipPathKeepsEverything) {
  Vectors vectors = hasAvx512() ? Vectors::kZmm : hasAvx() ? Vectors::kYmm : Vectors::kNone;
  DiagnosticLog log;
  Options o;
  o.backgroundReclaimer = false;
  o.diagnosticSink = log.sink();
  auto rt = Runtime::create(o);
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Frame first, again;
  fill(first);
  fill(again);
  Result<Blob> probe1 = emitProbe(*rt, &first, vectors, false);
  Result<Blob> probe2 = emitProbe(*rt, &again, vectors, false);
  ASSERT_TRUE(probe1.isOk() && probe2.isOk());
  TestThread holder;  // registered, never polls: the grace period cannot end without it
  TestThread jit;
  ASSERT_TRUE(holder.registerWith(*rt, "holder").isOk());
  ASSERT_TRUE(jit.registerWith(*rt, "state-probe").isOk());
  Status synced;
  std::thread syncer([&] { synced = rt->synchronize(10000ms); });
  bool armed = waitUntil([&] { return *rt->safepointFlag() != 0; });
  bool ran1 = armed && jit.run([&] { reinterpret_cast<void (*)()>(probe1->code)(); });  // acknowledges
  bool stillArmed = *rt->safepointFlag() != 0;
  bool ran2 = ran1 && jit.run([&] { reinterpret_cast<void (*)()>(probe2->code)(); });   // skip path
  bool stillArmedAfter = *rt->safepointFlag() != 0;
  bool released = holder.unregister();
  syncer.join();
  ASSERT_TRUE(armed && ran1 && ran2 && released);
  ASSERT_TRUE(synced.isOk()) << synced.toString() << "\n" << log.all();
  ASSERT_TRUE(stillArmed && stillArmedAfter) << "the flag was disarmed before the second probe finished";
  for (const Frame* f : {&first, &again}) {
    const char* which = f == &first ? "first (acknowledging) probe: " : "second (skip-path) probe: ";
    SCOPED_TRACE(which);
    EXPECT_EQ(f->rspAfter, f->rspBefore) << "rsp moved";
    expectGprsIntact(*f);
    if (vectors == Vectors::kZmm) expectVectorsIntact(*f, 32, 64, "zmm");
    if (vectors == Vectors::kYmm) expectVectorsIntact(*f, 16, 32, "ymm");
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(f->redIn[j], f->redOut[j]) << "red-zone qword at rsp-" << (kRedZone - 8 * j);
    }
  }
}

// The C++ slow path must run with DF clear (SysV), and JIT code gets its DF back.
TEST(SafepointState, DirectionFlagIsClearInsideTheSlowPathAndRestoredAfterIt) {
  Frame frame;
  runProbe(frame, Vectors::kNone, true);
  if (HasFatalFailure()) return;
  EXPECT_FALSE(gHookSawDirectionFlag.load()) << "the slow path's C++ code ran with DF set (std before the poll)";
  EXPECT_NE(frame.rflagsOut & kDirectionFlag, 0u) << "DF was lost across the slow path: rflags 0x" << std::hex
                                                   << frame.rflagsOut;
  expectGprsIntact(frame);
}

uint64_t readXcr0() {
  uint32_t lo, hi;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

// The stub uses the best save instruction the CPU has, into an area as large as CPUID says
// XCR0's components need.
TEST(SafepointState, SaveMethodAndAreaComeFromCpuid) {
  auto rt = Runtime::create();
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  pt::SafepointSave method = pt::safepointSaveMethod(*rt);
  uint32_t area = pt::safepointSaveAreaSize(*rt);
  unsigned eax, ebx, ecx, edx;
  ASSERT_TRUE(__get_cpuid(1, &eax, &ebx, &ecx, &edx));
  if ((ecx & bit_OSXSAVE) == 0) {
    EXPECT_EQ(method, pt::SafepointSave::kFxsave) << "no OSXSAVE: only fxsave can run";
    EXPECT_EQ(area, 512u);
    return;
  }
  uint64_t xcr0 = readXcr0();
  ASSERT_TRUE(__get_cpuid_count(0xD, 0, &eax, &ebx, &ecx, &edx));
  uint32_t standard = ebx;
  ASSERT_TRUE(__get_cpuid_count(0xD, 1, &eax, &ebx, &ecx, &edx));
  bool hasXsavec = (eax & 2) != 0;
  std::printf("[ info ] stub saves with %s into %u bytes; XCR0 0x%" PRIx64 ", CPUID.(0DH,0).EBX %u, XSAVEC %s\n",
              pt::toString(method), area, xcr0, standard, hasXsavec ? "yes" : "no");
  EXPECT_EQ(method, hasXsavec ? pt::SafepointSave::kXsavec : pt::SafepointSave::kXsave);
  EXPECT_EQ(area, (standard + 63) / 64 * 64) << "not CPUID.(EAX=0DH,ECX=0):EBX rounded up to 64";
  if (hasAvx512()) {
    EXPECT_EQ(xcr0 & 0xe7, 0xe7u) << "AVX-512 CPU, but XCR0 lacks x87/SSE/AVX/opmask/zmm state";
  }
  for (unsigned i = 2; i < 63; ++i) {  // every enabled component fits (standard-format offsets)
    if ((xcr0 >> i & 1) == 0) continue;
    ASSERT_TRUE(__get_cpuid_count(0xD, i, &eax, &ebx, &ecx, &edx));
    EXPECT_LE(ebx + eax, area) << "state component " << i << " (offset " << ebx << ", size " << eax
                               << ") does not fit the area";
  }
}

}  // namespace
