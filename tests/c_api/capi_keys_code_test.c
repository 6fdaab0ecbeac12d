/* C API: keys, trampolines, batches, installing code with sites of every form, reservations,
 * site introspection, foreign (compiled C) call sites, retiring blobs and callbacks. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdatomic.h>

#include "capi_check.h"

/* A compiled-C function whose call is a foreign site (x86-64: a 5-byte E8, aarch64: a BL):
 * capi_foreign_caller calls capi_foreign_default through the instruction at capi_foreign_call
 * (the host's assembly: capi_code.h). */
__attribute__((noinline, used)) int capi_foreign_default(void) { return 10; }
int capi_foreign_caller(void);
extern char capi_foreign_call[];
__asm__(CAPI_FOREIGN_CALLER_ASM);

static void keys_update_target_and_trampoline(void) {
  patchcall_runtime* rt = capi_new_runtime();
  patchcall_key key = 0;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "capi.key", &key), PATCHCALL_OK);
  CHECK(key != 0);
  const void* tramp = NULL;
  CHECK_CODE(patchcall_key_trampoline(rt, key, &tramp), PATCHCALL_OK);
  CHECK(tramp != NULL);
  CHECK(capi_as_fn(tramp)() == 1);
  const void* target = NULL;
  CHECK_CODE(patchcall_key_target(rt, key, &target), PATCHCALL_OK);
  CHECK(target == PATCHCALL_FN(capi_target_one));

  const void* old = NULL;
  CHECK_CODE(patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_two), &old), PATCHCALL_OK);
  CHECK(old == PATCHCALL_FN(capi_target_one));
  CHECK(capi_as_fn(tramp)() == 2);
  CHECK_CODE(patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_three), NULL), PATCHCALL_OK);
  CHECK(capi_as_fn(tramp)() == 3);
  CHECK_CODE(patchcall_key_target(rt, key, &target), PATCHCALL_OK);
  CHECK(target == PATCHCALL_FN(capi_target_three));

  patchcall_key unnamed = 0;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_two), NULL, &unnamed), PATCHCALL_OK);
  CHECK(unnamed != 0 && unnamed != key);
  patchcall_stats s;
  CHECK_CODE(patchcall_stats_get(rt, &s), PATCHCALL_OK);
  CHECK(s.keys == 2 && s.updates == 2);

  CHECK_CODE(patchcall_key_destroy(rt, unnamed), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_target(rt, unnamed, &target), PATCHCALL_E_UNKNOWN_KEY);
  CHECK_CODE(patchcall_key_trampoline(rt, unnamed, &tramp), PATCHCALL_E_UNKNOWN_KEY);
  CHECK_CODE(patchcall_key_destroy(rt, unnamed), PATCHCALL_E_UNKNOWN_KEY);
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_two), NULL, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_key_target(rt, key, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_key_trampoline(NULL, key, &tramp), PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_runtime_destroy(rt);
}

