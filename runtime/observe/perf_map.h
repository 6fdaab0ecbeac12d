// patchcall — perf's map file: /tmp/perf-<pid>.map, one "START SIZE name" line per code load.
//
// perf report / perf top read /tmp/perf-<pid>.map to name samples in anonymous executable
// memory (tools/perf/Documentation/jit-interface.txt). The file is append-only: perf has no
// unload, a later line for the same address wins. Opt-in: a default-constructed PerfMap is
// disabled until open() succeeds. Calls are assumed serialized (the engine's lock).
#pragma once

#include <span>
#include <string>

#include "code_event.h"
#include "file_writer.h"

namespace patchcall::observe {

class PerfMap {
 public:
  // perf looks only in /tmp; tests pass their own directory.
  static constexpr const char* kDefaultDirectory = "/tmp";

  // Creates (truncates) <directory>/perf-<getpid()>.map; with `truncate` false appends to it
  // (a second runtime in the process: perf reads one map per pid). On failure the map stays
  // disabled.
  Status open(std::string directory = kDefaultDirectory, bool truncate = true);
  // Appends "%lx %lx %s\n" (hex start, hex size, name). Control characters in the name become
  // '?', an empty name becomes "jit_<start>". The first failed write disables the map and
  // returns its Status; every later call returns ok and writes nothing.
  Status codeLoaded(const CodeEvent& event);
  // In a fork() child: stop writing the parent's file and start perf-<child pid>.map, with a
  // line for every code range `live` still maps (the child inherited the arena, and perf keys
  // maps by pid, so samples of inherited code need them in the child's file too).
  // `parent`: the process whose file this one inherited (it is closed here).
  Status afterForkInChild(pid_t parent, std::span<const CodeEvent> live = {}, bool truncate = true);
  void close() { file_.close(); }

  bool enabled() const noexcept { return file_.enabled(); }
  const std::string& path() const noexcept { return file_.path(); }

 private:
  FileWriter file_;
  std::string directory_;
};

}  // namespace patchcall::observe
