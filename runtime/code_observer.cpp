// patchcall — the CodeObserver (see code_observer.h).
#include "code_observer.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "arch/arch.h"

namespace patchcall::detail {
namespace {

// Process-wide: the pid that created /tmp/perf-<pid>.map and jit-<pid>.dump. The first
// runtime of a process creates each file, later runtimes append to the map (perf reads one
// map per pid) and leave jitdump alone (a second header would corrupt it). A fork child has
// a new pid, so its first runtime starts fresh files. Atomics: no lock for fork to break.
std::atomic<pid_t> gPerfMapPid{0};
std::atomic<pid_t> gJitDumpPid{0};

// True for the first caller in this process.
bool claimFirst(std::atomic<pid_t>& owner) { return owner.exchange(::getpid()) != ::getpid(); }

// PATCHCALL_PERF_MAP=1 / PATCHCALL_JITDUMP=1|<dir>: set and neither empty nor "0".
const char* envOn(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0 ? v : nullptr;
}

}  // namespace

void CodeObserver::report(const Status& s, const char* what) const {
  if (s.isOk() || !options_.diagnosticSink) return;
  try {
    options_.diagnosticSink(std::string("patchcall: ") + what + ": " + s.message());
  } catch (...) {  // a throwing sink must not break an install
  }
}

void CodeObserver::open() {
  bool perf = options_.perfMap || envOn("PATCHCALL_PERF_MAP") != nullptr;
  std::string dumpDir = options_.jitDumpDirectory;
  bool dump = options_.jitDump;
  if (const char* v = envOn("PATCHCALL_JITDUMP")) {
    dump = true;
    if (std::strcmp(v, "1") != 0 && dumpDir.empty()) dumpDir = v;
  }
  if (perf) report(perf_.open(observe::PerfMap::kDefaultDirectory, /*truncate=*/claimFirst(gPerfMapPid)), "perf map");
  if (dump) {
    if (!claimFirst(gJitDumpPid)) {
      report(Status(Error::kInvalidArgument, "another runtime of this process writes jit-" + std::to_string(::getpid()) +
                                                 ".dump; this one's code goes to the perf map only"),
             "jitdump");
    } else {
      report(jitdump_.open(dumpDir.empty() ? observe::JitDump::defaultDirectory() : dumpDir), "jitdump");
    }
  }
}

void CodeObserver::codeLoaded(uintptr_t start, size_t size, std::string_view name) {
  if (!filesEnabled()) return;
  observe::CodeEvent e{start, size, name, reinterpret_cast<const uint8_t*>(start)};
  report(perf_.codeLoaded(e), "perf map");
  report(jitdump_.codeLoaded(e), "jitdump");
}

Status CodeObserver::prepare(const CodeInfo& info, uintptr_t rx, const uint8_t* code, size_t size,
                             PreparedBlob& out) const {
  MiVector<NamedRange> sorted(info.ranges.begin(), info.ranges.end());
  std::sort(sorted.begin(), sorted.end(), [](const NamedRange& a, const NamedRange& b) { return a.offset < b.offset; });
  for (size_t i = 0; i < sorted.size(); ++i) {
    const NamedRange& r = sorted[i];
    if (r.size == 0 || r.offset > size || r.size > size - r.offset || (i > 0 && r.offset < sorted[i - 1].offset + sorted[i - 1].size)) {
      return Status(Error::kInvalidArgument, "CodeInfo: range '" + std::string(r.name) + "' at offset " +
                                                 std::to_string(r.offset) + " is empty, overlaps another or the end of the " +
                                                 std::to_string(size) + "-byte blob");
    }
    out.ranges.push_back(observe::CodeRange{rx + r.offset, r.size, r.name});
  }
  if (info.frameLayout == FrameLayout::kNone) return Status::ok();
  bool leaveRet = info.frameLayout == FrameLayout::kFramePointer;
  MiVector<arch::FrameCfiRange> cfi;
  if (sorted.empty()) cfi.push_back({rx, size, leaveRet});
  for (const NamedRange& r : sorted) cfi.push_back({rx + r.offset, r.size, leaveRet});
  for (const arch::FrameCfiRange& c : cfi) {
    Status ok = arch::checkFramePointerCode(std::span<const uint8_t>(code + (c.start - rx), c.size), leaveRet);
    if (!ok.isOk()) {
      return Status(Error::kInvalidArgument, "CodeInfo: " + std::string(sorted.empty() ? "blob" : "range") + " at offset " +
                                                 std::to_string(c.start - rx) + " does not follow its declared frame layout: " +
                                                 ok.message());
    }
  }
  out.ehFrame = arch::buildFramePointerEhFrame(cfi);
  return Status::ok();
}

Status CodeObserver::blobInstalled(uint32_t id, uintptr_t rx, size_t size, std::string_view name, PreparedBlob& prepared) {
  observe::CodeEvent blob{rx, size, name, reinterpret_cast<const uint8_t*>(rx)};
  bool described = !name.empty() || !prepared.ranges.empty() || !prepared.ehFrame.empty();
  bool wantGdb = options_.gdbJit == GdbJitMode::kAll || (options_.gdbJit == GdbJitMode::kDescribed && described);
  if (wantGdb || !prepared.ehFrame.empty()) {
    auto debug = std::make_unique<BlobDebug>();
    if (wantGdb) {
      Result<observe::GdbJit::Handle> h = gdb_.add(blob, prepared.ranges, prepared.ehFrame);
      if (h) debug->gdb = *h;
      else report(h.status(), "gdb JIT interface");  // the debugger misses this blob; the code runs
    }
    if (!prepared.ehFrame.empty()) {
      Result<observe::FrameRegistration> frames = observe::FrameRegistration::create(std::move(prepared.ehFrame));
      if (!frames) {
        if (debug->gdb != 0) (void)gdb_.remove(debug->gdb);
        return frames.status();
      }
      debug->frames = std::move(*frames);
    }
    blobs_.emplace(id, std::move(debug));
  }
  if (!filesEnabled()) return Status::ok();
  if (prepared.ranges.empty()) {
    codeLoaded(rx, size, name);
  } else {
    for (const observe::CodeRange& r : prepared.ranges) codeLoaded(r.start, r.size, r.name);
  }
  return Status::ok();
}

void CodeObserver::blobFreed(uint32_t id) noexcept {
  auto it = blobs_.find(id);
  if (it == blobs_.end()) return;
  if (it->second->gdb != 0) (void)gdb_.remove(it->second->gdb);
  it->second->frames.reset();
  blobs_.erase(it);
}

void CodeObserver::blobChanged(uintptr_t start, size_t size, std::string_view name) {
  if (!jitdump_.enabled()) return;
  report(jitdump_.codeChanged(start, size, name, reinterpret_cast<const uint8_t*>(start)), "jitdump");
}

void CodeObserver::afterForkInChild(pid_t parent, std::span<const observe::CodeEvent> live) {
  if (!perf_.path().empty()) report(perf_.afterForkInChild(parent, live, claimFirst(gPerfMapPid)), "perf map");
  if (!jitdump_.path().empty()) {
    (void)claimFirst(gJitDumpPid);
    report(jitdump_.afterForkInChild(parent, live), "jitdump");
  }
}

}  // namespace patchcall::detail
