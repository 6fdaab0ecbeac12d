// patchcall aarch64 — system calls made without libc, for the fork child's handler.
//
// A fork child maps libc's text as it first runs it, one fault per 64 KiB window: close()
// lies in a window nothing else on the child's way to running touches (BM_ForkChild's
// child_minflt), so the handler's close is made from patchcall's own fork-path text.
#pragma once

#include <sys/syscall.h>

namespace patchcall::arch {

// Both always inlined: the code runs from its caller's fork-path section (PATCHCALL_FORK_PATH).
// The kernel's return value: >= 0, or -errno. svc #0 takes the number in x8, returns in x0.
[[gnu::always_inline]] inline long rawSyscall1(long number, long arg0) noexcept {
  register long x8 __asm__("x8") = number;
  register long x0 __asm__("x0") = arg0;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8) : "memory");
  return x0;
}

[[gnu::always_inline]] inline int rawClose(int fd) noexcept {
  return static_cast<int>(rawSyscall1(SYS_close, fd));
}

}  // namespace patchcall::arch
