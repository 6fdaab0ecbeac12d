// patchcall-stress — progress line, summary table and JSON output.
#include "report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace stress {
namespace {

// 1234567 -> "1.23M"
std::string human(double v) {
  char buf[32];
  if (v >= 1e9) std::snprintf(buf, sizeof buf, "%.2fG", v / 1e9);
  else if (v >= 1e6) std::snprintf(buf, sizeof buf, "%.2fM", v / 1e6);
  else if (v >= 1e4) std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else std::snprintf(buf, sizeof buf, "%.0f", v);
  return buf;
}

std::string micros(uint64_t ns) {
  char buf[32];
  std::snprintf(buf, sizeof buf, ns < 10000 ? "%.1f" : "%.0f", static_cast<double>(ns) / 1000.0);
  return buf;
}

std::string jsonEscape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += c;
    else if (c == '\n') out += "\\n";
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out;
}

void latencyJson(FILE* f, const Latency& l) {
  std::fprintf(f, "{\"p50\": %llu, \"p99\": %llu, \"max\": %llu}", static_cast<unsigned long long>(l.p50),
               static_cast<unsigned long long>(l.p99), static_cast<unsigned long long>(l.max));
}

}  // namespace

Latency Latency::of(std::vector<uint32_t> v) {
  Latency l;
  if (v.empty()) return l;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(std::ceil(q * v.size())) - 1)]; };
  l.p50 = at(0.50);
  l.p99 = at(0.99);
  l.max = v.back();
  return l;
}

void printProgress(double seconds, double callsPerSecond, double updatesPerSecond, const patchcall::RuntimeStats& s,
                   uint64_t violations) {
  std::fprintf(stderr, "\r%6.1fs  calls/s %-8s updates/s %-7s grace periods %-7llu blobs freed %-7llu violations %llu   ",
               seconds, human(callsPerSecond).c_str(), human(updatesPerSecond).c_str(),
               static_cast<unsigned long long>(s.gracePeriods), static_cast<unsigned long long>(s.blobsFreed),
               static_cast<unsigned long long>(violations));
  std::fflush(stderr);
}

