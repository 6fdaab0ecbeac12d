/* patchcall — error codes and messages, shared by every C header (patchcall.h, the AOT
 * static keys and static calls). C11; also usable from C++. */
#ifndef PATCHCALL_ERROR_CODES_H
#define PATCHCALL_ERROR_CODES_H

#ifdef __cplusplus
extern "C" {
#endif

/* Values are those of patchcall::Error and never change. */
enum patchcall_error {
  PATCHCALL_OK = 0,
  PATCHCALL_E_NULL_TARGET = 1,        /* target address is null */
  PATCHCALL_E_MISALIGNED_TARGET = 2,  /* target not a multiple of options.target_alignment */
  PATCHCALL_E_OUT_OF_RANGE = 3,       /* target beyond rel32 reach and veneers are disabled */
  PATCHCALL_E_ARENA_EXHAUSTED = 4,    /* no room left in the code arena */
  PATCHCALL_E_REENTRANT_UPDATE = 5,   /* update from under the text mutex (e.g. a patch observer) */
  PATCHCALL_E_UNKNOWN_SITE = 6,       /* address is not a registered call site */
  PATCHCALL_E_UNKNOWN_KEY = 7,        /* key is invalid or was destroyed */
  PATCHCALL_E_SYNC_UNSUPPORTED = 8,   /* kernel refused membarrier SYNC_CORE (sync = MEMBARRIER) */
  PATCHCALL_E_MAP_FAILED = 9,         /* memfd / mmap of the arena failed */
  PATCHCALL_E_TIMEOUT = 10,           /* a bounded wait expired (the message names the thread) */
  PATCHCALL_E_NOT_REGISTERED = 11,    /* calling thread is not registered */
  PATCHCALL_E_INVALID_ARGUMENT = 12,  /* any other malformed argument (NULL handle, bad size, ...) */
  PATCHCALL_E_STILL_TARGETED = 13,    /* blob still targeted by a key / key still has sites */
  PATCHCALL_E_DOUBLE_RETIRE = 14,     /* blob was already retired */
  PATCHCALL_E_OUT_OF_MEMORY = 15,     /* an allocation failed */
  PATCHCALL_E_TOO_MANY_THREADS = 16,  /* options.max_threads reached */
  PATCHCALL_E_TOO_MANY_SITES = 17,    /* options.max_sites reached */
  PATCHCALL_E_EMIT_FAILED = 18,       /* asmjit emission failed (C++ jit/ only; no C function returns it) */
  PATCHCALL_E_WOULD_DEADLOCK = 19,    /* e.g. synchronize from inside a retire callback */
  PATCHCALL_E_RETIRED_TARGET = 20,    /* target lies in retired or freed arena memory */
  PATCHCALL_E_UNSUPPORTED_SITE = 21,  /* foreign site: not an E8 call (aarch64: BL) in executable, writable, mapped memory */
  PATCHCALL_E_FORKED_CHILD = 22,      /* process made without fork()'s atfork handlers (vfork, clone) */
  PATCHCALL_E_SYSTEM_ERROR = 23,      /* a system call failed (sigaction, mprotect, membarrier; message has errno) */
  PATCHCALL_E_TABLE_FULL = 24         /* a fixed-size table is full (AOT static keys and calls: see static_key.h) */
};
#define PATCHCALL_ERROR_COUNT 25

/* A short, static description of an error code ("unknown key"); "unknown error" for values
 * outside the enum. Never NULL. */
const char* patchcall_strerror(int code);

/* The message of the calling thread's most recent failed call ("" after a successful one),
 * as written by the C++ API: it names the key, address or thread involved. Valid until the
 * thread's next patchcall_* call. Never NULL. */
const char* patchcall_last_error_message(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PATCHCALL_ERROR_CODES_H */
