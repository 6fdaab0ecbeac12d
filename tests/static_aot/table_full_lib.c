/* A library with more static keys than the process-wide table holds (PATCHCALL_STATIC_KEYS_MAX):
 * AOT_TF_FILLER_KEYS anonymous 16-byte key objects (disabled, compiled FALSE) in its
 * __patchcall_keys section, stamped out by the assembler, plus one named key, one branch on
 * it and one static call. Its registration must fail with TABLE_FULL without failing the
 * dlopen; table_full_main.c checks what that means. */
#include "patchcall/static_call_aot.h"
#include "patchcall/static_key.h"

#define AOT_TF_FILLER_KEYS 65600
#define AOT_STR_(x) #x
#define AOT_STR(x) AOT_STR_(x)

__asm__(".pushsection __patchcall_keys, \"aw\", @progbits\n\t"
        ".balign 16\n\t"
        ".rept " AOT_STR(AOT_TF_FILLER_KEYS) "\n\t"
        ".long 0, 0\n\t.quad 0\n\t" /* enabled, initial, reserved */
        ".endr\n\t"
        ".popsection");

PATCHCALL_EXTERN_C_BEGIN_
long tf_lib_target(long x) { return x + 1; }
long tf_lib_other_target(long x) { return x + 2; }
PATCHCALL_EXTERN_C_END_

PATCHCALL_DEFINE_STATIC_KEY_FALSE(tf_named_key);
PATCHCALL_DEFINE_STATIC_CALL(tf_lib_call, tf_lib_target);

PATCHCALL_EXTERN_C_BEGIN_
int tf_lib_filler_keys(void) { return AOT_TF_FILLER_KEYS; }
struct patchcall_static_key* tf_lib_key(void) { return &tf_named_key.key; }
struct patchcall_static_call* tf_lib_call_object(void) { return &PATCHCALL_STATIC_CALL_OBJECT_(tf_lib_call); }
int tf_lib_branch(void) { return PATCHCALL_STATIC_BRANCH_UNLIKELY(&tf_named_key) ? 1 : 0; }
long tf_lib_call_it(long x) { return PATCHCALL_STATIC_CALL(tf_lib_call)(x); }
int tf_lib_enable(void) { return patchcall_static_key_enable(&tf_named_key); }
int tf_lib_retarget(void) { return patchcall_static_call_update(tf_lib_call, tf_lib_other_target); }
PATCHCALL_EXTERN_C_END_
