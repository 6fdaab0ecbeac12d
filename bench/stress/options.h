// patchcall-stress — command-line options.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "patchcall/options.h"

namespace stress {

// Which site forms a run exercises; kMixed rotates every form of the ISA over the sites (x86-64:
// direct, toggle, breakpoint; aarch64: direct).
enum class FormChoice { kDirect, kToggle, kBreakpoint, kMixed };

// Test-only ways to break the protocol (hidden --fault=..., PATCHCALL_TEST_HOOKS builds).
enum class Fault { kNone, kSkipSync, kSkipGrace, kSkipRetireGrace, kSkipForkCopy, kSkipStackScan, kSkipStrictGrace,
                   kSkipPublish };

// When the updaters' writes are published (patchcall::Publish): every update at once, every
// update deferred (a publish() every --publish-every batches), or each batch chosen at random.
enum class PublishChoice { kNow, kDeferred, kMixed };

struct Options {
  int threads = 4;
  int sites = 1000;
  int keys = 120;
  FormChoice form = FormChoice::kMixed;
  double seconds = 10;
  double updateRate = 0;  // updates per second over all forms; 0 = as fast as possible
  int batch = 8;          // keys per updateBatch call
  int updaters = 1;       // updater threads per form (each owns a share of the form's keys)
  PublishChoice publish = PublishChoice::kNow;
  int publishEvery = 8;   // deferred batches between an updater's publish() calls
  bool retire = false;
  int forks = 0;  // children forked during the run, each running a short stress of its own
  int fibers = 0;  // 0: callers run on their threads; else on this many fibers (fibers.h)
  uint64_t seed = 1;
  std::string jsonPath;
  bool progress = false;  // forced on by --progress; otherwise only when stderr is a tty
  bool perfMap = false;   // --perf-map: patchcall::Options::perfMap
  bool jitDump = false;   // --jitdump: patchcall::Options::jitDump
  // Hidden (test builds): break the protocol, or widen the toggle race without breaking it.
  Fault fault = Fault::kNone;
  bool widenRace = false;
  // Test builds: every key is strict (KeyOptions::strictUpdates) and toggle sites re-read
  // `end` between the toggle and call A, so the checker holds toggles to invariant 3 too.
  bool strictToggle = false;
  int groupSize = 128;  // sites per JIT caller function (hidden tuning knob)

  // The forms this run uses, in site-rotation order.
  std::vector<patchcall::SiteForm> forms() const;
};

// Parses argv. On --help prints the usage and returns an exit code of 0; on a bad option
// prints a message naming it and returns 2. Otherwise returns nullopt and fills `out`.
std::optional<int> parseOptions(int argc, char** argv, Options* out);

const char* formName(patchcall::SiteForm form);
const char* faultName(Fault fault);
const char* publishName(PublishChoice publish);

}  // namespace stress
