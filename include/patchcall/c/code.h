/* patchcall — C API: installing, naming and retiring code.
 * The whole C API: patchcall/patchcall.h. */
#ifndef PATCHCALL_C_CODE_H
#define PATCHCALL_C_CODE_H

#include "patchcall/c/keys.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- code ---------------------------------------------------------------------------------- */

typedef struct patchcall_blob {
  uint32_t id;  /* 0 is never a valid blob */
  void* code;   /* RX address of the first byte (64-byte aligned) */
  size_t size;
} patchcall_blob;

/* A call site inside code being installed: offset of its first byte (the E8, or the toggle
 * for PATCHCALL_SITE_TOGGLE). DIRECT needs (code + offset + 1) % 4 == 0; blobs are 64-byte
 * aligned, so (offset + 1) % 4 == 0. The rel32 bytes are written by patchcall. */
typedef struct patchcall_site_spec {
  uint32_t offset;
  patchcall_key key;
  int form; /* enum patchcall_site_form, not AUTO */
} patchcall_site_spec;

/* Copies position-independent `bytes` into the arena, binds each site to its key's current
 * target and makes the code visible to every core. Errors: INVALID_ARGUMENT (size 0, a
 * site that overlaps or is not an E8 / toggle, AUTO form), UNKNOWN_KEY, ARENA_EXHAUSTED,
 * TOO_MANY_SITES, OUT_OF_RANGE. */
int patchcall_code_install(patchcall_runtime* rt, const uint8_t* bytes, size_t size, const patchcall_site_spec* sites,
                           size_t site_count, patchcall_blob* out);

/* For code that must know its final address (rip-relative references out of the blob):
 * reserve, write the code for `rx` through `rw`, then commit (or abandon). */
typedef struct patchcall_reservation {
  uint8_t* rx;
  uint8_t* rw;
  size_t size;
} patchcall_reservation;
int patchcall_code_reserve(patchcall_runtime* rt, size_t size, patchcall_reservation* out);
int patchcall_code_commit(patchcall_runtime* rt, const patchcall_reservation* reservation,
                          const patchcall_site_spec* sites, size_t site_count, patchcall_blob* out);
/* Frees an uncommitted reservation: exactly what patchcall_code_reserve returned (only a
 * range outside the arena is detected: INVALID_ARGUMENT). */
int patchcall_code_abandon(patchcall_runtime* rt, const patchcall_reservation* reservation);

/* Names and frame layout of installed code (patchcall::CodeInfo, code_info.h): perf, jitdump
 * and gdb show the names; a declared frame layout is checked against the bytes and its
 * .eh_frame registered with the unwinder until the blob is freed. */
enum patchcall_frame_layout {
  PATCHCALL_FRAME_NONE = 0,
  PATCHCALL_FRAME_POINTER = 1,                /* push rbp; mov rbp, rsp ... leave; ret */
  PATCHCALL_FRAME_POINTER_ANY_EPILOGUE = 2    /* the prologue; any epilogues inside */
};
typedef struct patchcall_named_range {
  uint32_t offset; /* from the blob's first byte */
  uint32_t size;
  const char* name;
} patchcall_named_range;
typedef struct patchcall_code_info {
  size_t struct_size;                   /* set by patchcall_code_info_init */
  const char* name;                     /* NULL or "": unnamed */
  const patchcall_named_range* ranges;  /* may be NULL when range_count is 0 */
  size_t range_count;
  int frame_layout;                     /* enum patchcall_frame_layout */
} patchcall_code_info;
void patchcall_code_info_init(patchcall_code_info* info);
/* As patchcall_code_install / _commit with `info` (not NULL). Errors as those, plus
 * INVALID_ARGUMENT: struct_size unknown, a range empty, overlapping or past the end, bytes
 * that do not follow the declared frame layout (nothing is installed). */
int patchcall_code_install_with(patchcall_runtime* rt, const uint8_t* bytes, size_t size, const patchcall_site_spec* sites,
                                size_t site_count, const patchcall_code_info* info, patchcall_blob* out);
int patchcall_code_commit_with(patchcall_runtime* rt, const patchcall_reservation* reservation,
                               const patchcall_site_spec* sites, size_t site_count, const patchcall_code_info* info,
                               patchcall_blob* out);

/* Frees the blob after a grace period once no key targets it and no registered thread's
 * stack holds an address inside it (freed code is filled with int3). Errors:
 * STILL_TARGETED (update the key first), DOUBLE_RETIRE, INVALID_ARGUMENT (not a blob). */
int patchcall_blob_retire(patchcall_runtime* rt, patchcall_blob blob);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PATCHCALL_C_CODE_H */
