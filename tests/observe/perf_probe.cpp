// observe_perf_probe: a hot loop in JIT code, announced through PerfMap ("map") or JitDump
// ("dump"); in "dump" mode the loop's bytes are then patched in place and announced with
// JitDump::codeChanged, and the loop runs on. run_perf_probe.cmake records it with perf.
//
//   push rbp; mov rbp, rsp; mov ecx, N; L: dec ecx; jnz L; leave; ret
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>

#include "observe/jitdump.h"
#include "observe/perf_map.h"

using namespace patchcall;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "map";
  uint8_t loop[] = {0x55, 0x48, 0x89, 0xE5, 0xB9, 0, 0, 0, 0, 0xFF, 0xC9, 0x75, 0xFC, 0xC9, 0xC3};
  const size_t countAt = 5;
  uint32_t count = 100000000;
  std::memcpy(loop + countAt, &count, 4);
  auto* code = static_cast<uint8_t*>(
      mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  if (code == MAP_FAILED) return 1;
  std::memcpy(code, loop, sizeof loop);
  auto run = [&](int times) {
    for (int i = 0; i < times; ++i) reinterpret_cast<void (*)()>(code)();
  };
  const observe::CodeEvent event{reinterpret_cast<uintptr_t>(code), sizeof loop, "jit_hot_loop", code};
  observe::PerfMap map;
  observe::JitDump dump;
  Status s = mode == "map" ? map.open() : dump.open(argc > 2 ? argv[2] : observe::JitDump::defaultDirectory());
  if (s.isOk()) s = mode == "map" ? map.codeLoaded(event) : dump.codeLoaded(event);
  if (!s.isOk()) {
    std::printf("probe: %s\n", s.message().c_str());
    return 1;
  }
  run(4);
  if (mode == "dump") {
    count = 50000000;  // the "retarget": same blob, new bytes, half the work per call
    std::memcpy(code + countAt, &count, 4);
    if (!dump.codeChanged(event.start, event.size, event.name, code).isOk()) return 1;
    run(8);
  }
  std::printf("probe: done pid %d\n", static_cast<int>(getpid()));
  return 0;
}
