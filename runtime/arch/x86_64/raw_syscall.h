// patchcall x86-64 — system calls made without libc, for the fork child's handler.
//
// A fork child maps libc's text as it first runs it, one fault per 64 KiB window: close()
// lies in a window nothing else on the child's way to running touches (BM_ForkChild's
// child_minflt), so the handler's close is made from patchcall's own fork-path text.
#pragma once

#include <sys/syscall.h>

namespace patchcall::arch {

// Both always inlined: the code runs from its caller's fork-path section (PATCHCALL_FORK_PATH).
// The kernel's return value: >= 0, or -errno. The syscall instruction clobbers rcx and r11.
[[gnu::always_inline]] inline long rawSyscall1(long number, long arg0) noexcept {
  long result;
  __asm__ volatile("syscall" : "=a"(result) : "a"(number), "D"(arg0) : "rcx", "r11", "memory");
  return result;
}

[[gnu::always_inline]] inline int rawClose(int fd) noexcept {
  return static_cast<int>(rawSyscall1(SYS_close, fd));
}

}  // namespace patchcall::arch
