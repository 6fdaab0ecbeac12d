// patchcall — the CodeObserver: tells profilers (perf map, jitdump), debuggers (gdb's JIT
// interface) and the unwinder (__register_frame) about the code the engine installs, frees
// and rewrites (the formats themselves: runtime/observe/).
//
// Every member runs with Runtime::Impl::textMutex held (install, free, update, fork child),
// never on a call path. A file that fails to write is turned off with one diagnostic.
//
// Process-wide state it touches: /tmp/perf-<pid>.map and jit-<pid>.dump (perf keys both by
// pid, so two runtimes in one process append to the same map file: each opens it once, the
// second with O_APPEND semantics of its own, see open()), gdb's __jit_debug_descriptor list
// (observe/gdb_jit.h) and libgcc's registered frame list.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "metadata.h"
#include "observe/code_event.h"
#include "observe/frame_registration.h"
#include "observe/gdb_jit.h"
#include "observe/jitdump.h"
#include "observe/perf_map.h"
#include "patchcall/code_info.h"
#include "patchcall/options.h"

namespace patchcall::detail {

// What perf, jitdump and gdb call patchcall's own code: "patchcall_safepoint_stub",
// "patchcall_noop", "patchcall_return_zero" (runtime_impl.h), "trampoline:<key name>"
// ("trampoline:key<id>" unnamed), "veneer:<far target>".
inline constexpr const char* kSafepointStubName = "patchcall_safepoint_stub";

// What commit checked and built before its first write, handed to blobInstalled().
struct PreparedBlob {
  MiVector<observe::CodeRange> ranges;  // absolute; names point into the CodeInfo
  std::vector<uint8_t> ehFrame;         // empty: no frame layout
};

class CodeObserver {
 public:
  explicit CodeObserver(const Options& options) : options_(options) {}

  // Runtime::create: opens the files Options and the environment ask for.
  void open();
  // Whether any event is worth building (the perf map or jitdump is on).
  bool filesEnabled() const noexcept { return perf_.enabled() || jitdump_.enabled(); }
  bool jitDumpEnabled() const noexcept { return jitdump_.enabled(); }
  // Either file was opened (in this process or, before a fork, in the parent).
  bool filesOpened() const noexcept { return !perf_.path().empty() || !jitdump_.path().empty(); }

  // Code at [start, start+size) became executable (a trampoline, veneer, the safepoint stub);
  // `bytes` is where it can be read (the RX address itself).
  void codeLoaded(uintptr_t start, size_t size, std::string_view name);

  // Before commit writes anything: checks `info` against the blob's bytes (`code`, read
  // through the RW alias; the blob will run at `rx`) and builds its .eh_frame.
  Status prepare(const CodeInfo& info, uintptr_t rx, const uint8_t* code, size_t size, PreparedBlob& out) const;
  // The blob is registered and about to be synced: registers its frames (a failure is the
  // install's) and its gdb image, writes its loads. blobFreed() undoes it.
  Status blobInstalled(uint32_t id, uintptr_t rx, size_t size, std::string_view name, PreparedBlob& prepared);
  // Before the blob's memory is int3-filled or reused.
  void blobFreed(uint32_t id) noexcept;
  // An update rewrote sites inside this blob (once per blob per update, after its writes).
  void blobChanged(uintptr_t rx, size_t size, std::string_view name);

  // fork() child of `parent`: new files for this pid, with a load for everything still mapped.
  void afterForkInChild(pid_t parent, std::span<const observe::CodeEvent> live);

 private:
  void report(const Status& s, const char* what) const;

  const Options& options_;
  observe::PerfMap perf_;
  observe::JitDump jitdump_;
  observe::GdbJit gdb_;
  struct BlobDebug {
    observe::GdbJit::Handle gdb = 0;
    observe::FrameRegistration frames;
  };
  MiHashMap<uint32_t, std::unique_ptr<BlobDebug>> blobs_;  // only blobs with a gdb image or frames
};

}  // namespace patchcall::detail
