// patchcall-stress — the retarget/stress driver: caller threads run JIT code through
// patchable sites while updaters retarget them; every call is checked (versions.h), every
// unowned trap or fault is a violation (checker.h). Exit 0 iff the run saw no violation.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <random>
#include <thread>

#include "caller_threads.h"
#include "callers.h"
#include "checker.h"
#include "faults.h"
#include "fibers.h"
#include "options.h"
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

struct Plan {
  std::vector<patchcall::SiteForm> keyForm;
  std::vector<std::vector<uint32_t>> keysOfForm;  // per entry of Options::forms()
  SitePlan sites;
};

// Keys get the forms in rotation; so do sites, and each site is bound to the next key of its
// form (keys of a form shuffled by the seed), so every key has sites when sites >= keys.
Plan makePlan(const Options& o) {
  std::vector<patchcall::SiteForm> forms = o.forms();
  Plan p;
  p.keysOfForm.resize(forms.size());
  for (int k = 0; k < o.keys; ++k) {
    p.keyForm.push_back(forms[static_cast<size_t>(k) % forms.size()]);
    p.keysOfForm[static_cast<size_t>(k) % forms.size()].push_back(static_cast<uint32_t>(k));
  }
  std::mt19937_64 rng(o.seed);
  for (auto& keys : p.keysOfForm) std::shuffle(keys.begin(), keys.end(), rng);
  std::vector<size_t> next(forms.size(), 0);
  for (int s = 0; s < o.sites; ++s) {
    size_t f = static_cast<size_t>(s) % forms.size();
    p.sites.form.push_back(forms[f]);
    p.sites.key.push_back(p.keysOfForm[f][next[f]++ % p.keysOfForm[f].size()]);
  }
  return p;
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
  ro.diagnosticSink = [progress](const std::string& m) {
    std::fprintf(stderr, "%s%s\n", progress ? "\n" : "", m.c_str());
  };
  patchcall::Result<patchcall::Runtime> created = patchcall::Runtime::create(ro);
  if (!created) return fail("Runtime::create: " + created.status().toString());
  patchcall::Runtime& rt = *created;

  Plan plan = makePlan(o);
  void (*yield)() = o.fibers > 0 ? &stressFiberYield : nullptr;
  TargetSource targets(rt, static_cast<uint32_t>(o.keys), o.retire, o.widenRace, o.retire ? yield : nullptr);
  std::vector<const void*> initial;
  if (!targets.init(&initial, &err)) return fail(err);
  std::vector<patchcall::Key> keys;
  auto cells = std::make_unique<KeyCells[]>(static_cast<size_t>(o.keys));
  for (int k = 0; k < o.keys; ++k) {
    auto key = rt.createKey(initial[static_cast<size_t>(k)], "stress." + std::to_string(k));
    if (!key) return fail("createKey: " + key.status().toString());
    keys.push_back(*key);
    cells[k].end.store(tag(static_cast<uint32_t>(k), 0));
    cells[k].begin.store(tag(static_cast<uint32_t>(k), 0));
  }
  CallerCode code;
  if (!code.build(rt, keys, plan.sites, o.groupSize, toggleStallHook(o), yield, &err)) return fail(err);
  patchcall::ArenaInfo arena = rt.arenaInfo();
  checker.attach(&code, cells.get(), arena.rxBase, arena.size);

  CallerThreads callers(rt, code, cells.get(), o.threads, o.seed, o.fibers);
  if (!callers.start(&err)) return fail(err);
  Updaters updaters(rt, keys, cells.get(), targets);
  std::vector<patchcall::SiteForm> forms = o.forms();
  std::vector<UpdaterConfig> configs;
  for (size_t f = 0; f < forms.size(); ++f) {
    UpdaterConfig c{forms[f], plan.keysOfForm[f], o.batch, o.updateRate / static_cast<double>(forms.size()),
                    o.seed + 1 + f};
    configs.push_back(std::move(c));
  }

  using Clock = std::chrono::steady_clock;
  auto start = Clock::now(), deadline = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.seconds));
  updaters.start(std::move(configs));
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
  for (size_t f = 0; f < forms.size(); ++f) {
    UpdaterStats& u = updaters.stats()[f];
    FormReport fr;
    fr.form = forms[f];
    fr.keys = static_cast<uint32_t>(plan.keysOfForm[f].size());
    fr.sites = static_cast<uint32_t>(std::count(plan.sites.form.begin(), plan.sites.form.end(), forms[f]));
    fr.updates = u.updates.load();
    fr.batches = u.batches.load();
    fr.latency = Latency::of(u.latencyNs);
    allLatencies.insert(allLatencies.end(), u.latencyNs.begin(), u.latencyNs.end());
    if (forms[f] == patchcall::SiteForm::kBreakpoint) fr.emulatedTraps = r.runtime.trapsEmulated;
    if (forms[f] == patchcall::SiteForm::kToggle) fr.toggleGraceWaits = r.runtime.toggleGraceWaits;
    fr.blobsRetired = u.blobsRetired.load();
    for (const CallerStats& c : callers.stats()) fr.calls += c.callsByForm[static_cast<int>(forms[f])];
    fr.violations = checker.byForm(static_cast<int>(forms[f]));
    r.updates += fr.updates;
    r.blobsRetired += fr.blobsRetired;
    if (!u.error.empty() && r.error.empty()) r.error = std::string(formName(forms[f])) + " updater: " + u.error;
    r.forms.push_back(fr);
  }
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
  if (const FiberPool* fp = callers.fibers()) r.fiberSwitches = fp->switches(), r.fiberMigrations = fp->migrations();
  for (const CallerStats& c : callers.stats()) {
    if (!c.error.empty() && r.error.empty()) r.error = c.error;
  }
  r.violations = checker.total();
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
