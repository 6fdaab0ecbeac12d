// patchcall — a small in-memory ELF64 file describing one blob, for debuggers (gdb's JIT
// interface reads it from process memory; see gdb_jit.h).
//
// Sections: .text (SHT_NOBITS at the blob's address and size: the code stays where it runs,
// the debugger reads it from memory), .eh_frame (when given: SHF_ALLOC at the address the
// image itself holds it), .symtab (one STT_FUNC symbol per named range, absolute addresses,
// ET_EXEC so st_value is the address), .strtab, .shstrtab. No program headers: gdb and
// readelf read the section table.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "code_event.h"
#include "patchcall/status.h"

namespace patchcall::observe {

class ElfImage {
 public:
  // `ranges` name the functions inside the blob (each must lie inside it); when empty, one
  // symbol named blob.name covers the whole blob. `ehFrame` is a complete .eh_frame section
  // with absolute pointers (arch::buildFramePointerEhFrame), or empty.
  static Result<ElfImage> build(const CodeEvent& blob, std::span<const CodeRange> ranges,
                                std::span<const uint8_t> ehFrame = {});

  ElfImage(ElfImage&&) = default;
  ElfImage& operator=(ElfImage&&) = default;
  ElfImage(const ElfImage&) = delete;  // a copy would point its .eh_frame at the original
  ElfImage& operator=(const ElfImage&) = delete;

  std::span<const uint8_t> bytes() const noexcept { return bytes_; }

 private:
  ElfImage() = default;
  std::vector<uint8_t> bytes_;  // moved, never resized: the .eh_frame sh_addr points into it
};

}  // namespace patchcall::observe
