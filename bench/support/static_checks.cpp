// patchcall benchmarks — what bm_static.cpp checks before it times anything: that the runtime
// rewrote the AOT loops of static_loops.cpp as they claim (each inline site calls pcbench_add1
// and the patched loop is the GCC direct loop byte for byte), and that the keys' branches are
// what the rows assume. Each check returns an empty string, or what is wrong.
#include "static_checks.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>
#include <tuple>
#include <vector>

namespace pcbench {
namespace {

const void* const kAdd1 = kStaticAdd1;
const void* const kTramp = reinterpret_cast<const void*>(&PATCHCALL_STATIC_CALL_TRAMP(pcbench_sc_add));

std::vector<patchcall_static_site_info> allSites() {
  std::vector<patchcall_static_site_info> v;
  patchcall_static_sites_each(
      [](void* user, const patchcall_static_site_info* s) {
        static_cast<std::vector<patchcall_static_site_info>*>(user)->push_back(*s);
        return 0;
      },
      &v);
  return v;
}

// The destination of the `call rel32` at p.
const void* callDestination(const uint8_t* p) {
  int32_t rel;
  std::memcpy(&rel, p + 1, 4);
  return p + 5 + rel;
}

// The first E8 in the first 32 bytes of fn whose destination is one of `to` (the call loops are
// 32 bytes, the call at +16: see objdump of static_loops.cpp.o); nullptr if none.
const uint8_t* findCall(const void* fn, std::initializer_list<const void*> to) {
  const auto* p = static_cast<const uint8_t*>(fn);
  for (int i = 0; i + 5 <= 32; ++i) {
    if (p[i] != 0xE8) continue;
    for (const void* t : to) {
      if (callDestination(p + i) == t) return p + i;
    }
  }
  return nullptr;
}

// Where the static_loops.cpp function at fn ends, at the latest: the next of that TU's functions
// (or fn + 1024 if none follows it).
const uint8_t* functionEnd(const uint8_t* fn) {
  using Fn = uint64_t (*)(uint64_t);
  const Fn all[] = {&pcbench_static_inline_loop, &pcbench_static_handle_loop, &pcbench_static_ool_loop,   &pcbench_cxx_direct_loop,
                    &pcbench_static_inline_tput, &pcbench_static_ool_tput,   &pcbench_cxx_direct_tput,
                    &pcbench_cxx_ctl_nop5_tput,  &pcbench_cxx_ctl_jmp_tput,  &pcbench_branch_nocheck_loop, &pcbench_branch_disabled_loop,
                    &pcbench_branch_atomic_loop, &pcbench_branch_hook_loop,  &pcbench_wide_nocheck_loop,
                    &pcbench_wide_disabled_loop, &pcbench_wide_atomic_loop};
  const uint8_t* end = fn + 1024;
  for (Fn f : all) {
    const auto* p = reinterpret_cast<const uint8_t*>(f);
    if (p > fn && p < end) end = p;
  }
  const auto* flip = reinterpret_cast<const uint8_t*>(&pcbench_flip_sites);
  return flip > fn && flip < end ? flip : end;
}

std::string hex(const void* p) {
  char b[32];
  std::snprintf(b, sizeof b, "%p", p);
  return b;
}

// The `loop` loop's call at `call` is a registered site of the static call, patched to call
// pcbench_add1, and the loop (at fn) is then the GCC direct loop byte for byte but for the
// rel32 (its call at `dir`).
std::string checkInlineLoop(const std::vector<patchcall_static_site_info>& sites, const char* loop, const void* fn,
                            const uint8_t* call, const uint8_t* dir) {
  const patchcall_static_site_info* site = nullptr;
  for (const patchcall_static_site_info& s : sites) {
    if (s.object == &PATCHCALL_STATIC_CALL_OBJECT_(pcbench_sc_add) && s.address == call) site = &s;
  }
  std::string what = std::string("the ") + loop + " loop";
  if (site == nullptr) return what + "'s call at " + hex(call) + " is not a registered site (the runtime did not find it)";
  if (site->kind != PATCHCALL_STATIC_SITE_CALL || site->destination != kAdd1 || callDestination(call) != kAdd1) {
    return what + "'s site at " + hex(call) + " goes to " + hex(callDestination(call)) + " (site info: kind " +
           std::to_string(site->kind) + ", destination " + hex(site->destination) + "), not pcbench_add1 " + hex(kAdd1);
  }
  const auto *a = static_cast<const uint8_t*>(fn), *b = static_cast<const uint8_t*>(pcbench_cxx_direct_loop_fn);
  if (call - a != dir - b) return what + " and the direct loop put their call at different offsets";
  for (long i = 0; i < 32; ++i) {
    if (i > call - a && i <= call - a + 4) continue;
    if (a[i] != b[i]) return "the patched " + std::string(loop) + " loop differs from the direct loop at byte " + std::to_string(i);
  }
  return "";
}

}  // namespace

// What the runtime did to the static call, checked against the code itself. Empty on success;
// `label` describes the inline site and the trampoline.
std::string checkStaticCall(std::string* label) {
  if (int e = patchcall_static_module_status(kTramp); e != PATCHCALL_OK) {
    return std::string("the bench executable's module is not registered: ") + patchcall_strerror(e) + ": " +
           patchcall_last_error_message();
  }
  const void* target = nullptr;
  if (int e = patchcall_static_call_query(pcbench_sc_add, &target); e != PATCHCALL_OK || target != kAdd1) {
    return "patchcall_static_call_query: " + std::string(patchcall_strerror(e)) + ", target " + hex(target);
  }
  const uint8_t* inl = findCall(pcbench_static_inline_loop_fn, {kAdd1, kTramp});
  const uint8_t* hdl = findCall(pcbench_static_handle_loop_fn, {kAdd1, kTramp});
  const uint8_t* ool = findCall(pcbench_static_ool_loop_fn, {kAdd1, kTramp});
  const uint8_t* dir = findCall(pcbench_cxx_direct_loop_fn, {kAdd1});
  if (inl == nullptr || hdl == nullptr || ool == nullptr || dir == nullptr) {
    return "a call loop's call was not found in its first 32 bytes";
  }
  const patchcall_static_site_info* tramp = nullptr;
  std::vector<patchcall_static_site_info> sites = allSites();
  for (const patchcall_static_site_info& s : sites) {
    if (s.object != &PATCHCALL_STATIC_CALL_OBJECT_(pcbench_sc_add)) continue;
    if (s.address == ool) return "the out-of-line loop's call is a registered site: it would not measure the trampoline";
    if (s.kind == PATCHCALL_STATIC_SITE_TRAMPOLINE) tramp = &s;
  }
  if (callDestination(ool) != kTramp) return "the out-of-line loop does not call the trampoline";
  if (tramp == nullptr || tramp->destination != kAdd1) return "the trampoline does not jump to pcbench_add1";
  // The inline loop and the typed handle's loop (its operator() leaves the same marker).
  for (auto [loop, fn, call] : {std::tuple{"inline", pcbench_static_inline_loop_fn, inl},
                                std::tuple{"handle", pcbench_static_handle_loop_fn, hdl}}) {
    if (std::string e = checkInlineLoop(sites, loop, fn, call, dir); !e.empty()) return e;
  }
  // The throughput loop: kStaticTputSlots sites, all calling pcbench_add1, and once patched the
  // GCC direct throughput loop but for the rel32s; the out-of-line one has no site.
  const auto *ti = reinterpret_cast<const uint8_t*>(&pcbench_static_inline_tput),
             *td = reinterpret_cast<const uint8_t*>(&pcbench_cxx_direct_tput),
             *to = reinterpret_cast<const uint8_t*>(&pcbench_static_ool_tput);
  std::vector<long> offsets;
  for (const patchcall_static_site_info& s : sites) {
    const auto* p = static_cast<const uint8_t*>(s.address);
    if (p >= to && p < functionEnd(to)) return "the out-of-line throughput loop has a registered site";
    if (s.object != &PATCHCALL_STATIC_CALL_OBJECT_(pcbench_sc_add) || p < ti || p >= functionEnd(ti)) continue;
    if (s.kind != PATCHCALL_STATIC_SITE_CALL || s.destination != kAdd1 || callDestination(p) != kAdd1) {
      return "a throughput-loop site at " + hex(p) + " does not call pcbench_add1";
    }
    offsets.push_back(p - ti);
  }
  std::sort(offsets.begin(), offsets.end());
  if (offsets.size() != pcbench::kStaticTputSlots) {
    return "the inline throughput loop has " + std::to_string(offsets.size()) + " registered sites, expected " +
           std::to_string(pcbench::kStaticTputSlots);
  }
  for (long i = 0, k = 0; i < offsets.back() + 5; ++i) {
    if (k < static_cast<long>(offsets.size()) && i > offsets[k] && i <= offsets[k] + 4) {
      if (i == offsets[k] + 4) ++k;
      continue;
    }
    if (ti[i] != td[i]) return "the patched inline throughput loop differs from the direct one at byte " + std::to_string(i);
  }
  for (long off : offsets) {
    if (callDestination(td + off) != kAdd1) return "the direct throughput loop's calls are not where the sites are";
  }
  char buf[256];
  std::snprintf(buf, sizeof buf, "site loop+%#lx call -> pcbench_add1 %p; tramp jmp -> %p; %zu tput sites; %zu sites",
                static_cast<long>(inl - static_cast<const uint8_t*>(pcbench_static_inline_loop_fn)), kAdd1,
                tramp->destination, offsets.size(), sites.size());
  *label = buf;
  return "";
}

FlipBranches flipBranches() {
  FlipBranches f;
  for (const patchcall_static_site_info& s : allSites()) {
    if (s.object != &pcbench_flip_key.key || s.kind != PATCHCALL_STATIC_SITE_BRANCH) continue;
    ++f.count;
    f.jumping += s.destination != nullptr ? 1 : 0;
  }
  return f;
}

patchcall_static_stats staticStats() {
  patchcall_static_stats st{};
  st.struct_size = sizeof st;
  patchcall_static_stats_get(&st);
  return st;
}

void reportFlipStats(benchmark::State& state, const patchcall_static_stats& before, double flips) {
  patchcall_static_stats after = staticStats();
  if (flips <= 0) return;
  state.counters["syncs_per_flip"] = static_cast<double>(after.syncs - before.syncs) / flips;
  state.counters["pwrites_per_flip"] = static_cast<double>(after.writes - before.writes) / flips;
  state.counters["sites_written_per_flip"] = static_cast<double>(after.sites_written - before.sites_written) / flips;
  state.counters["batches_per_flip"] = static_cast<double>(after.batches - before.batches) / flips;
}

std::string keyError(const char* what, int e) {
  return std::string(what) + ": " + patchcall_strerror(e) + ": " + patchcall_last_error_message();
}

std::string checkFlipKey(size_t want) {
  size_t count = 0;
  if (int e = patchcall_static_key_branches(&pcbench_flip_key.key, &count); e != PATCHCALL_OK) {
    return keyError("patchcall_static_key_branches", e);
  }
  FlipBranches before = flipBranches();
  if (count != want || before.count != want || before.jumping != 0) {
    return "the flip key has " + std::to_string(count) + " branches (" + std::to_string(before.count) + " sites, " +
           std::to_string(before.jumping) + " jumping), expected " + std::to_string(want) + " NOP5";
  }
  if (int e = patchcall_static_key_enable(&pcbench_flip_key); e != PATCHCALL_OK) return keyError("enable", e);
  FlipBranches on = flipBranches();
  if (int e = patchcall_static_key_disable(&pcbench_flip_key); e != PATCHCALL_OK) return keyError("disable", e);
  FlipBranches off = flipBranches();
  if (on.jumping != want || off.jumping != 0) {
    return "after enable " + std::to_string(on.jumping) + " branches jump, after disable " + std::to_string(off.jumping);
  }
  return "";
}

std::string checkBranchKey() {
  size_t n = 0, inLoops = 0;
  const uint8_t* const loops[] = {reinterpret_cast<const uint8_t*>(&pcbench_branch_disabled_loop),
                       reinterpret_cast<const uint8_t*>(&pcbench_wide_disabled_loop)};
  for (const patchcall_static_site_info& s : allSites()) {
    if (s.object != &pcbench_branch_key.key) continue;
    ++n;
    const auto* p = static_cast<const uint8_t*>(s.address);
    if (s.destination != nullptr || std::memcmp(p, "\x0f\x1f\x44\x00\x00", 5) != 0) {
      return "the disabled branch at " + hex(p) + " is not a NOP5";
    }
    for (const uint8_t* fn : loops) inLoops += p >= fn && p < functionEnd(fn) ? 1 : 0;
  }
  return n == 2 && inLoops == 2 ? "" : "the branch key has " + std::to_string(n) + " sites (" + std::to_string(inLoops) +
                                           " in the disabled loops), expected 2";
}

}  // namespace pcbench
