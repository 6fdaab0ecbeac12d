// patchcall-stress — command-line parsing: `--name value` or `--name=value`; errors exit 2.
#include "options.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "isa.h"

namespace stress {
namespace {

constexpr const char* kUsage = R"(usage: patchcall-stress [options]

Retargets patchcall call sites continuously while caller threads run JIT code through
them, and checks every call's result against the versions that were current during it.

  --threads N        caller threads, each registered with the runtime (default 4)
  --sites N          call sites in the JIT caller code, shared by all threads (default 1000)
  --keys N           static-call keys the sites are bound to (default 120)
  --form F           direct | toggle | breakpoint | mixed (default mixed: every form of this
                     ISA in rotation over the sites, one updater thread per form; x86-64 has
                     the three, aarch64 only direct)
  --seconds S        run length (default 10)
  --update-rate R    updates per second over all keys, or 'max' (default max)
  --batch N          keys per updateBatch call (default 8)
  --updaters N       updater threads per form, each owning a share of its keys (default 1)
  --publish P        now | deferred | mixed (default now): deferred updates return before the
                     final sync and are published by publish() every --publish-every batches
                     (or by any immediate update); mixed picks per batch. A deferred key's
                     `end` version is stored only after the publish that covers it
  --publish-every N  deferred batches between an updater's publish() calls (default 8)
  --retire           every update installs fresh target blobs and retires the old ones
                     (freed blobs are int3-filled: running one is a violation)
  --fibers N         the callers run on N fibers (registered stacks) that the caller
                     threads schedule from one run queue: fibers switch at safepoint
                     polls (with --retire also inside targets) and migrate between threads
  --seed N           seed for key assignment and update order (default 1)
  --fork N           fork N children during the run; each checks that every inherited site
                     decodes to its registry's target, then runs a short stress of its own
                     (fresh keys, code and threads in its copy) that must see 0 violations
  --json FILE        write the summary figures as JSON
  --progress         live progress line on stderr even when it is not a terminal
  --perf-map         write /tmp/perf-<pid>.map (perf report names the JIT callers and targets)
  --jitdump          write jit-<pid>.dump ($JITDUMPDIR or /tmp) for perf inject --jit
  --strict-toggle    (test builds) strict updates, and toggle calls checked against `end`
                     read between the toggle and call A: no call may enter a target older
                     than the last completed update (Direct and Breakpoint sites always are)
  --help             this text

Exit status: 0 if the run completed with zero violations, 1 if any violation was seen,
2 for a bad option, 3 if the runtime failed (setup error, grace-period timeout).
)";

bool parseInt(std::string_view name, const char* text, long lo, long hi, int* out, std::string* err) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || errno != 0 || v < lo || v > hi) {
    *err = std::string(name) + " expects an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) +
           "], got '" + text + "'";
    return false;
  }
  *out = static_cast<int>(v);
  return true;
}

bool parseDouble(std::string_view name, const char* text, double lo, double hi, double* out, std::string* err) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(text, &end);
  if (*text == '\0' || *end != '\0' || errno != 0 || !(v >= lo && v <= hi)) {
    char range[64];
    std::snprintf(range, sizeof range, "[%g, %g]", lo, hi);
    *err = std::string(name) + " expects a number in " + range + ", got '" + text + "'";
    return false;
  }
  *out = v;
  return true;
}

}  // namespace

std::vector<patchcall::SiteForm> Options::forms() const {
  using patchcall::SiteForm;
  switch (form) {
    case FormChoice::kDirect: return {SiteForm::kDirect};
    case FormChoice::kToggle: return {SiteForm::kToggle};
    case FormChoice::kBreakpoint: return {SiteForm::kBreakpoint};
    case FormChoice::kMixed: break;
  }
  return isa::siteForms();  // every form this ISA has
}

const char* formName(patchcall::SiteForm form) {
  switch (form) {
    case patchcall::SiteForm::kDirect: return "direct";
    case patchcall::SiteForm::kToggle: return "toggle";
    case patchcall::SiteForm::kBreakpoint: return "breakpoint";
    case patchcall::SiteForm::kAuto: return "auto";
  }
  return "?";
}