static void batch_updates_share_one_sync(void) {
  patchcall_runtime* rt = capi_new_runtime();
  patchcall_key a, b;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "a", &a), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "b", &b), PATCHCALL_OK);
  patchcall_blob ba = capi_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, a, PATCHCALL_SITE_DIRECT);
  patchcall_blob bb = capi_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, b, PATCHCALL_SITE_DIRECT);
  patchcall_stats before, after;
  CHECK_CODE(patchcall_stats_get(rt, &before), PATCHCALL_OK);
  patchcall_update_entry batch[2] = {{a, PATCHCALL_FN(capi_target_two)}, {b, PATCHCALL_FN(capi_target_three)}};
  CHECK_CODE(patchcall_key_update_batch(rt, batch, 2), PATCHCALL_OK);
  CHECK_CODE(patchcall_stats_get(rt, &after), PATCHCALL_OK);
  CHECK(after.syncs - before.syncs == 1);  /* Direct sites and trampolines: one sync per batch */
  CHECK(after.updates - before.updates == 2);
  CHECK(after.site_writes - before.site_writes == 4);  /* two sites, two trampolines */
  CHECK(capi_as_fn(ba.code)() == 2);
  CHECK(capi_as_fn(bb.code)() == 3);

  /* All or nothing: a bad entry leaves every key as it was. */
  patchcall_update_entry bad[2] = {{a, PATCHCALL_FN(capi_target_one)}, {9999, PATCHCALL_FN(capi_target_one)}};
  CHECK_CODE(patchcall_key_update_batch(rt, bad, 2), PATCHCALL_E_UNKNOWN_KEY);
  CHECK(capi_as_fn(ba.code)() == 2);
  patchcall_update_entry twice[2] = {{a, PATCHCALL_FN(capi_target_one)}, {a, PATCHCALL_FN(capi_target_three)}};
  CHECK_CODE(patchcall_key_update_batch(rt, twice, 2), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("twice");
  CHECK(capi_as_fn(ba.code)() == 2);
  CHECK_CODE(patchcall_key_update_batch(rt, NULL, 0), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update_batch(rt, NULL, 1), PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_runtime_destroy(rt);
}

/* x86-64: a Direct, a Breakpoint and a Toggle site. aarch64 has Direct sites only: installing
 * the other two forms is refused with INVALID_ARGUMENT and leaves nothing behind. */
static void installed_sites_of_every_form_follow_their_key(void) {
  patchcall_runtime* rt = capi_new_runtime();
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "forms", &key), PATCHCALL_OK);
  patchcall_blob direct = capi_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, key, PATCHCALL_SITE_DIRECT);
  patchcall_blob bp = {0, NULL, 0}, toggle = {0, NULL, 0};
  if (CAPI_HAS_X86_FORMS) {
    bp = capi_install(rt, capi_unaligned_code, CAPI_UNALIGNED_CODE_SIZE, CAPI_UNALIGNED_SITE_OFFSET, key, PATCHCALL_SITE_BREAKPOINT);
    toggle = capi_install(rt, capi_toggle_code, CAPI_TOGGLE_CODE_SIZE, CAPI_TOGGLE_SITE_OFFSET, key, PATCHCALL_SITE_TOGGLE);
    CHECK(bp.id != 0 && toggle.id != 0);
  } else {
    /* Room after the BL for either form's bytes: refused for its form, not for the end. */
    uint8_t code[64];
    memset(code, CAPI_FILL_BYTE, sizeof code);
    memcpy(code, capi_direct_code, CAPI_DIRECT_CODE_SIZE);
    const int refused[2] = {PATCHCALL_SITE_BREAKPOINT, PATCHCALL_SITE_TOGGLE};
    for (int i = 0; i < 2; ++i) {
      patchcall_site_spec spec = {CAPI_DIRECT_SITE_OFFSET, key, refused[i]};
      patchcall_blob none = {1, (void*)1, 1};
      CHECK_CODE(patchcall_code_install(rt, code, sizeof code, &spec, 1, &none), PATCHCALL_E_INVALID_ARGUMENT);
      CHECK_MESSAGE_HAS(CAPI_UNSUPPORTED_FORM_TEXT);
      CHECK(none.id == 0 && none.code == NULL);
    }
  }
  const int forms = CAPI_HAS_X86_FORMS ? 3 : 1;
  CHECK(direct.id != 0);
  CHECK(((uintptr_t)direct.code & 63) == 0);
  CHECK(direct.size == CAPI_DIRECT_CODE_SIZE);
  const patchcall_blob* blobs[3] = {&direct, &bp, &toggle};
  for (int i = 0; i < forms; ++i) CHECK(capi_as_fn(blobs[i]->code)() == 1);

  const void* targets[4] = {PATCHCALL_FN(capi_target_two), PATCHCALL_FN(capi_target_three),
                            PATCHCALL_FN(capi_target_one), PATCHCALL_FN(capi_target_two)};
  for (int u = 0; u < 4; ++u) {
    CHECK_CODE(patchcall_key_update(rt, key, targets[u], NULL), PATCHCALL_OK);
    int want = capi_as_fn(targets[u])();
    for (int i = 0; i < forms; ++i) CHECK(capi_as_fn(blobs[i]->code)() == want);
  }

  patchcall_site_info info;
  CHECK_CODE(patchcall_site_info_get(rt, (const uint8_t*)direct.code + CAPI_DIRECT_SITE_OFFSET, &info), PATCHCALL_OK);
  CHECK(info.key == key && info.form == PATCHCALL_SITE_DIRECT && info.foreign == 0);
  CHECK(info.target == PATCHCALL_FN(capi_target_two));
  if (CAPI_HAS_X86_FORMS) {
    CHECK_CODE(patchcall_site_info_get(rt, (const uint8_t*)bp.code + CAPI_UNALIGNED_SITE_OFFSET, &info), PATCHCALL_OK);
    CHECK(info.form == PATCHCALL_SITE_BREAKPOINT && info.target == PATCHCALL_FN(capi_target_two));
    CHECK_CODE(patchcall_site_info_get(rt, (const uint8_t*)toggle.code + CAPI_TOGGLE_SITE_OFFSET, &info), PATCHCALL_OK);
    CHECK(info.form == PATCHCALL_SITE_TOGGLE && info.target == PATCHCALL_FN(capi_target_two));
  }
  CHECK_CODE(patchcall_site_info_get(rt, (const uint8_t*)direct.code + 1, &info), PATCHCALL_E_UNKNOWN_SITE);
  CHECK_CODE(patchcall_site_info_get(rt, NULL, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_stats s;
  CHECK_CODE(patchcall_stats_get(rt, &s), PATCHCALL_OK);
  CHECK(s.sites == (size_t)forms && s.blobs == (size_t)forms);

  /* A key with bound sites cannot be destroyed. */
  CHECK_CODE(patchcall_key_destroy(rt, key), PATCHCALL_E_STILL_TARGETED);
  patchcall_runtime_destroy(rt);
}

static void malformed_installs_are_rejected(void) {
  patchcall_runtime* rt = capi_new_runtime();
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), NULL, &key), PATCHCALL_OK);
  patchcall_blob blob;
  if (CAPI_HAS_X86_FORMS) { /* an E8 whose rel32 is unaligned */
    patchcall_site_spec unaligned = {CAPI_UNALIGNED_SITE_OFFSET, key, PATCHCALL_SITE_DIRECT};
    CHECK_CODE(patchcall_code_install(rt, capi_unaligned_code, CAPI_UNALIGNED_CODE_SIZE, &unaligned, 1, &blob),
               PATCHCALL_E_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("unaligned rel32");
  } else { /* a BL 2 bytes off the word grid (the code copied to offset 2) */
    uint8_t shifted[CAPI_DIRECT_CODE_SIZE + 4];
    memset(shifted, CAPI_FILL_BYTE, sizeof shifted);
    memcpy(shifted + 2, capi_direct_code, CAPI_DIRECT_CODE_SIZE);
    patchcall_site_spec unaligned = {CAPI_DIRECT_SITE_OFFSET + 2, key, PATCHCALL_SITE_DIRECT};
    CHECK_CODE(patchcall_code_install(rt, shifted, sizeof shifted, &unaligned, 1, &blob), PATCHCALL_E_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("has an unaligned bl instruction");
  }
  CHECK(blob.id == 0 && blob.code == NULL);
  /* The code's first instruction is no call (x86-64: any E8 is a Breakpoint site; aarch64 has
   * Direct sites only). */
  patchcall_site_spec notCall = {0, key, CAPI_HAS_X86_FORMS ? PATCHCALL_SITE_BREAKPOINT : PATCHCALL_SITE_DIRECT};
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, &notCall, 1, &blob),
             PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("is not a " CAPI_CALL_NAME);
  patchcall_site_spec autoForm = {CAPI_DIRECT_SITE_OFFSET, key, PATCHCALL_SITE_AUTO};
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, &autoForm, 1, &blob),
             PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_site_spec badForm = {CAPI_DIRECT_SITE_OFFSET, key, 9};
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, &badForm, 1, &blob),
             PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_site_spec past = {CAPI_DIRECT_CODE_SIZE - 2, key, CAPI_HAS_X86_FORMS ? PATCHCALL_SITE_BREAKPOINT : PATCHCALL_SITE_DIRECT};
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, &past, 1, &blob),
             PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_site_spec unknownKey = {CAPI_DIRECT_SITE_OFFSET, 4711, PATCHCALL_SITE_DIRECT};
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, &unknownKey, 1, &blob),
             PATCHCALL_E_UNKNOWN_KEY);
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, 0, NULL, 0, &blob), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_code_install(rt, NULL, 4, NULL, 0, &blob), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, NULL, 1, &blob), PATCHCALL_E_INVALID_ARGUMENT);
  /* Nothing leaked into the registry; code without sites is fine. */
  patchcall_stats s;
  CHECK_CODE(patchcall_stats_get(rt, &s), PATCHCALL_OK);
  CHECK(s.sites == 0 && s.blobs == 0);
  CHECK_CODE(patchcall_code_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, NULL, 0, &blob), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

