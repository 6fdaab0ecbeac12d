// patchcall — GdbJit and the GDB JIT interface symbols (see gdb_jit.h).
#include "gdb_jit.h"

#include <mutex>
#include <string>

#include "../fork_safety.h"

extern "C" {

// gdb's breakpoint site: it must exist as a real function and each call must happen, so it
// is noinline with an asm barrier that the optimizer cannot delete or move stores across.
__attribute__((weak, noinline, used)) void __jit_debug_register_code() { __asm__ volatile("" ::: "memory"); }

// gdb reads version first and ignores a descriptor whose version is not 1.
__attribute__((weak, used)) jit_descriptor __jit_debug_descriptor = {1, 0, nullptr, nullptr};
}

namespace patchcall::observe {
namespace {

enum : uint32_t { kNoAction = 0, kRegister = 1, kUnregister = 2 };

// Guards __jit_debug_descriptor for every GdbJit in the process. The atfork handlers hold it
// across fork() (it lives on the fork page: fork_safety.h).
std::mutex& descriptorMutex() { return detail::processLock(detail::ProcessLock::kGdbDescriptors); }

}  // namespace

Result<GdbJit::Handle> GdbJit::add(const CodeEvent& blob, std::span<const CodeRange> ranges,
                                   std::span<const uint8_t> ehFrame) {
  Result<ElfImage> image = ElfImage::build(blob, ranges, ehFrame);
  if (!image) return image.status();
  // Allocate everything before touching the shared list.
  auto entry = std::unique_ptr<Entry>(new Entry{{}, std::move(image).value()});
  entry->link.symfile_addr = reinterpret_cast<const char*>(entry->image.bytes().data());
  entry->link.symfile_size = entry->image.bytes().size();
  const Handle handle = next_++;
  jit_code_entry* link = &entry->link;
  entries_.emplace(handle, std::move(entry));
  std::lock_guard<std::mutex> lock(descriptorMutex());
  jit_descriptor& d = __jit_debug_descriptor;
  link->prev_entry = nullptr;
  link->next_entry = d.first_entry;
  if (d.first_entry != nullptr) d.first_entry->prev_entry = link;
  d.first_entry = link;
  d.relevant_entry = link;
  d.action_flag = kRegister;
  __jit_debug_register_code();
  d.action_flag = kNoAction;
  return handle;
}

Status GdbJit::remove(Handle handle) {
  auto it = entries_.find(handle);
  if (it == entries_.end()) {
    return {Error::kInvalidArgument, "gdb jit: unknown handle " + std::to_string(handle)};
  }
  {
    std::lock_guard<std::mutex> lock(descriptorMutex());
    jit_descriptor& d = __jit_debug_descriptor;
    jit_code_entry* link = &it->second->link;
    if (link->prev_entry != nullptr) {
      link->prev_entry->next_entry = link->next_entry;
    } else {
      d.first_entry = link->next_entry;
    }
    if (link->next_entry != nullptr) link->next_entry->prev_entry = link->prev_entry;
    // gdb reads the entry while stopped in the call below: unlinked, but not yet freed.
    d.relevant_entry = link;
    d.action_flag = kUnregister;
    __jit_debug_register_code();
    d.action_flag = kNoAction;
    d.relevant_entry = nullptr;
  }
  entries_.erase(it);
  return Status::ok();
}

GdbJit::~GdbJit() {
  while (!entries_.empty()) (void)remove(entries_.begin()->first);
}

}  // namespace patchcall::observe
