// tinyvm CLI — option parsing.
#include "cli_options.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace tinyvm::cli {

const char kUsage[] = R"(Usage: tinyvm COMMAND FILE [options]

tinyvm is a small language runtime that embeds patchcall: every call between JIT-compiled
functions is a patchable call site bound to the callee's static-call key.

Commands:
  run FILE        run the entry function (default main) and print its result
  check FILE      run it with the reference interpreter and with each JIT configuration
                  (lazy, threshold, eager, hard-wired, toggle/breakpoint/auto sites, no polls;
                  on aarch64 no toggle/breakpoint); exit 1 unless every result matches the
                  interpreter (and '# expect: N')
  dis FILE        print the bytecode
  --help          this text

Options:
  --tier T        lazy (compile on first call, default), eager, threshold=N
                  (interpret N calls first), interp (reference interpreter only)
  --calls C       sites (default) or hardwired (plain calls; no reload)
  --site-form F   direct (default), toggle, breakpoint, auto (aarch64: direct, auto)
  --no-polls      omit safepoint polls from JIT code
  --perf-map      write /tmp/perf-<pid>.map (perf report names JIT code)
  --jitdump       write jit-<pid>.dump ($JITDUMPDIR or /tmp; perf record -k mono, perf inject --jit)
  --entry NAME    function to run (default main)
  --args A,B,..   its integer arguments
  --threads N     run the entry in N threads at once
  --iterations K  calls of the entry per thread (default 1)
  --reload FILE   while the threads run, redefine the functions FILE defines
  --after-ms T    reload T ms after the threads start (default 50)
  --timeout-ms T  give up a threaded run after T ms (default 30000)
  --stats         print VM and patchcall counters
  --verbose       log every tier-up and reload

Hot reload: `tinyvm run prog.tvm --threads 4 --reload new.tvm --after-ms 100` runs the
entry in 4 threads; after 100 ms the functions of new.tvm replace their old definitions.
Each thread switches at its next call without stopping; every result is checked against
the interpreter's result for the old and for the new program; the old code is retired and
freed by patchcall once no thread can be running it (the counts are printed).

Exit status: 0 success, 1 wrong result, 2 usage, file or program error.
)";

const char* tieringName(Tiering t) {
  switch (t) {
    case Tiering::kLazy: return "lazy";
    case Tiering::kThreshold: return "threshold";
    case Tiering::kEager: return "eager";
  }
  return "?";
}

const char* siteFormName(patchcall::SiteForm f) {
  switch (f) {
    case patchcall::SiteForm::kDirect: return "direct";
    case patchcall::SiteForm::kToggle: return "toggle";
    case patchcall::SiteForm::kBreakpoint: return "breakpoint";
    case patchcall::SiteForm::kAuto: return "auto";
  }
  return "?";
}

namespace {

bool parseInt(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  errno = 0;
  char* end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (*end != '\0' || errno != 0) return false;
  *out = v;
  return true;
}

bool parseCount(const std::string& s, uint64_t max, uint64_t* out) {
  int64_t v = 0;
  if (!parseInt(s, &v) || v < 0 || static_cast<uint64_t>(v) > max) return false;
  *out = static_cast<uint64_t>(v);
  return true;
}

}  // namespace

