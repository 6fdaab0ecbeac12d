// patchcall-stress — emission of the checking caller loops.
#include "callers.h"

#include <algorithm>
#include <cstddef>

#include "asm_status.h"
#include "isa.h"

#ifdef PATCHCALL_TEST_HOOKS
#include "patchcall/testing.h"
#endif

namespace stress {
namespace {

using patchcall::SiteForm;
using patchcall::Status;

constexpr uint32_t kPollEvery = 8;

struct Emitted {
  std::vector<uint32_t> begin, end, call;  // offsets per site of the group
};

// `toggleStall` is called between each toggle and its call A; `strictStubs` (per key), when
// not empty, instead. The instructions around each site are the ISA's (isa.h).
Status emitGroup(patchcall::jit::Assembler& a, const std::vector<patchcall::Key>& keys, const SitePlan& plan,
                 uint32_t first, uint32_t count, void (*toggleStall)(), const std::vector<void (*)()>& strictStubs,
                 void (*yield)(), Emitted* out) {
  PATCHCALL_TRY(isa::emitGroupEntry(a));
  asmjit::Label loop = a.newLabel(), exit = a.newLabel();
  std::vector<asmjit::Label> fail(count);
  for (asmjit::Label& l : fail) l = a.newLabel();
  PATCHCALL_TRY(asmStatus(a.align(asmjit::AlignMode::kCode, 16)));
  PATCHCALL_TRY(asmStatus(a.bind(loop)));
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t site = first + i;
    auto cells = static_cast<uint32_t>(plan.key[site] * sizeof(KeyCells));
    if (i % kPollEvery == 0) {
      PATCHCALL_TRY(patchcall::jit::emitSafepointPoll(a));
      if (yield != nullptr) PATCHCALL_TRY(isa::emitYieldPoint(a, yield, false));
    }
    PATCHCALL_TRY(isa::emitLoadPre(a, cells));
    out->begin.push_back(static_cast<uint32_t>(a.offset()));
    patchcall::Key key = keys[plan.key[site]];
    SiteForm form = plan.form[site];
#ifdef PATCHCALL_TEST_HOOKS
    void (*stall)() = strictStubs.empty() ? toggleStall : strictStubs[plan.key[site]];
    if (form == SiteForm::kToggle && stall != nullptr) {
      PATCHCALL_TRY(patchcall::testing::emitToggleWithStall(a, key, stall));
    } else
#endif
    {
      (void)toggleStall;
      (void)strictStubs;
      PATCHCALL_TRY(patchcall::jit::emitCall(a, key, form));
    }
    out->call.push_back(a.sites().back().offset);
    out->end.push_back(static_cast<uint32_t>(a.offset()));
    PATCHCALL_TRY(isa::emitCheck(a, cells, fail[i]));
  }
  PATCHCALL_TRY(isa::emitGroupEnd(a, loop, exit));
  // Cold: one stub per site records what it saw and returns the site's index + 1.
  for (uint32_t i = 0; i < count; ++i) PATCHCALL_TRY(isa::emitFailStub(a, fail[i], exit, i));
  return Status::ok();
}

}  // namespace

bool CallerCode::buildStrictStubs(patchcall::Runtime& rt, size_t keys, void (*toggleStall)(), std::string* error) {
#ifdef PATCHCALL_TEST_HOOKS
  // stub_k calls toggleStall (if set) and re-reads key k's `end` into the check's lower bound.
  patchcall::jit::Assembler a(rt);
  std::vector<size_t> offsets;
  Status s;
  for (size_t k = 0; k < keys && s.isOk(); ++k) {
    s = asmStatus(a.align(asmjit::AlignMode::kCode, 16));
    offsets.push_back(a.offset());
    if (s.isOk()) s = isa::emitStrictStub(a, toggleStall, static_cast<uint32_t>(k * sizeof(KeyCells)));
  }
  patchcall::Result<patchcall::Blob> blob = s.isOk() ? patchcall::jit::install(a, "stress_strict_stubs") : patchcall::Result<patchcall::Blob>(s);
  if (!blob) {
    *error = "installing the --strict-toggle stubs: " + blob.status().toString();
    return false;
  }
  for (size_t off : offsets) strictStubs_.push_back(reinterpret_cast<void (*)()>(static_cast<uint8_t*>(blob->code) + off));
  return true;
#else
  (void)rt, (void)keys, (void)toggleStall;
  *error = "--strict-toggle needs a build with -DPATCHCALL_TEST_HOOKS=ON";
  return false;
#endif
}

bool CallerCode::build(patchcall::Runtime& rt, const std::vector<patchcall::Key>& keys, const SitePlan& plan,
                       int groupSize, void (*toggleStall)(), bool strictToggle, void (*yield)(), std::string* error) {
  // The stubs are called by toggle sites only (an ISA without them has none to build).
  bool toggles = std::find(plan.form.begin(), plan.form.end(), SiteForm::kToggle) != plan.form.end();
  if (strictToggle && toggles && !buildStrictStubs(rt, keys.size(), toggleStall, error)) return false;
  auto total = static_cast<uint32_t>(plan.form.size());
  for (uint32_t first = 0; first < total; first += static_cast<uint32_t>(groupSize)) {
    uint32_t count = std::min<uint32_t>(static_cast<uint32_t>(groupSize), total - first);
    patchcall::jit::Assembler a(rt);
    Emitted e;
    if (Status s = emitGroup(a, keys, plan, first, count, toggleStall, strictStubs_, yield, &e); !s.isOk()) {
      *error = "emitting caller group at site " + std::to_string(first) + ": " + s.toString();
      return false;
    }
    patchcall::Result<patchcall::Blob> blob = patchcall::jit::install(a, "stress_callers_" + std::to_string(first));
    if (!blob) {
      *error = "installing caller group at site " + std::to_string(first) + ": " + blob.status().toString();
      return false;
    }
    CallerGroup g;
    g.fn = reinterpret_cast<CallerFn>(blob->code);
    g.blob = *blob;
    g.firstSite = first;
    g.count = count;
    auto base = reinterpret_cast<uintptr_t>(blob->code);
    for (uint32_t i = 0; i < count; ++i) {
      SiteMeta m{base + e.begin[i], base + e.end[i], base + e.call[i], first + i, plan.key[first + i],
                 plan.form[first + i]};
      sites_.push_back(m);
      ++g.perForm[static_cast<int>(m.form)];
    }
    groups_.push_back(g);
  }
  sorted_ = sites_;
  std::sort(sorted_.begin(), sorted_.end(), [](const SiteMeta& x, const SiteMeta& y) { return x.begin < y.begin; });
  return true;
}

const SiteMeta* CallerCode::siteAt(uintptr_t address) const {
  auto it = std::upper_bound(sorted_.begin(), sorted_.end(), address,
                             [](uintptr_t a, const SiteMeta& m) { return a < m.begin; });
  if (it == sorted_.begin()) return nullptr;
  --it;
  return address < it->end ? &*it : nullptr;
}

const SiteMeta* CallerCode::siteReturningTo(uintptr_t returnAddress) const {
  // A call's return address is the byte after it: inside the site, or its end.
  if (const SiteMeta* m = siteAt(returnAddress - 1); m != nullptr) return m;
  return nullptr;
}

bool CallerCode::contains(uintptr_t address) const {
  for (const CallerGroup& g : groups_) {
    auto b = reinterpret_cast<uintptr_t>(g.blob.code);
    if (address >= b && address < b + g.blob.size) return true;
  }
  return false;
}

}  // namespace stress