const char* faultName(Fault fault) {
  switch (fault) {
    case Fault::kNone: return "none";
    case Fault::kSkipSync: return "skip-sync";
    case Fault::kSkipGrace: return "skip-grace";
    case Fault::kSkipRetireGrace: return "skip-retire-grace";
    case Fault::kSkipForkCopy: return "skip-fork-copy";
    case Fault::kSkipStackScan: return "skip-stack-scan";
    case Fault::kSkipStrictGrace: return "skip-strict-grace";
    case Fault::kSkipPublish: return "skip-publish";
  }
  return "?";
}

const char* publishName(PublishChoice publish) {
  switch (publish) {
    case PublishChoice::kNow: return "now";
    case PublishChoice::kDeferred: return "deferred";
    case PublishChoice::kMixed: return "mixed";
  }
  return "?";
}

std::optional<int> parseOptions(int argc, char** argv, Options* o) {
  std::string err;
  auto bad = [&](const std::string& msg) {
    std::fprintf(stderr, "patchcall-stress: %s (see --help)\n", msg.c_str());
    return std::optional<int>(2);
  };
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view name = arg;
    const char* value = nullptr;
    if (size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = argv[i] + eq + 1;
    }
    // Fetches the option's value: the text after '=' or the next argument.
    auto next = [&]() -> const char* {
      if (value != nullptr) return value;
      if (i + 1 >= argc) return nullptr;
      return argv[++i];
    };
    auto flag = [&]() { return value == nullptr; };
    auto need = [&](const char*& v) {
      v = next();
      if (v == nullptr) err = std::string(name) + " needs a value";
      return v != nullptr;
    };
    const char* v = nullptr;
    if (name == "--help" || name == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (name == "--fork") {
      if (!need(v) || !parseInt(name, v, 0, 1000, &o->forks, &err)) return bad(err);
    } else if (name == "--threads") {
      if (!need(v) || !parseInt(name, v, 1, 1024, &o->threads, &err)) return bad(err);
    } else if (name == "--sites") {
      if (!need(v) || !parseInt(name, v, 1, 1000000, &o->sites, &err)) return bad(err);
    } else if (name == "--keys") {
      if (!need(v) || !parseInt(name, v, 1, 100000, &o->keys, &err)) return bad(err);
    } else if (name == "--batch") {
      if (!need(v) || !parseInt(name, v, 1, 100000, &o->batch, &err)) return bad(err);
    } else if (name == "--seconds") {
      if (!need(v) || !parseDouble(name, v, 0.001, 86400, &o->seconds, &err)) return bad(err);
    } else if (name == "--update-rate") {
      if (!need(v)) return bad(err);
      if (std::strcmp(v, "max") == 0) {
        o->updateRate = 0;
      } else if (!parseDouble(name, v, 0.001, 1e9, &o->updateRate, &err)) {
        return bad(err + " (or 'max')");
      }
    } else if (name == "--updaters") {
      if (!need(v) || !parseInt(name, v, 1, 64, &o->updaters, &err)) return bad(err);
    } else if (name == "--publish-every") {
      if (!need(v) || !parseInt(name, v, 1, 100000, &o->publishEvery, &err)) return bad(err);
    } else if (name == "--publish") {
      if (!need(v)) return bad(err);
      std::string_view p = v;
      if (p == "now") o->publish = PublishChoice::kNow;
      else if (p == "deferred") o->publish = PublishChoice::kDeferred;
      else if (p == "mixed") o->publish = PublishChoice::kMixed;
      else return bad("--publish expects now, deferred or mixed, got '" + std::string(p) + "'");
    } else if (name == "--form") {
      if (!need(v)) return bad(err);
      std::string_view f = v;
      if (f == "direct") o->form = FormChoice::kDirect;
      else if (f == "toggle") o->form = FormChoice::kToggle;
      else if (f == "breakpoint") o->form = FormChoice::kBreakpoint;
      else if (f == "mixed") o->form = FormChoice::kMixed;
      else return bad("--form expects direct, toggle, breakpoint or mixed, got '" + std::string(f) + "'");
      if (std::vector<patchcall::SiteForm> forms = o->forms(); forms.size() == 1 && o->form != FormChoice::kMixed) {
        std::vector<patchcall::SiteForm> has = isa::siteForms();
        if (std::find(has.begin(), has.end(), forms[0]) == has.end()) {
          return bad("--form " + std::string(f) + ": " + isa::kName + " has only direct sites (toggle and breakpoint "
                     "need x86-64's variable-length encodings and int3)");
        }
      }
    } else if (name == "--fibers") {
      if (!need(v) || !parseInt(name, v, 0, 100000, &o->fibers, &err)) return bad(err);
    } else if (name == "--retire" && flag()) {
      o->retire = true;
    } else if (name == "--progress" && flag()) {
      o->progress = true;
    } else if (name == "--perf-map" && flag()) {
      o->perfMap = true;
    } else if (name == "--jitdump" && flag()) {
      o->jitDump = true;
    } else if (name == "--seed") {
      if (!need(v)) return bad(err);
      char* end = nullptr;
      errno = 0;
      unsigned long long s = std::strtoull(v, &end, 0);
      if (*v == '\0' || *end != '\0' || errno != 0 || *v == '-') {
        return bad("--seed expects a non-negative integer, got '" + std::string(v) + "'");
      }
      o->seed = s;
    } else if (name == "--json") {
      if (!need(v)) return bad(err);
      if (*v == '\0') return bad("--json needs a file name");
      o->jsonPath = v;
    } else if (name == "--group-size") {
      if (!need(v) || !parseInt(name, v, 1, 4096, &o->groupSize, &err)) return bad(err);
#ifdef PATCHCALL_TEST_HOOKS
    } else if (name == "--fault") {
      if (!need(v)) return bad(err);
      std::string_view f = v;
      if (f == "skip-sync") o->fault = Fault::kSkipSync;
      else if (f == "skip-grace") o->fault = Fault::kSkipGrace, o->widenRace = true;
      else if (f == "skip-retire-grace") o->fault = Fault::kSkipRetireGrace;
      else if (f == "skip-fork-copy") o->fault = Fault::kSkipForkCopy;
      else if (f == "skip-stack-scan") o->fault = Fault::kSkipStackScan;
      else if (f == "skip-strict-grace") o->fault = Fault::kSkipStrictGrace, o->strictToggle = true;
      else if (f == "skip-publish") o->fault = Fault::kSkipPublish;
      else if (f == "none") o->fault = Fault::kNone;
      else return bad("--fault expects skip-sync, skip-grace, skip-retire-grace, skip-fork-copy, skip-stack-scan, "
                      "skip-strict-grace, skip-publish or none, got '" +
                      std::string(f) + "'");
    } else if (name == "--widen-race" && flag()) {
      o->widenRace = true;
    } else if (name == "--strict-toggle" && flag()) {
      o->strictToggle = true;
#endif
    } else if (value != nullptr && (name == "--retire" || name == "--progress" || name == "--widen-race" ||
                                    name == "--strict-toggle")) {
      return bad(std::string(name) + " takes no value");
    } else {
      return bad("unknown option '" + std::string(arg) + "'");
    }
  }
  // Whole-configuration checks.
  int forms = static_cast<int>(o->forms().size());
  if (o->keys < forms) {
    return bad("--form mixed needs at least " + std::to_string(forms) + " keys (one per form), got --keys " +
               std::to_string(o->keys));
  }
  for (size_t f = 0; f < static_cast<size_t>(forms); ++f) {
    // Every updater needs keys of its own: at least --updaters keys per form.
    if (o->keys / forms < o->updaters) {
      return bad("--updaters " + std::to_string(o->updaters) + " needs at least that many keys per form, got --keys " +
                 std::to_string(o->keys) + " over " + std::to_string(forms) + " form(s)");
    }
  }
  if (o->sites < forms) {
    return bad("--form mixed needs at least " + std::to_string(forms) + " sites (one per form), got --sites " +
               std::to_string(o->sites));
  }
  return std::nullopt;
}

}  // namespace stress
