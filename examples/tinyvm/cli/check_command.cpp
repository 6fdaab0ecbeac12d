// tinyvm CLI — `check`: the JIT in every configuration against the reference interpreter.
#include <cinttypes>
#include <cstdio>

#include "commands.h"
#include "interpreter.h"
#include "jit/backend.h"
#include "loader.h"

namespace tinyvm::cli {
namespace {

struct Config {
  const char* name;
  Tiering tiering;
  uint32_t threshold;
  CallMode calls;
  patchcall::SiteForm form;
  bool polls;
};

const Config kConfigs[] = {
    {"lazy, direct sites", Tiering::kLazy, 0, CallMode::kSites, patchcall::SiteForm::kDirect, true},
    {"threshold=3, direct sites", Tiering::kThreshold, 3, CallMode::kSites, patchcall::SiteForm::kDirect, true},
    {"eager, direct sites", Tiering::kEager, 0, CallMode::kSites, patchcall::SiteForm::kDirect, true},
    {"eager, hard-wired calls", Tiering::kEager, 0, CallMode::kHardwired, patchcall::SiteForm::kDirect, true},
    {"lazy, toggle sites", Tiering::kLazy, 0, CallMode::kSites, patchcall::SiteForm::kToggle, true},
    {"lazy, breakpoint sites", Tiering::kLazy, 0, CallMode::kSites, patchcall::SiteForm::kBreakpoint, true},
    {"lazy, auto sites", Tiering::kLazy, 0, CallMode::kSites, patchcall::SiteForm::kAuto, true},
    {"lazy, direct sites, no polls", Tiering::kLazy, 0, CallMode::kSites, patchcall::SiteForm::kDirect, false},
};

}  // namespace

int checkCommand(const CliOptions& o) {
  LoadOutcome base = loadFile(o.file);
  if (!base.ok) {
    std::fprintf(stderr, "%s\n", base.error.c_str());
    return 2;
  }
  const Program& program = base.loaded.program;
  std::optional<uint32_t> entry = program.find(o.entry);
  if (!entry || program.functions[*entry]->arity != o.args.size()) {
    std::fprintf(stderr, "tinyvm: %s has no function '%s' taking %zu argument(s)\n", o.file.c_str(), o.entry.c_str(),
                 o.args.size());
    return 2;
  }
  int status = 0;
  int64_t reference = Interpreter(program).call(*entry, o.args);
  std::printf("%-32s %" PRId64 "\n", "interpreter", reference);
  if (std::optional<int64_t> expected = expectedResult(base.loaded.module.source)) {
    if (*expected != reference) {
      std::printf("MISMATCH: the interpreter returned %" PRId64 ", the program's '# expect:' says %" PRId64 "\n", reference,
                  *expected);
      status = 1;
    }
  }
  for (const Config& c : kConfigs) {
    if (!jit::siteFormAvailable(c.form)) {  // aarch64: Direct sites only
      std::printf("%-32s skipped: not on this ISA\n", c.name);
      continue;
    }
    VmOptions vmo;
    vmo.tiering = c.tiering;
    vmo.threshold = c.threshold;
    vmo.jit.calls = c.calls;
    vmo.jit.siteForm = c.form;
    vmo.jit.polls = c.polls;
    patchcall::Result<std::unique_ptr<Vm>> vm = Vm::create(program, vmo);
    if (!vm) {
      std::printf("%-32s FAILED to start: %s\n", c.name, vm.status().toString().c_str());
      status = 1;
      continue;
    }
    patchcall::Result<int64_t> result = int64_t{0};
    {
      patchcall::Result<patchcall::ThreadScope> scope = (*vm)->attachThread("tinyvm-check");
      if (!scope) {
        std::printf("%-32s FAILED to attach: %s\n", c.name, scope.status().toString().c_str());
        status = 1;
        continue;
      }
      result = (*vm)->call(*entry, o.args);
    }
    FunctionInfo info = (*vm)->info(*entry);
    VmStats stats = (*vm)->stats();
    std::string problem;
    if (!result) problem = result.status().toString();
    else if (*result != reference) problem = "MISMATCH: interpreter " + std::to_string(reference);
    // Tier-up observed: the entry ran as compiled code and its key targets that code (with
    // a threshold, the entry itself runs once, interpreted; its callees must tier up).
    else if (c.tiering == Tiering::kThreshold ? stats.compiles == 0 || stats.interpretedCalls == 0
                                              : info.tier != 1 || info.target != info.code || stats.compiles == 0)
      problem = "no tier-up observed";
    std::printf("%-32s %" PRId64 "  (%" PRIu64 " compiled, %" PRIu64 " interpreted calls, %" PRIu64 " sites, %" PRIu64
                " fixed calls)%s%s\n",
                c.name, result ? *result : 0, stats.compiles, stats.interpretedCalls, stats.sites, stats.fixedCalls,
                problem.empty() ? "" : "  ", problem.c_str());
    if (!problem.empty()) status = 1;
    if (o.stats) printStats(**vm, (*vm)->runtime());
  }
  std::printf(status == 0 ? "check: all configurations agree with the interpreter\n" : "check: FAILED\n");
  return status;
}

int disCommand(const CliOptions& o) {
  LoadOutcome base = loadFile(o.file);
  if (!base.ok) {
    std::fprintf(stderr, "%s\n", base.error.c_str());
    return 2;
  }
  for (const auto& f : base.loaded.program.functions) std::printf("%s\n", disassemble(*f, base.loaded.program).c_str());
  return 0;
}

void printStats(const Vm& vm, patchcall::Runtime& rt) {
  VmStats v = vm.stats();
  patchcall::RuntimeStats r = rt.stats();
  std::printf("vm: %" PRIu64 " stubs, %" PRIu64 " compiles (%" PRIu64 " bytes), %" PRIu64 " interpreted calls, %" PRIu64
              " reloads, %" PRIu64 " sites, %" PRIu64 " fixed calls, %" PRIu64 " polls, %" PRIu64 " jit failures\n",
              v.stubsInstalled, v.compiles, v.codeBytes, v.interpretedCalls, v.reloads, v.sites, v.fixedCalls, v.polls,
              v.jitFailures);
  std::printf("patchcall: %" PRIu64 " keys, %" PRIu64 " sites, %" PRIu64 " live blobs, %" PRIu64 " updates, %" PRIu64
              " site writes, %" PRIu64 " syncs, %" PRIu64 " grace periods, %" PRIu64 " traps emulated, blobs %" PRIu64
              " retired / %" PRIu64 " freed\n",
              r.keys, r.sites, r.blobs, r.updates, r.siteWrites, r.syncs, r.gracePeriods, r.trapsEmulated, r.blobsRetired,
              r.blobsFreed);
}

}  // namespace tinyvm::cli
