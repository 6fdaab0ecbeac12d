// observe_gdb_probe: JIT code registered through the GDB JIT interface calls a C++
// function twice, once while registered and once after GdbJit::remove(); run_gdb.cmake
// breaks in that function and checks what `bt` names (see there).
#include <cstdio>

#include "arch/arch.h"
#include "jit_frame.h"
#include "observe/frame_registration.h"
#include "observe/gdb_jit.h"

using namespace patchcall;

extern "C" __attribute__((noinline)) void observeProbeTarget(int round) {
  std::printf("probe: target called, round %d\n", round);
  __asm__ volatile("" ::: "memory");
}

int main() {
  observe_test::JitFrame code(&observeProbeTarget);
  const arch::FrameCfiRange range{code.start(), code.size(), true};
  std::vector<uint8_t> eh = arch::buildFramePointerEhFrame({&range, 1});
  observe::GdbJit gdb;
  const observe::CodeEvent blob{code.start(), code.size(), "jit_probe_frame", code.bytes().data()};
  Result<observe::GdbJit::Handle> handle = gdb.add(blob, {}, eh);
  Result<observe::FrameRegistration> reg = observe::FrameRegistration::create(eh);
  if (!handle || !reg) {
    std::printf("probe: registration failed\n");
    return 1;
  }
  code.call(1);  // registered: bt names jit_probe_frame
  if (!gdb.remove(*handle).isOk()) return 1;
  code.call(2);  // unregistered: gdb no longer has a name for the frame
  std::printf("probe: done\n");
  return 0;
}
