// patchcall-stress — the retarget/stress driver: caller threads run JIT code through
// patchable sites while updaters retarget them; every call is checked (versions.h), every
// unowned trap or fault is a violation (checker.h). Exit 0 iff the run saw no violation.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "caller_threads.h"
#include "callers.h"
#include "checker.h"
#include "faults.h"
#include "fibers.h"
#include "options.h"
#include "forks.h"
#include "plan.h"
#include "world.h"
#include "report.h"
#include "targets.h"
#include "updater.h"

namespace stress {
namespace {

constexpr int kExitViolation = 1, kExitBadOption = 2, kExitRuntimeError = 3;

int fail(const std::string& msg) {
  std::fprintf(stderr, "patchcall-stress: %s\n", msg.c_str());
  return kExitRuntimeError;
}

int run(const Options& o) {
  std::string err;
  if (!applyFaults(o, &err)) {
    std::fprintf(stderr, "patchcall-stress: %s\n", err.c_str());
    return kExitBadOption;
  }
  bool progress = o.progress || isatty(STDERR_FILENO) != 0;
  // Ours first: patchcall's SIGTRAP handler chains every trap it does not own to it.
  Checker& checker = Checker::instance();
  checker.installSignalHandlers();

  patchcall::Options ro;
  ro.perfMap = o.perfMap;
  ro.jitDump = o.jitDump;
  ro.diagnosticSink = [progress](const std::string& m) {
    std::fprintf(stderr, "%s%s\n", progress ? "\n" : "", m.c_str());
  };
  patchcall::Result<patchcall::Runtime> created = patchcall::Runtime::create(ro);
  if (!created) return fail("Runtime::create: " + created.status().toString());
  patchcall::Runtime& rt = *created;

  World world;
  if (!world.build(rt, o, "stress.", &err)) return fail(err);
  const Plan& plan = world.plan;
  patchcall::ArenaInfo arena = rt.arenaInfo();
  checker.attach(&world.code, world.cells.get(), arena.rxBase, arena.size);

  CallerThreads callers(rt, world.code, world.cells.get(), o.threads, o.seed, o.fibers);
  if (!callers.start(&err)) return fail(err);
  Updaters updaters(rt, world.keys, world.cells.get(), *world.targets);
  std::vector<patchcall::SiteForm> forms = o.forms();
  ForkDriver forks(rt, world, o);

  using Clock = std::chrono::steady_clock;
  auto start = Clock::now(), deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  updaters.start(world.updaterConfigs(o));
  forks.start();
  auto lastTime = start;
  uint64_t lastCalls = 0, lastUpdates = 0;
  while (Clock::now() < deadline && !updaters.failed()) {
    std::this_thread::sleep_for(std::min<Clock::duration>(deadline - Clock::now(), std::chrono::milliseconds(250)));
    if (!progress) continue;
    auto now = Clock::now();
    double dt = std::chrono::duration<double>(now - lastTime).count();
    uint64_t c = callers.calls(), u = updaters.updates();
    if (dt > 0) {
      printProgress(std::chrono::duration<double>(now - start).count(), static_cast<double>(c - lastCalls) / dt,
                    static_cast<double>(u - lastUpdates) / dt, rt.stats(), checker.total());
    }
    lastTime = now, lastCalls = c, lastUpdates = u;
  }
  forks.stop();     // waits for every child
  updaters.stop();  // first: an update may be waiting for the callers' safepoints
  callers.stop();
  auto end = Clock::now();
  if (progress) std::fputc('\n', stderr);

  RunReport r;
  r.options = o;
  r.seconds = std::chrono::duration<double>(end - start).count();
  r.runtime = rt.stats();
  r.arena = rt.arenaInfo();
  std::vector<uint32_t> allLatencies;
  double updaterSeconds = 0;
  for (size_t f = 0; f < forms.size(); ++f) {
    FormReport fr;
    fr.form = forms[f];
    fr.keys = static_cast<uint32_t>(plan.keysOfForm[f].size());
    fr.sites = static_cast<uint32_t>(std::count(plan.sites.form.begin(), plan.sites.form.end(), forms[f]));
    std::vector<uint32_t> formLatencies;
    for (int n = 0; n < o.updaters; ++n) {  // this form's updaters (World::updaterConfigs)
      UpdaterStats& u = updaters.stats()[f * static_cast<size_t>(o.updaters) + static_cast<size_t>(n)];
      fr.updates += u.updates.load();
      fr.batches += u.batches.load();
      fr.deferred += u.deferred.load();
      fr.publishes += u.publishes.load();
      fr.blobsRetired += u.blobsRetired.load();
      updaterSeconds += u.seconds;
      formLatencies.insert(formLatencies.end(), u.latencyNs.begin(), u.latencyNs.end());
      if (!u.error.empty() && r.error.empty()) r.error = std::string(formName(forms[f])) + " updater: " + u.error;
    }
    allLatencies.insert(allLatencies.end(), formLatencies.begin(), formLatencies.end());
    fr.latency = Latency::of(std::move(formLatencies));
    if (forms[f] == patchcall::SiteForm::kBreakpoint) fr.emulatedTraps = r.runtime.trapsEmulated;
    if (forms[f] == patchcall::SiteForm::kToggle) fr.toggleGraceWaits = r.runtime.toggleGraceWaits;
    for (const CallerStats& c : callers.stats()) fr.calls += c.callsByForm[static_cast<int>(forms[f])];
    fr.violations = checker.byForm(static_cast<int>(forms[f]));
    r.updates += fr.updates;
    r.deferred += fr.deferred;
    r.blobsRetired += fr.blobsRetired;
    r.forms.push_back(fr);
  }
  r.updatesPerSecondPerUpdater = updaterSeconds > 0 ? static_cast<double>(r.updates) / updaterSeconds : 0;
  r.syncsPerUpdate = r.updates > 0 ? static_cast<double>(r.runtime.syncs) / static_cast<double>(r.updates) : 0;
  r.latency = Latency::of(std::move(allLatencies));
  for (const CallerStats& c : callers.stats()) {
    ThreadReport t;
    t.calls = c.calls.load();
    t.callsPerSecond = c.wallNs == 0 ? 0 : static_cast<double>(t.calls) * 1e9 / static_cast<double>(c.wallNs);
    t.cpuNsPerCall = t.calls == 0 ? 0 : static_cast<double>(c.cpuNs) / static_cast<double>(t.calls);
    t.checkFailures = c.checkFailures;
    t.faults = c.faults;
    r.calls += t.calls;
    r.threads.push_back(t);
  }
  r.forkChildren = forks.children();
  r.forkFailures = forks.failures();
  if (!forks.error().empty() && r.error.empty()) r.error = forks.error();
  if (const FiberPool* fp = callers.fibers()) r.fiberSwitches = fp->switches(), r.fiberMigrations = fp->migrations();
  for (const CallerStats& c : callers.stats()) {
    if (!c.error.empty() && r.error.empty()) r.error = c.error;
  }
  r.libraryViolations = libraryViolations();
  r.violations = checker.total() + r.forkFailures + r.libraryViolations;
  r.details = checker.details();
  r.exitCode = r.violations != 0 ? kExitViolation : !r.error.empty() ? kExitRuntimeError : 0;
  printSummary(r);
  if (!o.jsonPath.empty() && !writeJson(r, o.jsonPath, &err)) {
    std::fprintf(stderr, "patchcall-stress: %s\n", err.c_str());
    if (r.exitCode == 0) r.exitCode = kExitRuntimeError;
  }
  return r.exitCode;
}

}  // namespace
}  // namespace stress

int main(int argc, char** argv) {
  stress::Options options;
  if (std::optional<int> code = stress::parseOptions(argc, argv, &options)) return *code;
  return stress::run(options);
}