static void reserve_commit_and_abandon(void) {
  patchcall_runtime* rt = capi_new_runtime();
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_three), NULL, &key), PATCHCALL_OK);
  patchcall_arena_info a0, a1, a2;
  CHECK_CODE(patchcall_arena_info_get(rt, &a0), PATCHCALL_OK);
  patchcall_reservation r;
  CHECK_CODE(patchcall_code_reserve(rt, CAPI_DIRECT_CODE_SIZE, &r), PATCHCALL_OK);
  CHECK(r.rx != NULL && r.rw != NULL && r.rx != r.rw && r.size == CAPI_DIRECT_CODE_SIZE);
  memcpy(r.rw, capi_direct_code, CAPI_DIRECT_CODE_SIZE);
  patchcall_site_spec site = {CAPI_DIRECT_SITE_OFFSET, key, PATCHCALL_SITE_DIRECT};
  patchcall_blob blob;
  CHECK_CODE(patchcall_code_commit(rt, &r, &site, 1, &blob), PATCHCALL_OK);
  CHECK(blob.code == r.rx);
  CHECK(capi_as_fn(blob.code)() == 3);

  patchcall_reservation spare;
  CHECK_CODE(patchcall_code_reserve(rt, 256, &spare), PATCHCALL_OK);
  CHECK_CODE(patchcall_arena_info_get(rt, &a1), PATCHCALL_OK);
  CHECK_CODE(patchcall_code_abandon(rt, &spare), PATCHCALL_OK);
  CHECK_CODE(patchcall_arena_info_get(rt, &a2), PATCHCALL_OK);
  CHECK(a1.used > a0.used && a2.used < a1.used);

  patchcall_reservation bogus = {(uint8_t*)&capi_failures, (uint8_t*)&capi_failures, 8};
  CHECK_CODE(patchcall_code_commit(rt, &bogus, NULL, 0, &blob), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_code_abandon(rt, &bogus), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_code_reserve(rt, 0, &r), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_code_commit(rt, NULL, NULL, 0, &blob), PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_runtime_destroy(rt);
}