void printSummary(const RunReport& r) {
  const Options& o = r.options;
  std::printf("\npatchcall-stress: %d caller threads, %d sites, %d keys, batch %d, update rate %s, %s, %.1f s\n",
              o.threads, o.sites, o.keys, o.batch,
              o.updateRate > 0 ? human(o.updateRate).append("/s").c_str() : "max",
              o.retire ? "retire on" : "retire off", r.seconds);
  const patchcall::ArenaInfo& a = r.arena;
  std::string reach = a.nearText            ? "C++ targets reachable by a direct call"
                      : a.directReach != 0 ? "C++ targets reachable by a direct call from the first " +
                                                 std::to_string(a.directReach >> 20) + " MiB handed out"
                                           : "far: C++ targets go through veneers";
  std::printf("arena: %zu MiB at %p, %+.2f GiB from the executable's text (%s), sync: %s\n", a.size >> 20, a.rxBase,
              static_cast<double>(a.distanceFromText) / (1024.0 * 1024 * 1024), reach.c_str(),
              a.sync == patchcall::SyncMethod::kMembarrier       ? "membarrier SYNC_CORE"
              : a.sync == patchcall::SyncMethod::kEmulatorRemap ? "emulator remap + membarrier (qemu-user only)"
                                                                 : "mprotect-IPI fallback");
  if (o.fibers > 0) {
    std::printf("fibers: %d on %d threads, %llu resumes, %llu on another thread than the last\n", o.fibers, o.threads,
                static_cast<unsigned long long>(r.fiberSwitches), static_cast<unsigned long long>(r.fiberMigrations));
  }
  if (o.fault != Fault::kNone || o.widenRace) {
    std::printf("fault injection: %s%s\n", faultName(o.fault), o.widenRace ? " + widened toggle race" : "");
  }
  if (o.strictToggle) std::printf("strict updates: toggle calls checked against `end` read after the toggle\n");
  if (o.publish != PublishChoice::kNow || o.updaters > 1) {
    std::printf("updaters: %d per form, publish %s%s\n", o.updaters, publishName(o.publish),
                o.publish == PublishChoice::kNow ? "" : (" (publish() every " + std::to_string(o.publishEvery) +
                                                         " deferred batches; `end` stored after it)").c_str());
  }
  // Grace periods and freed blobs belong to the runtime as a whole (one quiescence domain,
  // one reclaimer): they appear in the total row only.
  const char* row = "%-11s %6s %5s %9s %8s %8s %9s %8s %7s %7s %8s %8s %9s %10s\n";
  std::printf("\n");
  std::printf(row, "form", "sites", "keys", "updates", "lat p50", "lat p99", "lat max", "traps", "grace", "toggle",
              "blobs", "blobs", "calls", "violations");
  std::printf(row, "", "", "", "", "(us)", "(us)", "(us)", "emulated", "periods", "waits", "retired", "freed", "", "");
  auto num = [](uint64_t v) { return std::to_string(v); };
  for (const FormReport& f : r.forms) {
    std::printf(row, formName(f.form), num(f.sites).c_str(), num(f.keys).c_str(), num(f.updates).c_str(),
                micros(f.latency.p50).c_str(), micros(f.latency.p99).c_str(), micros(f.latency.max).c_str(),
                num(f.emulatedTraps).c_str(), "-", num(f.toggleGraceWaits).c_str(), num(f.blobsRetired).c_str(), "-",
                human(static_cast<double>(f.calls)).c_str(), num(f.violations).c_str());
  }
  std::printf(row, "total", num(static_cast<uint64_t>(o.sites)).c_str(), num(static_cast<uint64_t>(o.keys)).c_str(),
              num(r.updates).c_str(), micros(r.latency.p50).c_str(), micros(r.latency.p99).c_str(),
              micros(r.latency.max).c_str(), num(r.runtime.trapsEmulated).c_str(), num(r.runtime.gracePeriods).c_str(),
              num(r.runtime.toggleGraceWaits).c_str(), num(r.blobsRetired).c_str(), num(r.runtime.blobsFreed).c_str(),
              human(static_cast<double>(r.calls)).c_str(), num(r.violations).c_str());
  std::printf("\nupdates/s %s   calls/s %s   blobs pinned by a stack %llu   cross-core syncs %llu\n",
              human(static_cast<double>(r.updates) / r.seconds).c_str(),
              human(static_cast<double>(r.calls) / r.seconds).c_str(),
              static_cast<unsigned long long>(r.runtime.blobsPinnedByStacks),
              static_cast<unsigned long long>(r.runtime.syncs));
  std::printf("updates/s per updater %s   syncs per update %.3f   deferred updates %llu   publish syncs %llu\n",
              human(r.updatesPerSecondPerUpdater).c_str(), r.syncsPerUpdate, static_cast<unsigned long long>(r.deferred),
              static_cast<unsigned long long>(r.runtime.publishSyncs));
  if (r.libraryViolations != 0) {
    std::printf("patchcall's own checks: %llu blobs freed while a deferred move away from them was unpublished\n",
                static_cast<unsigned long long>(r.libraryViolations));
  }
  std::printf("per caller thread: calls/s");
  for (const ThreadReport& t : r.threads) std::printf(" %s", human(t.callsPerSecond).c_str());
  std::printf("\n                   cpu ns/call (check included)");
  for (const ThreadReport& t : r.threads) std::printf(" %.2f", t.cpuNsPerCall);
  std::printf("\n");
  if (r.options.forks > 0) {
    std::printf("fork children %llu, failed %llu (each checked its inherited sites and ran a stress of its own)\n",
                static_cast<unsigned long long>(r.forkChildren), static_cast<unsigned long long>(r.forkFailures));
  }
  if (!r.error.empty()) std::printf("\nRUN FAILED: %s\n", r.error.c_str());
  std::printf("\n%s: %llu violations\n", r.violations == 0 && r.error.empty() ? "PASS" : "FAIL",
              static_cast<unsigned long long>(r.violations));
  std::fflush(stdout);
}