ParseResult parseCommandLine(int argc, char** argv) {
  ParseResult r;
  CliOptions o;
  std::vector<std::string> a(argv + 1, argv + argc);
  auto fail = [&](std::string m) {
    r.error = "tinyvm: " + m + " (see tinyvm --help)";
    return r;
  };
  if (a.empty()) return fail("missing command");
  size_t i = 0;
  const std::string& cmd = a[i++];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    o.command = Command::kHelp;
    r.options = o;
    return r;
  }
  if (cmd == "run") o.command = Command::kRun;
  else if (cmd == "check") o.command = Command::kCheck;
  else if (cmd == "dis") o.command = Command::kDis;
  else return fail("unknown command '" + cmd + "'");

  for (; i < a.size(); ++i) {
    const std::string& arg = a[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= a.size()) return false;
      *out = a[++i];
      return true;
    };
    std::string v;
    uint64_t n = 0;
    if (arg == "--help" || arg == "-h") {
      o.command = Command::kHelp;
      r.options = o;
      return r;
    } else if (arg == "--tier") {
      if (!value(&v)) return fail("--tier needs a value");
      if (v == "lazy") o.vm.tiering = Tiering::kLazy;
      else if (v == "eager") o.vm.tiering = Tiering::kEager;
      else if (v == "interp") o.interpretOnly = true;
      else if (v.rfind("threshold=", 0) == 0 && parseCount(v.substr(10), 1u << 30, &n) && n > 0) {
        o.vm.tiering = Tiering::kThreshold;
        o.vm.threshold = static_cast<uint32_t>(n);
      } else {
        return fail("bad --tier '" + v + "' (lazy, eager, threshold=N, interp)");
      }
    } else if (arg == "--calls") {
      if (!value(&v)) return fail("--calls needs a value");
      if (v == "sites") o.vm.jit.calls = CallMode::kSites;
      else if (v == "hardwired") o.vm.jit.calls = CallMode::kHardwired;
      else return fail("bad --calls '" + v + "' (sites, hardwired)");
    } else if (arg == "--site-form") {
      if (!value(&v)) return fail("--site-form needs a value");
      if (v == "direct") o.vm.jit.siteForm = patchcall::SiteForm::kDirect;
      else if (v == "toggle") o.vm.jit.siteForm = patchcall::SiteForm::kToggle;
      else if (v == "breakpoint") o.vm.jit.siteForm = patchcall::SiteForm::kBreakpoint;
      else if (v == "auto") o.vm.jit.siteForm = patchcall::SiteForm::kAuto;
      else return fail("bad --site-form '" + v + "' (direct, toggle, breakpoint, auto)");
    } else if (arg == "--no-polls") {
      o.vm.jit.polls = false;
    } else if (arg == "--perf-map") {
      o.vm.runtime.perfMap = true;
    } else if (arg == "--jitdump") {
      o.vm.runtime.jitDump = true;
    } else if (arg == "--entry") {
      if (!value(&o.entry)) return fail("--entry needs a function name");
    } else if (arg == "--args") {
      if (!value(&v)) return fail("--args needs a comma-separated list");
      size_t start = 0;
      while (start <= v.size()) {
        size_t comma = v.find(',', start);
        std::string item = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        int64_t x = 0;
        if (!parseInt(item, &x)) return fail("bad integer '" + item + "' in --args");
        o.args.push_back(x);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (arg == "--threads") {
      if (!value(&v) || !parseCount(v, 256, &n) || n == 0) return fail("--threads needs a count in 1..256");
      o.threads = static_cast<uint32_t>(n);
    } else if (arg == "--iterations") {
      if (!value(&v) || !parseCount(v, uint64_t{1} << 40, &n) || n == 0) return fail("--iterations needs a positive count");
      o.iterations = n;
    } else if (arg == "--reload") {
      if (!value(&o.reloadFile)) return fail("--reload needs a file");
    } else if (arg == "--after-ms") {
      if (!value(&v) || !parseCount(v, 3600000, &n)) return fail("--after-ms needs milliseconds");
      o.afterMs = static_cast<uint32_t>(n);
    } else if (arg == "--timeout-ms") {
      if (!value(&v) || !parseCount(v, 3600000, &n) || n == 0) return fail("--timeout-ms needs milliseconds");
      o.timeoutMs = static_cast<uint32_t>(n);
    } else if (arg == "--stats") {
      o.stats = true;
    } else if (arg == "--verbose" || arg == "-v") {
      o.verbose = true;
    } else if (!arg.empty() && arg[0] == '-') {
      return fail("unknown option '" + arg + "'");
    } else if (o.file.empty()) {
      o.file = arg;
    } else {
      return fail("unexpected argument '" + arg + "'");
    }
  }
  if (o.file.empty()) return fail("missing FILE");
  if (!o.reloadFile.empty() && o.interpretOnly) return fail("--reload needs the JIT (not --tier interp)");
  if (!o.reloadFile.empty() && o.vm.jit.calls == CallMode::kHardwired) return fail("--reload needs --calls sites");
  if (!o.reloadFile.empty() && o.threads == 0) o.threads = 1;
  r.options = o;
  return r;
}

}  // namespace tinyvm::cli
