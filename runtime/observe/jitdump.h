// patchcall — perf's jitdump file (jit-<pid>.dump): code loads with their bytes, for
// `perf inject --jit`, which turns each load into a small ELF so perf report can name and
// perf annotate can disassemble JIT samples.
//
// Format: tools/perf/util/jitdump.h in Linux (header version 1, JIT_CODE_LOAD, JIT_CODE_CLOSE).
// Timestamps are CLOCK_MONOTONIC, so record with `perf record -k mono` (else perf inject
// cannot order the loads against the samples). perf finds the file through the "marker":
// an mmap of its first page with PROT_EXEC, kept until close(), which the kernel reports to
// perf as an executable mapping named jit-<pid>.dump.
//
//   perf record -k mono -g ./app && perf inject --jit -i perf.data -o perf.jit.data &&
//   perf report -i perf.jit.data
//
// Opt-in: a default-constructed JitDump is disabled until open() succeeds. The first failed
// write (or a failed open or marker mmap) disables it and returns its Status once; later
// calls return ok and write nothing. Calls are assumed serialized (the engine's lock).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "code_event.h"
#include "file_writer.h"

namespace patchcall::observe {

namespace jitdump {
// The on-disk layout (all fields native endian), pinned so a reader can rely on the sizes.
inline constexpr uint32_t kMagic = 0x4A695444;  // "JiTD" read as a little-endian u32
inline constexpr uint32_t kVersion = 1;
enum RecordId : uint32_t { kCodeLoad = 0, kCodeMove = 1, kDebugInfo = 2, kCodeClose = 3 };
struct FileHeader {
  uint32_t magic, version, totalSize, elfMach, pad1, pid;
  uint64_t timestamp, flags;
};
struct RecordPrefix {
  uint32_t id, totalSize;
  uint64_t timestamp;
};
// Followed by the NUL-terminated name, then codeSize code bytes.
struct CodeLoad {
  RecordPrefix prefix;
  uint32_t pid, tid;
  uint64_t vma, codeAddr, codeSize, codeIndex;
};
static_assert(sizeof(FileHeader) == 40 && sizeof(RecordPrefix) == 16 && sizeof(CodeLoad) == 56);
}  // namespace jitdump

class JitDump {
 public:
  JitDump() = default;
  JitDump(const JitDump&) = delete;
  JitDump& operator=(const JitDump&) = delete;
  ~JitDump() { close(); }

  // $JITDUMPDIR if set, else /tmp (perf does not care where: it follows the marker).
  static std::string defaultDirectory();

  // Creates <directory>/jit-<getpid()>.dump, writes the header and maps the marker.
  Status open(std::string directory = defaultDirectory());
  // A JIT_CODE_LOAD of event.bytes[0, size) at event.start with the next code_index.
  Status codeLoaded(const CodeEvent& event);
  // Code at [start, start+size) changed in place (a retargeted call site): call it with the
  // containing blob's range, name and current bytes. It writes a new JIT_CODE_LOAD of the
  // whole blob with a new code_index. What perf shows then: `perf inject --jit` makes one ELF
  // per load and maps it at the record's timestamp, so perf report keeps naming samples
  // `name` (same symbol before and after), and perf annotate disassembles samples taken
  // after the retarget with the new bytes (the call shows its new target) and earlier
  // samples with the old ones. One call per blob per batch: each copies the whole blob.
  Status codeChanged(uintptr_t start, size_t size, std::string_view name, const uint8_t* bytes);
  // In a fork() child of `parent`: unmap the parent's marker, close its file, and start
  // jit-<child pid>.dump with a load record for each of `live` (code the child inherited).
  Status afterForkInChild(pid_t parent, std::span<const CodeEvent> live = {});
  // Writes JIT_CODE_CLOSE, unmaps the marker and closes the file (the destructor does too).
  void close();

  bool enabled() const noexcept { return file_.enabled(); }
  const std::string& path() const noexcept { return file_.path(); }
  uint64_t nextCodeIndex() const noexcept { return codeIndex_; }

 private:
  Status writeLoad(uintptr_t start, size_t size, std::string_view name, const uint8_t* bytes);
  void unmapMarker();

  FileWriter file_;
  std::string directory_;
  void* marker_ = nullptr;
  size_t markerSize_ = 0;
  uint64_t codeIndex_ = 0;
};

}  // namespace patchcall::observe
