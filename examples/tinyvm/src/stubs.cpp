// tinyvm — the lazy-compile stub: a function's first target.
//
// The instructions are the ISA's (jit/<isa>/lazy_stub.cpp): they save the argument registers
// as an array, call Vm::tier0Entry and either tail-jump to the code it returns or return the
// result it interpreted.
//
// The stub is entered through a site or the key's trampoline, so it is itself a function
// with the tinyvm calling convention; callers never see the difference.
#include "jit/backend.h"
#include "vm_internal.h"

namespace tinyvm {

patchcall::Result<patchcall::Blob> Vm::installStubLocked(uint32_t index) {
  patchcall::jit::Assembler a(rt_);
  PATCHCALL_TRY(jit::emitLazyStub(a, this, index, reinterpret_cast<const void*>(&Vm::tier0Entry)));
  // perf and gdb call it lazy:<function>; its frame is frame-pointer based until the tail jump.
  const std::string name = "lazy:" + fns_[index].current.load(std::memory_order_relaxed)->name;
  patchcall::Result<patchcall::Blob> blob =
      patchcall::jit::install(a, patchcall::CodeInfo{name, {}, patchcall::FrameLayout::kFramePointerAnyEpilogue});
  if (blob) counters_->stubsInstalled.fetch_add(1);
  return blob;
}

}  // namespace tinyvm
