/* patchcall — static calls for ahead-of-time compiled C and C++ (the kernel's static_call).
 *
 *   PATCHCALL_DEFINE_STATIC_CALL(gc_barrier, barrier_off);   (file scope, once per program)
 *   PATCHCALL_DECLARE_STATIC_CALL(gc_barrier, barrier_off);  (in a header, for other files)
 *   ...
 *   PATCHCALL_STATIC_CALL(gc_barrier)(obj, field);            (a direct call, anywhere)
 *   ...
 *   patchcall_static_call_update(gc_barrier, barrier_marking); (every call now reaches it)
 *
 * Two ways a call reaches its target, both always correct:
 *  - out of line: the call's trampoline, PATCHCALL_STATIC_CALL_TRAMP(name), starts with a
 *    `jmp rel32` that patchcall points at the target (or, for a target beyond +-2 GiB, at the
 *    trampoline's own indirect path through the call object's `target` field);
 *  - inline: every PATCHCALL_STATIC_CALL use leaves a marker record just before the call the
 *    compiler emits. At load, patchcall decodes (Zydis) forward from the marker, within the
 *    marker's function (the module's .eh_frame_hdr bounds it), to the first `call`/`jmp rel32`
 *    whose destination is the trampoline (directly, or through a PLT slot already bound to
 *    it); that instruction becomes a site that calls the target directly when it is in reach.
 *    A call the decoder does not find (-O0's indirect calls, -fno-plt, a lazily bound PLT slot
 *    of another module, a call the compiler moved before its marker) keeps calling the
 *    trampoline: a missed inline site costs a jump, never a wrong call. Nothing is matched by
 *    byte pattern, so there are no false positives.
 * An update rewrites the trampoline and every inline site, in every loaded module, in one batch
 * of the breakpoint protocol through /proc/self/mem (see static_key.h); a thread in the middle
 * of a call keeps the target it started with. Update to the current target: no write, no sync.
 *
 * Kernel parity: a NULL target (void calls only: C++ refuses it at compile time for others)
 * makes every call a no-op (inline sites become a 5-byte NOP, the trampoline returns at
 * once); patchcall_static_call_update_return0(name) makes calls return 0.
 *
 * Rules: define and declare at file scope (C++: any namespace scope; the objects get C
 * linkage, so a name is one per program); `func` and every target must have the call's type
 * (C++: a compile error otherwise; C: an array-size error). The functions take a process-wide
 * mutex, may be called from any thread (not from a signal handler) and are fork-safe: a child
 * patches its own private copy of the text (also the child of a raw fork system call, which
 * must not have forked while another thread was inside one of these functions).
 *
 * On aarch64 the same with A64 instructions: the trampoline's first instruction is a `b` (to
 * the target within +-128 MiB, else to its indirect path `adrp/ldr/ldr/br x16`), inline sites
 * are the compiler's `bl`/`b` found by walking the marker's function word by word (A64 is fixed
 * width), a NULL target makes an inline call a NOP. An update is one aligned 32-bit store per
 * site (B, BL and NOP may replace each other while other cores run them) and one sync.
 *
 * Elsewhere (PATCHCALL_STATIC_PATCHING 0) a call is an indirect call through `target`. */
#ifndef PATCHCALL_STATIC_CALL_AOT_H
#define PATCHCALL_STATIC_CALL_AOT_H

#include <stddef.h>
#include <stdint.h>

#include "patchcall/static_module.h"

#ifdef __cplusplus
#include <type_traits>
#endif

PATCHCALL_EXTERN_C_BEGIN_

struct patchcall_static_call {
  /* The current target (the trampoline's indirect path jumps through it): never NULL, a NULL
   * target is stored as the trampoline's `ret`. Read it with patchcall_static_call_query. */
  const void* target;
  const void* trampoline;
  const char* name;
  uint64_t reserved;
};