static void foreign_call_sites_in_compiled_c(void) {
  patchcall_runtime* rt = capi_new_runtime();
  CHECK(capi_foreign_caller() == 10);
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_two), "foreign", &key), PATCHCALL_OK);
  CHECK_CODE(patchcall_foreign_site_register(rt, capi_foreign_call, key), PATCHCALL_OK);
  CHECK(capi_foreign_caller() == 2); /* registering points the call at the key's target */
  patchcall_site_info info;
  CHECK_CODE(patchcall_site_info_get(rt, capi_foreign_call, &info), PATCHCALL_OK);
  CHECK(info.foreign == 1 && info.form == CAPI_FOREIGN_SITE_FORM && info.key == key);
  CHECK_CODE(patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_three), NULL), PATCHCALL_OK);
  CHECK(capi_foreign_caller() == 3);
  CHECK_CODE(patchcall_foreign_site_register(rt, capi_foreign_call, key), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("already registered");
  if (!CAPI_INSTRUCTIONS_ALIGNED) { /* the caller's first bytes overlap the registered call's 5 bytes */
    CHECK_CODE(patchcall_foreign_site_register(rt, (void*)(uintptr_t)capi_foreign_caller, key), PATCHCALL_E_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("overlaps");
  } else { /* aligned words never overlap; an address inside the BL starts no instruction */
    CHECK_CODE(patchcall_foreign_site_register(rt, capi_foreign_call + 2, key), PATCHCALL_E_INVALID_ARGUMENT);
    CHECK_MESSAGE_HAS("-byte aligned");
    CHECK(capi_foreign_caller() == 3);
  }
  CHECK_CODE(patchcall_foreign_site_register(rt, NULL, key), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_foreign_site_register(rt, capi_foreign_call, 5555), PATCHCALL_E_UNKNOWN_KEY);

  CHECK_CODE(patchcall_foreign_site_unregister(rt, capi_foreign_call), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_one), NULL), PATCHCALL_OK);
  CHECK(capi_foreign_caller() == 3); /* unregistered: no longer follows the key */
  CHECK_CODE(patchcall_foreign_site_unregister(rt, capi_foreign_call), PATCHCALL_E_UNKNOWN_SITE);
  CHECK_CODE(patchcall_foreign_site_register(rt, (void*)(uintptr_t)capi_foreign_caller, key), PATCHCALL_E_UNSUPPORTED_SITE);
  CHECK_MESSAGE_HAS("is not a " CAPI_CALL_NAME);
  /* Put the original call back for any later test. */
  patchcall_key restore;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_foreign_default), NULL, &restore), PATCHCALL_OK);
  CHECK_CODE(patchcall_foreign_site_register(rt, capi_foreign_call, restore), PATCHCALL_OK);
  CHECK_CODE(patchcall_foreign_site_unregister(rt, capi_foreign_call), PATCHCALL_OK);
  CHECK(capi_foreign_caller() == 10);
  patchcall_runtime_destroy(rt);
}

