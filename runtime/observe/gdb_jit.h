// patchcall — gdb's JIT interface: debuggers learn about JIT code from ELF images the
// process lists in __jit_debug_descriptor (gdb manual, "JIT Compilation Interface"; lldb
// implements the same protocol).
//
// gdb puts a breakpoint on __jit_debug_register_code; each call tells it that
// relevant_entry was registered or is about to be freed (action_flag), and gdb reads or
// drops the image (symbols, .eh_frame) from process memory.
//
// Process-wide state: the descriptor and its entry list belong to the process, not to a
// Runtime, so every GdbJit (one per Runtime) links its entries into the same list under one
// process-wide mutex. The two symbols are weak definitions: another JIT in the process
// (LLVM's ORC/MCJIT, V8) defines the same ones, and the linker or dynamic loader then picks
// one definition that all share, as gdb expects a single descriptor. Such a JIT takes its
// own lock, not ours: do not register from patchcall and from it on two threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>

#include "code_event.h"
#include "elf_image.h"

extern "C" {
// The ABI gdb reads (gdb/jit.h, version 1): the layout is fixed.
struct jit_code_entry {
  jit_code_entry* next_entry;
  jit_code_entry* prev_entry;
  const char* symfile_addr;
  uint64_t symfile_size;
};
struct jit_descriptor {
  uint32_t version;
  uint32_t action_flag;  // JIT_NOACTION 0, JIT_REGISTER_FN 1, JIT_UNREGISTER_FN 2
  jit_code_entry* relevant_entry;
  jit_code_entry* first_entry;
};
void __jit_debug_register_code();
extern jit_descriptor __jit_debug_descriptor;
}
static_assert(sizeof(jit_code_entry) == 32 && sizeof(jit_descriptor) == 24);

namespace patchcall::observe {

// One per Runtime; its calls are assumed serialized (the engine's lock). Only the shared
// descriptor list takes the process-wide mutex.
class GdbJit {
 public:
  using Handle = uint64_t;  // 0 is never a handle

  GdbJit() = default;
  GdbJit(const GdbJit&) = delete;
  GdbJit& operator=(const GdbJit&) = delete;
  ~GdbJit();  // unregisters every entry still added

  // Builds the blob's image (see ElfImage::build for ranges and ehFrame), links it first in
  // the descriptor list and tells an attached debugger. The image lives until remove().
  Result<Handle> add(const CodeEvent& blob, std::span<const CodeRange> ranges = {},
                     std::span<const uint8_t> ehFrame = {});
  // Tells the debugger (JIT_UNREGISTER_FN) and frees the image: call it before the blob's
  // memory is reused, so gdb never names new code with an old image.
  Status remove(Handle handle);

  size_t size() const noexcept { return entries_.size(); }

 private:
  struct Entry {
    jit_code_entry link{};
    ElfImage image;
  };
  std::unordered_map<Handle, std::unique_ptr<Entry>> entries_;
  Handle next_ = 1;
};

}  // namespace patchcall::observe