bool writeJson(const RunReport& r, const std::string& path, std::string* error) {
  FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    *error = "cannot write " + path;
    return false;
  }
  const Options& o = r.options;
  auto u = [](uint64_t v) { return static_cast<unsigned long long>(v); };
  std::fprintf(f, "{\n  \"config\": {\"threads\": %d, \"sites\": %d, \"keys\": %d, \"form\": \"%s\", \"seconds\": %g, "
                  "\"update_rate\": %s, \"batch\": %d, \"retire\": %s, \"seed\": %llu, \"fault\": \"%s\", "
                  "\"widen_race\": %s, \"strict_toggle\": %s, \"sync\": \"%s\", \"arena_near_text\": %s, \"fibers\": %d, "
                  "\"updaters\": %d, \"publish\": \"%s\", \"publish_every\": %d},\n",
               o.threads, o.sites, o.keys,
               o.form == FormChoice::kMixed ? "mixed" : formName(o.forms()[0]), o.seconds,
               o.updateRate > 0 ? std::to_string(o.updateRate).c_str() : "\"max\"", o.batch, o.retire ? "true" : "false",
               static_cast<unsigned long long>(o.seed), faultName(o.fault), o.widenRace ? "true" : "false",
               o.strictToggle ? "true" : "false", r.arena.sync == patchcall::SyncMethod::kMembarrier       ? "membarrier"
               : r.arena.sync == patchcall::SyncMethod::kEmulatorRemap ? "emulator-remap"
                                                                        : "mprotect-ipi",
               r.arena.nearText ? "true" : "false", o.fibers, o.updaters, publishName(o.publish), o.publishEvery);
  std::fprintf(f, "  \"elapsed_s\": %.3f,\n  \"forms\": {\n", r.seconds);
  for (size_t i = 0; i < r.forms.size(); ++i) {
    const FormReport& x = r.forms[i];
    std::fprintf(f, "    \"%s\": {\"sites\": %u, \"keys\": %u, \"updates\": %llu, \"batches\": %llu, "
                    "\"update_latency_ns\": ",
                 formName(x.form), x.sites, x.keys, u(x.updates), u(x.batches));
    latencyJson(f, x.latency);
    std::fprintf(f, ", \"emulated_traps\": %llu, \"toggle_grace_waits\": %llu, \"blobs_retired\": %llu, "
                    "\"calls\": %llu, \"violations\": %llu}%s\n",
                 u(x.emulatedTraps), u(x.toggleGraceWaits), u(x.blobsRetired), u(x.calls), u(x.violations),
                 i + 1 < r.forms.size() ? "," : "");
  }
  std::fprintf(f, "  },\n  \"total\": {\"updates\": %llu, \"updates_per_s\": %.1f, \"update_latency_ns\": ", u(r.updates),
               static_cast<double>(r.updates) / r.seconds);
  latencyJson(f, r.latency);
  double perThread = r.threads.empty() ? 0 : static_cast<double>(r.calls) / r.seconds / static_cast<double>(r.threads.size());
  std::fprintf(f, ", \"calls\": %llu, \"calls_per_s\": %.1f, \"calls_per_s_per_thread\": %.1f, \"violations\": %llu, "
                  "\"grace_periods\": %llu, \"toggle_grace_waits\": %llu, \"emulated_traps\": %llu, "
                  "\"blobs_retired\": %llu, \"blobs_freed\": %llu, \"blobs_pinned_by_stacks\": %llu, "
                  "\"syncs\": %llu, \"site_writes\": %llu, \"fork_children\": %llu, \"fork_failures\": %llu, "
                  "\"fiber_switches\": %llu, \"fiber_migrations\": %llu, \"updates_per_s_per_updater\": %.1f, "
                  "\"syncs_per_update\": %.4f, \"deferred_updates\": %llu, \"publish_syncs\": %llu, "
                  "\"library_violations\": %llu},\n",
               u(r.calls), static_cast<double>(r.calls) / r.seconds, perThread, u(r.violations),
               u(r.runtime.gracePeriods), u(r.runtime.toggleGraceWaits), u(r.runtime.trapsEmulated),
               u(r.runtime.blobsRetired), u(r.runtime.blobsFreed), u(r.runtime.blobsPinnedByStacks), u(r.runtime.syncs),
               u(r.runtime.siteWrites), u(r.forkChildren), u(r.forkFailures), u(r.fiberSwitches), u(r.fiberMigrations),
               r.updatesPerSecondPerUpdater, r.syncsPerUpdate, u(r.deferred), u(r.runtime.publishSyncs),
               u(r.libraryViolations));
  std::fprintf(f, "  \"threads\": [");
  for (size_t i = 0; i < r.threads.size(); ++i) {
    const ThreadReport& t = r.threads[i];
    std::fprintf(f, "%s\n    {\"calls\": %llu, \"calls_per_s\": %.1f, \"cpu_ns_per_call\": %.3f, \"check_failures\": %llu, "
                    "\"faults\": %llu}",
                 i == 0 ? "" : ",", u(t.calls), t.callsPerSecond, t.cpuNsPerCall, u(t.checkFailures), u(t.faults));
  }
  std::fprintf(f, "\n  ],\n  \"violation_details\": [");
  for (size_t i = 0; i < r.details.size(); ++i) {
    const Violation& v = r.details[i];
    std::fprintf(f, "%s\n    {\"thread\": %d, \"site\": %lld, \"form\": \"%s\", \"key\": %lld, \"signal\": %d, "
                    "\"address\": \"0x%llx\", \"rip\": \"0x%llx\", \"returned\": \"0x%llx\", \"pre\": \"0x%llx\", \"post\": \"0x%llx\"}",
                 i == 0 ? "" : ",", v.thread, v.site == UINT32_MAX ? -1LL : static_cast<long long>(v.site),
                 v.form < 0 ? "unknown" : formName(static_cast<patchcall::SiteForm>(v.form)),
                 v.key == UINT32_MAX ? -1LL : static_cast<long long>(v.key), v.signal,
                 static_cast<unsigned long long>(v.address), static_cast<unsigned long long>(v.rip), u(v.returned), u(v.pre), u(v.post));
  }
  std::fprintf(f, "\n  ],\n  \"error\": \"%s\",\n  \"exit_code\": %d\n}\n", jsonEscape(r.error).c_str(), r.exitCode);
  bool ok = std::fclose(f) == 0;
  if (!ok) *error = "error writing " + path;
  return ok;
}

}  // namespace stress