static atomic_int callbacks_ran;
static void note_callback(void* user) { atomic_fetch_add(&callbacks_ran, *(const int*)user); }

static void retired_blobs_are_freed_and_callbacks_run(void) {
  patchcall_runtime* rt = capi_new_runtime();
  patchcall_key key;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), NULL, &key), PATCHCALL_OK);
  patchcall_blob blob = capi_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, key, PATCHCALL_SITE_DIRECT);
  patchcall_key other;
  CHECK_CODE(patchcall_key_create(rt, blob.code, "points-into-blob", &other), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, blob), PATCHCALL_E_STILL_TARGETED);
  CHECK_MESSAGE_HAS("points-into-blob");
  CHECK_CODE(patchcall_key_update(rt, other, PATCHCALL_FN(capi_target_two), NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, blob), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, blob), PATCHCALL_E_DOUBLE_RETIRE);
  CHECK_CODE(patchcall_key_update(rt, other, blob.code, NULL), PATCHCALL_E_RETIRED_TARGET);

  static const int one = 1, ten = 10;
  CHECK_CODE(patchcall_retire_callback(rt, note_callback, (void*)&one), PATCHCALL_OK);
  CHECK_CODE(patchcall_retire_callback(rt, note_callback, (void*)&ten), PATCHCALL_OK);
  CHECK_CODE(patchcall_retire_callback(rt, NULL, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_CODE(patchcall_barrier(rt, 5000), PATCHCALL_OK);
  CHECK(atomic_load(&callbacks_ran) == 11);
  patchcall_stats s;
  CHECK_CODE(patchcall_stats_get(rt, &s), PATCHCALL_OK);
  CHECK(s.blobs_retired == 1 && s.blobs_freed == 1);
  CHECK(s.callbacks_run == 2);
  CHECK(*(const uint8_t*)blob.code == CAPI_FILL_BYTE); /* freed code is filled (x86: int3, A64: udf) */
  CHECK(s.sites == 0);                       /* the freed blob's site is unregistered */
  CHECK_CODE(patchcall_key_destroy(rt, key), PATCHCALL_OK);
  patchcall_blob forged = {9999, blob.code, blob.size};
  CHECK_CODE(patchcall_blob_retire(rt, forged), PATCHCALL_E_INVALID_ARGUMENT);
  patchcall_runtime_destroy(rt);
}


/* Strict updates from C: a strict update of a key with a toggle site runs a grace period after
 * the flip (stats.grace_periods moves), a plain one does not; a key created strict makes every
 * update strict; options must come from their _init functions. aarch64 has no toggle sites:
 * its keys' Direct sites never start the old target once an update returns, so a strict
 * update there runs no grace period either (and the options are checked the same way). */
#define CAPI_STRICT_FORM (CAPI_HAS_X86_FORMS ? PATCHCALL_SITE_TOGGLE : PATCHCALL_SITE_DIRECT)
/* A strict update's grace periods: one at least after a toggle's flip, none for Direct sites. */
#define CHECK_STRICT_GRACE(before, after) \
  CHECK(CAPI_HAS_X86_FORMS ? (after).grace_periods > (before).grace_periods : (after).grace_periods == (before).grace_periods)
static void strict_updates_wait_for_a_grace_period_after_the_flip(void) {
  patchcall_runtime* rt = capi_new_runtime();
  patchcall_key plain = 0, strict = 0;
  patchcall_key_options ko;
  patchcall_key_options_init(&ko);
  CHECK(ko.struct_size == sizeof ko && ko.strict_updates == 0);
  CHECK_CODE(patchcall_key_create_with(rt, PATCHCALL_FN(capi_target_one), "plain", &ko, &plain), PATCHCALL_OK);
  ko.strict_updates = 1;
  CHECK_CODE(patchcall_key_create_with(rt, PATCHCALL_FN(capi_target_one), "strict", &ko, &strict), PATCHCALL_OK);
  patchcall_blob a = capi_install(rt, capi_toggle_code, CAPI_TOGGLE_CODE_SIZE, CAPI_TOGGLE_SITE_OFFSET, plain, CAPI_STRICT_FORM);
  patchcall_blob b = capi_install(rt, capi_toggle_code, CAPI_TOGGLE_CODE_SIZE, CAPI_TOGGLE_SITE_OFFSET, strict, CAPI_STRICT_FORM);
  CHECK(a.id != 0 && b.id != 0);

  patchcall_stats before, after;
  CHECK_CODE(patchcall_stats_get(rt, &before), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update(rt, plain, PATCHCALL_FN(capi_target_two), NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_stats_get(rt, &after), PATCHCALL_OK);
  CHECK(after.grace_periods == before.grace_periods);

  patchcall_update_options uo;
  patchcall_update_options_init(&uo);
  CHECK(uo.struct_size == sizeof uo && uo.strict == 0 && uo.deadline_ms < 0);
  uo.strict = 1;
  uo.deadline_ms = 2000;
  const void* old = NULL;
  before = after;
  CHECK_CODE(patchcall_key_update_with(rt, plain, PATCHCALL_FN(capi_target_three), &uo, &old), PATCHCALL_OK);
  CHECK(old == PATCHCALL_FN(capi_target_two));
  CHECK(capi_as_fn(a.code)() == 3);
  CHECK_CODE(patchcall_stats_get(rt, &after), PATCHCALL_OK);
  CHECK_STRICT_GRACE(before, after);

  before = after;  /* the key's own flag: a plain call is strict */
  CHECK_CODE(patchcall_key_update(rt, strict, PATCHCALL_FN(capi_target_two), NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_stats_get(rt, &after), PATCHCALL_OK);
  CHECK_STRICT_GRACE(before, after);
  CHECK(capi_as_fn(b.code)() == 2);

  patchcall_update_entry batch[2] = {{plain, PATCHCALL_FN(capi_target_one)}, {strict, PATCHCALL_FN(capi_target_one)}};
  CHECK_CODE(patchcall_key_update_batch_with(rt, batch, 2, &uo), PATCHCALL_OK);
  CHECK(capi_as_fn(a.code)() == 1 && capi_as_fn(b.code)() == 1);

  /* Bad options: refused before anything is written. */
  CHECK_CODE(patchcall_key_update_with(rt, plain, PATCHCALL_FN(capi_target_two), NULL, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  uo.struct_size = sizeof uo + 8;
  CHECK_CODE(patchcall_key_update_with(rt, plain, PATCHCALL_FN(capi_target_two), &uo, NULL), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK_MESSAGE_HAS("struct_size");
  CHECK_CODE(patchcall_key_update_batch_with(rt, batch, 2, &uo), PATCHCALL_E_INVALID_ARGUMENT);
  ko.struct_size = 0;
  patchcall_key none = 0;
  CHECK_CODE(patchcall_key_create_with(rt, PATCHCALL_FN(capi_target_one), "bad", &ko, &none), PATCHCALL_E_INVALID_ARGUMENT);
  CHECK(none == 0);
  CHECK(capi_as_fn(a.code)() == 1);
  CHECK_CODE(patchcall_key_update(rt, plain, PATCHCALL_FN(capi_target_two), NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update(rt, strict, PATCHCALL_FN(capi_target_two), NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, a), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, b), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

/* Deferred updates: the site calls the new target at once on this thread, no sync until
 * patchcall_publish (one), and a struct_size from before the field keeps updates immediate.
 * No reclaimer thread: it would publish a deferred update nobody published within
 * Options::publishDelay (1 ms), which a slow run (qemu) can let pass before the check. */
static void deferred_updates_and_publish(void) {
  patchcall_options o;
  patchcall_options_init(&o);
  o.arena_size = (size_t)4 << 20;
  o.background_reclaimer = 0;
  patchcall_runtime* rt = NULL;
  CHECK_CODE(patchcall_runtime_create(&o, &rt), PATCHCALL_OK);
  patchcall_key key = 0;
  CHECK_CODE(patchcall_key_create(rt, PATCHCALL_FN(capi_target_one), "deferred", &key), PATCHCALL_OK);
  patchcall_blob a = capi_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, key, PATCHCALL_SITE_DIRECT);
  CHECK(a.id != 0);
  patchcall_update_options uo;
  patchcall_update_options_init(&uo);
  CHECK(uo.deferred == 0);
  uo.deferred = 1;
  patchcall_stats before, after;
  CHECK_CODE(patchcall_stats_get(rt, &before), PATCHCALL_OK);
  CHECK_CODE(patchcall_key_update_with(rt, key, PATCHCALL_FN(capi_target_two), &uo, NULL), PATCHCALL_OK);
  CHECK(capi_as_fn(a.code)() == 2);
  CHECK_CODE(patchcall_stats_get(rt, &after), PATCHCALL_OK);
  CHECK(after.syncs == before.syncs);
  CHECK_CODE(patchcall_publish(rt, -1), PATCHCALL_OK);
  CHECK_CODE(patchcall_stats_get(rt, &after), PATCHCALL_OK);
  CHECK(after.syncs == before.syncs + 1);
  CHECK_CODE(patchcall_publish(NULL, -1), PATCHCALL_E_INVALID_ARGUMENT);
  /* An older caller's struct ends before `deferred`: its update is immediate. */
  uo.struct_size = offsetof(patchcall_update_options, deferred);
  before = after;
  CHECK_CODE(patchcall_key_update_with(rt, key, PATCHCALL_FN(capi_target_three), &uo, NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_stats_get(rt, &after), PATCHCALL_OK);
  CHECK(after.syncs == before.syncs + 1);
  CHECK(capi_as_fn(a.code)() == 3);
  CHECK_CODE(patchcall_key_update(rt, key, PATCHCALL_FN(capi_target_one), NULL), PATCHCALL_OK);
  CHECK_CODE(patchcall_blob_retire(rt, a), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

/* The shared targets and a key whose NULL target is the no-op one (static_call_cond). */
static void noop_and_return_zero_targets(void) {
  patchcall_runtime* rt = capi_new_runtime();
  CHECK(patchcall_noop_target(NULL) == NULL && patchcall_return_zero_target(NULL) == NULL);
  const void* noop = patchcall_noop_target(rt);
  const void* zero = patchcall_return_zero_target(rt);
  CHECK(noop != NULL && zero != NULL && noop != zero);
  patchcall_key_options ko;
  patchcall_key_options_init(&ko);
  CHECK(ko.null_is_noop == 0);
  patchcall_key plain = 0, cond = 0;
  CHECK_CODE(patchcall_key_create_with(rt, NULL, "plain", &ko, &plain), PATCHCALL_E_NULL_TARGET);
  ko.null_is_noop = 1;
  CHECK_CODE(patchcall_key_create_with(rt, NULL, "cond", &ko, &cond), PATCHCALL_OK);
  patchcall_blob a = capi_install(rt, capi_direct_code, CAPI_DIRECT_CODE_SIZE, CAPI_DIRECT_SITE_OFFSET, cond, PATCHCALL_SITE_DIRECT);
  CHECK(a.id != 0);
  capi_as_fn(a.code)(); /* calls the no-op target: returns */
  CHECK_CODE(patchcall_key_update(rt, cond, zero, NULL), PATCHCALL_OK);
  CHECK(capi_as_fn(a.code)() == 0);
  CHECK_CODE(patchcall_key_update(rt, cond, PATCHCALL_FN(capi_target_two), NULL), PATCHCALL_OK);
  CHECK(capi_as_fn(a.code)() == 2);
  const void* old = NULL;
  CHECK_CODE(patchcall_key_update(rt, cond, NULL, &old), PATCHCALL_OK);
  CHECK(old == PATCHCALL_FN(capi_target_two));
  CHECK_CODE(patchcall_blob_retire(rt, a), PATCHCALL_OK);
  patchcall_runtime_destroy(rt);
}

int main(void) {
  RUN(keys_update_target_and_trampoline);
  RUN(batch_updates_share_one_sync);
  RUN(deferred_updates_and_publish);
  RUN(noop_and_return_zero_targets);
  RUN(installed_sites_of_every_form_follow_their_key);
  RUN(malformed_installs_are_rejected);
  RUN(reserve_commit_and_abandon);
  RUN(foreign_call_sites_in_compiled_c);
  RUN(retired_blobs_are_freed_and_callbacks_run);
  RUN(strict_updates_wait_for_a_grace_period_after_the_flip);
  return capi_finish("CApi_KeysAndCode");
}