/* Errors: UNKNOWN_KEY (not a static call of a loaded module), TABLE_FULL (its module was not
 * registered), INVALID_ARGUMENT (a target inside the call's own trampoline: calls would spin),
 * UNSUPPORTED_SITE (a site no longer holds what patchcall wrote, e.g. a debugger's int3:
 * nothing is changed), SYSTEM_ERROR (a write or the sync failed; every site is left calling
 * the old or the new target). */
int patchcall_static_call_set(struct patchcall_static_call* call, const void* target);
/* The current target (NULL for the no-op). Error: UNKNOWN_KEY. */
int patchcall_static_call_target(const struct patchcall_static_call* call, const void** target);
/* Returns 0 (any integer or pointer return type): the kernel's __static_call_return0. */
long patchcall_static_call_return0(void);

PATCHCALL_EXTERN_C_END_

/* Trampoline layout, shared with runtime/arch/<isa>/static_text.h: 32 bytes, the first
 * instruction the patched jump, then the indirect path and a `ret` for the NULL target. */
#define PATCHCALL_SCT_SIZE 32
#if defined(__aarch64__)
#define PATCHCALL_SCT_INDIRECT 8 /* adrp/ldr x16 = <object>; ldr x16, [x16]; br x16 */
#define PATCHCALL_SCT_RET 4      /* ret: the NULL target */
#else
#define PATCHCALL_SCT_INDIRECT 8 /* movq <object>(%rip), %r11; jmpq *(%r11) */
#define PATCHCALL_SCT_RET 18     /* ret: the NULL target */
#endif

#define PATCHCALL_STATIC_CALL_TRAMP(name) __patchcall_sct_##name
#define PATCHCALL_STATIC_CALL_OBJECT_(name) __patchcall_scc_##name

#define PATCHCALL_DECLARE_STATIC_CALL(name, func)              \
  PATCHCALL_EXTERN_C_ __typeof__(func) __patchcall_sct_##name; \
  PATCHCALL_EXTERN_C_ struct patchcall_static_call __patchcall_scc_##name

#if PATCHCALL_STATIC_PATCHING && defined(__aarch64__)
/* Until patchcall registers the module, the first b goes to the indirect path, so calls made
 * by earlier constructors already reach `func`. x16 is AAPCS64's IP0: any call may clobber it
 * between the caller and the callee (as a PLT entry does). */
#define PATCHCALL_STATIC_CALL_TRAMPOLINE_(name)                                                   \
  __asm__(".pushsection .text.__patchcall_sct_" #name ", \"ax\", %progbits\n\t"                   \
          ".balign 32\n\t.globl __patchcall_sct_" #name "\n\t"                                    \
          ".type __patchcall_sct_" #name ", %function\n"                                          \
          "__patchcall_sct_" #name ":\n\t"                                                        \
          "b 1f\n\t"                                                                              \
          "ret\n"                                                                                 \
          "1:\n\tadrp x16, .Lpatchcall_scp_" #name "\n\t"                                         \
          "ldr x16, [x16, #:lo12:.Lpatchcall_scp_" #name "]\n\t"                                  \
          "ldr x16, [x16]\n\t"                                                                    \
          "br x16\n\t"                                                                            \
          "udf #0\n\tudf #0\n\t"                                                                  \
          ".size __patchcall_sct_" #name ", 32\n\t"                                               \
          ".pushsection .data.rel.ro.__patchcall_scp_" #name ", \"aw\"\n\t.balign 8\n"            \
          ".Lpatchcall_scp_" #name ":\n\t.quad __patchcall_scc_" #name "\n\t"                     \
          ".popsection\n\t.popsection")
#elif PATCHCALL_STATIC_PATCHING
/* Until patchcall registers the module, the first jmp goes to the indirect path, so calls
 * made by earlier constructors already reach `func`. */
