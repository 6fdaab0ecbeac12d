/* patchcall — C API: sites, introspection and foreign sites.
 * The whole C API: patchcall/patchcall.h. */
#ifndef PATCHCALL_C_SITES_H
#define PATCHCALL_C_SITES_H

#include "patchcall/c/code.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- sites ------------------------------------------------------------------------------- */

typedef struct patchcall_site_info {
  const void* address;
  patchcall_key key;
  int form;
  const void* target;  /* what the site's active call decodes to now */
  int foreign;
} patchcall_site_info;

/* ---- introspection: every key, site and blob (Runtime::keys, sites, blobs) --------------------
 * Each walks a snapshot taken under the text mutex and calls `visit` outside it, in id order;
 * a nonzero return from `visit` stops the walk (and is returned). The pointers inside an info
 * are valid during that call only. Errors: INVALID_ARGUMENT (NULL), OUT_OF_MEMORY. */
typedef struct patchcall_key_info {
  patchcall_key key;
  const char* name;  /* "" when unnamed */
  const void* target;
  const void* trampoline;
  size_t sites;
} patchcall_key_info;
typedef struct patchcall_blob_info {
  patchcall_blob blob;
  const char* name;                     /* "" when unnamed */
  const patchcall_named_range* ranges;  /* range_count entries, by offset */
  size_t range_count;
  int frame_layout;                     /* enum patchcall_frame_layout */
  int retired;                          /* nonzero: retired, not yet freed */
  size_t sites;
} patchcall_blob_info;
int patchcall_keys_each(const patchcall_runtime* rt, int (*visit)(void* user, const patchcall_key_info* key), void* user);
int patchcall_sites_each(const patchcall_runtime* rt, int (*visit)(void* user, const patchcall_site_info* site), void* user);
int patchcall_blobs_each(const patchcall_runtime* rt, int (*visit)(void* user, const patchcall_blob_info* blob), void* user);

/* Error: UNKNOWN_SITE. */
int patchcall_site_info_get(const patchcall_runtime* rt, const void* address, patchcall_site_info* out);
/* An existing call in code patchcall did not emit (e.g. compiled C): x86-64 a 5-byte E8 call,
 * patched with the breakpoint protocol; aarch64 a 4-byte aligned BL, patched by one aligned
 * store (a Direct site). Written through /proc/self/mem, to the key's current target (the key
 * is not updated). What is checked: see Runtime::registerForeignSite. Errors: UNSUPPORTED_SITE
 * (not in an executable mapping, not E8 / BL, not writable through /proc/self/mem),
 * UNKNOWN_KEY, INVALID_ARGUMENT (NULL, misaligned on aarch64, inside the arena, already
 * registered, overlapping a registered foreign site), OUT_OF_RANGE. */
int patchcall_foreign_site_register(patchcall_runtime* rt, void* call_instruction, patchcall_key key);
/* Error: UNKNOWN_SITE. The instruction keeps its current target. */
int patchcall_foreign_site_unregister(patchcall_runtime* rt, void* call_instruction);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* PATCHCALL_C_SITES_H */