#define PATCHCALL_STATIC_CALL_TRAMPOLINE_(name)                                                   \
  __asm__(".pushsection .text.__patchcall_sct_" #name ", \"ax\", @progbits\n\t"                   \
          ".balign 32\n\t.globl __patchcall_sct_" #name "\n\t"                                    \
          ".type __patchcall_sct_" #name ", @function\n"                                          \
          "__patchcall_sct_" #name ":\n\t"                                                        \
          ".byte 0xe9\n\t.long 3\n\t.byte 0xcc, 0xcc, 0xcc\n\t"                                   \
          "movq .Lpatchcall_scp_" #name "(%rip), %r11\n\t"                                        \
          "jmpq *(%r11)\n\t"                                                                      \
          "ret\n\t.fill 13, 1, 0xcc\n\t"                                                          \
          ".size __patchcall_sct_" #name ", 32\n\t"                                               \
          ".pushsection .data.rel.ro.__patchcall_scp_" #name ", \"aw\"\n\t.balign 8\n"            \
          ".Lpatchcall_scp_" #name ":\n\t.quad __patchcall_scc_" #name "\n\t"                     \
          ".popsection\n\t.popsection")
#endif
#if PATCHCALL_STATIC_PATCHING
/* The marker: where the compiler is about to emit the call (see the top of this file). */
#define PATCHCALL_STATIC_CALL(name)                                                                \
  (*__extension__({                                                                                \
    __asm__ volatile("1:\n\t.pushsection __patchcall_call_sites, \"aw\"\n\t.balign 8\n\t"           \
                     ".quad 1b, __patchcall_scc_" #name "\n\t.popsection");                        \
    &__patchcall_sct_##name;                                                                       \
  }))
#else
#define PATCHCALL_STATIC_CALL_TRAMPOLINE_(name) PATCHCALL_TAKE_SEMICOLON_
#define PATCHCALL_STATIC_CALL(name) \
  (*(__typeof__(&__patchcall_sct_##name))__atomic_load_n(&__patchcall_scc_##name.target, __ATOMIC_ACQUIRE))
#endif
/* A void call that may be NULL (a no-op): the same site as PATCHCALL_STATIC_CALL. */
#define PATCHCALL_STATIC_CALL_COND(name) PATCHCALL_STATIC_CALL(name)

#if PATCHCALL_STATIC_PATCHING
#define PATCHCALL_STATIC_CALL_INITIAL_TRAMP_(name) (const void*)(uintptr_t)&__patchcall_sct_##name
#else
#define PATCHCALL_STATIC_CALL_INITIAL_TRAMP_(name) NULL
#endif

#define PATCHCALL_DEFINE_STATIC_CALL(name, func)                                                   \
  PATCHCALL_EXTERN_C_ __typeof__(func) __patchcall_sct_##name;                                     \
  PATCHCALL_EXTERN_C_BEGIN_                                                                        \
  struct patchcall_static_call __patchcall_scc_##name                                              \
      __attribute__((section("__patchcall_calls"), used, aligned(32))) = {                          \
          (const void*)(uintptr_t)(func), PATCHCALL_STATIC_CALL_INITIAL_TRAMP_(name), #name, 0};   \
  PATCHCALL_EXTERN_C_END_                                                                          \
  PATCHCALL_STATIC_CALL_TRAMPOLINE_(name)

#ifdef __cplusplus
namespace patchcall::detail {
template <typename Fn>
struct StaticCallResult;
template <typename R, typename... A>
struct StaticCallResult<R (*)(A...)> {
  using type = R;
};
template <typename R, typename... A>
struct StaticCallResult<R (*)(A...) noexcept> {
  using type = R;
};
/* A target must have exactly the call's type; NULL (nullptr) only for a void call. */
template <typename Fn>
inline const void* staticCallTarget(Fn target) noexcept {
  return reinterpret_cast<const void*>(target);
}
template <typename Fn>
inline const void* staticCallTarget(decltype(nullptr)) noexcept {
  static_assert(std::is_void<typename StaticCallResult<Fn>::type>::value,
                "a NULL static call target (a no-op) is only for calls returning void");
  return nullptr;
}
}  // namespace patchcall::detail
#define patchcall_static_call_update(name, func) \
  patchcall_static_call_set(&__patchcall_scc_##name,  \
                            ::patchcall::detail::staticCallTarget<decltype(&__patchcall_sct_##name)>(func))

namespace patchcall {
/* The typed C++ handle of a static call: PATCHCALL_STATIC_CALL_HANDLE(name) (an empty value:
 * the call's identity is in its type, so it can be passed and stored freely).
 *
 *   constexpr auto barrier = PATCHCALL_STATIC_CALL_HANDLE(gc_barrier);
 *   barrier(obj, field);              (an inline site, as PATCHCALL_STATIC_CALL(gc_barrier))
 *   barrier.update(&barrier_marking); (a compile error for a target of another type)
 *
 * operator() is always inlined, so every call in the source leaves its own marker and becomes
 * an inline site calling the target directly. The marker names the call object through an
 * "i" operand, which GCC refuses for a default-visibility object in -fPIC (not -fPIE) code:
 * there the handle calls the trampoline (call + jmp rel32, always right); use the
 * PATCHCALL_STATIC_CALL macro in shared libraries for inline sites. Unlike
 * patchcall::StaticCall<Sig> (static_call.h: a JIT key made at run time, whose C++ calls go
 * through its target cell because no compiled call can name it), this handle's call is known
 * when the caller is compiled. */
template <auto Trampoline, ::patchcall_static_call* Object>
class StaticCallHandle {
 public:
  using Fn = decltype(Trampoline);

  template <typename... Args>
  __attribute__((always_inline)) decltype(auto) operator()(Args&&... args) const {
#if PATCHCALL_STATIC_PATCHING
#if !defined(__PIC__) || defined(__PIE__) || defined(__clang__)
    __asm__ volatile("1:\n\t.pushsection __patchcall_call_sites, \"aw\"\n\t.balign 8\n\t"
                     ".quad 1b, %c0\n\t.popsection" ::PATCHCALL_ADDRESS_CONSTRAINT_(Object));
#endif
    return Trampoline(static_cast<Args&&>(args)...);
#else
    return reinterpret_cast<Fn>(const_cast<void*>(__atomic_load_n(&Object->target, __ATOMIC_ACQUIRE)))(
        static_cast<Args&&>(args)...);
#endif
  }
  /* As patchcall_static_call_update: PATCHCALL_OK or an error code. */
  int update(Fn target) const { return patchcall_static_call_set(Object, detail::staticCallTarget<Fn>(target)); }
  int update(decltype(nullptr)) const { return patchcall_static_call_set(Object, detail::staticCallTarget<Fn>(nullptr)); }
  int updateReturn0() const {
    return patchcall_static_call_set(Object, reinterpret_cast<const void*>(&patchcall_static_call_return0));
  }
  /* The current target (nullptr for the no-op, or on an error). */
  Fn target() const {
    const void* t = nullptr;
    return patchcall_static_call_target(Object, &t) == 0 ? reinterpret_cast<Fn>(const_cast<void*>(t)) : nullptr;
  }
  static ::patchcall_static_call* object() noexcept { return Object; }
};
}  // namespace patchcall
#define PATCHCALL_STATIC_CALL_HANDLE(name) (::patchcall::StaticCallHandle<&__patchcall_sct_##name, &__patchcall_scc_##name>{})
#else
/* C: `func` must have the call's type (or be NULL): otherwise the array size is negative. */
#define patchcall_static_call_update(name, func)                                                            \
  patchcall_static_call_set(                                                                                \
      &__patchcall_scc_##name,                                                                              \
      ((void)sizeof(char[(__builtin_types_compatible_p(__typeof__(1 ? (func) : (func)),                     \
                                                       __typeof__(&__patchcall_sct_##name)) ||              \
                          __builtin_types_compatible_p(__typeof__(1 ? (func) : (func)), void*))             \
                             ? 1                                                                            \
                             : -1]),                                                                        \
       (const void*)(uintptr_t)(func)))
#endif
#define patchcall_static_call_update_return0(name) \
  patchcall_static_call_set(&__patchcall_scc_##name, (const void*)(uintptr_t)&patchcall_static_call_return0)
#define patchcall_static_call_query(name, target_out) patchcall_static_call_target(&__patchcall_scc_##name, (target_out))

#endif /* PATCHCALL_STATIC_CALL_AOT_H */
