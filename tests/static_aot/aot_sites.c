/* tests/static_aot: the failure harness and the check of AOT sites (aot_sites.h); the ISA's
 * decoder is static_aot/<isa>/aot_decode.c. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "aot_sites.h"

#include <link.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

long aot_failures = 0;

void aot_failf(const char* format, ...) {
  long n = __atomic_add_fetch(&aot_failures, 1, __ATOMIC_RELAXED);
  if (n > 40) {
    if (n == 41) fprintf(stderr, "FAIL: (more failures: only counted from here on)\n");
    return;
  }
  char buffer[1024];
  va_list args;
  va_start(args, format);
  vsnprintf(buffer, sizeof buffer, format, args);
  va_end(args);
  fprintf(stderr, "FAIL: %s\n", buffer);
}

double aot_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int aot_emulated(void) {
  const char* e = getenv("PATCHCALL_TEST_EMULATED");
  return e != NULL && strcmp(e, "1") == 0;
}

double aot_test_scale(void) {
  const char* s = getenv("PATCHCALL_TEST_SCALE");
  if (s == NULL || *s == 0) return 1.0;
  double f = strtod(s, NULL);
  return f > 0 ? f : 0.0;
}

/* ---- the walk ------------------------------------------------------------------------------- */
struct aot_ptr_index {
  uintptr_t address;
  int index;
};
static int aot_cmp_ptr_index(const void* a, const void* b) {
  uintptr_t x = ((const struct aot_ptr_index*)a)->address, y = ((const struct aot_ptr_index*)b)->address;
  return x < y ? -1 : x > y ? 1 : 0;
}
static int aot_find(const struct aot_ptr_index* v, int n, uintptr_t address) {
  int lo = 0, hi = n;
  while (lo < hi) {
    int mid = (lo + hi) / 2;
    if (v[mid].address < address) lo = mid + 1;
    else hi = mid;
  }
  return lo < n && v[lo].address == address ? v[lo].index : -1;
}

struct aot_jump_ref {
  const struct patchcall_jump_entry* entry;
  int module;
};

struct aot_walk {
  const struct aot_site_model* m;
  struct aot_site_report* r;
  const char* where;
  struct aot_ptr_index* keys;   /* sorted by key address */
  struct aot_ptr_index* calls;  /* sorted by call address */
  struct aot_ptr_index* jumps;  /* sorted by code address; index into jump_refs */
  struct aot_jump_ref* jump_refs;
  int njumps;
  int* jump_visits;
  int* trampoline_visits;
  long failures_at_start;
};

static int aot_module_of(const struct aot_site_model* m, uintptr_t address) {
  for (int i = 0; i < m->nmodules; i++)
    if (address >= m->modules[i].lo && address < m->modules[i].hi) return i;
  return -1;
}

static const char* aot_kind_name(int kind) {
  switch (kind) {
    case PATCHCALL_STATIC_SITE_BRANCH: return "BRANCH";
    case PATCHCALL_STATIC_SITE_TRAMPOLINE: return "TRAMPOLINE";
    case PATCHCALL_STATIC_SITE_CALL: return "CALL";
    case PATCHCALL_STATIC_SITE_TAIL_CALL: return "TAIL_CALL";
  }
  return "?";
}

static void aot_check_branch(struct aot_walk* w, const patchcall_static_site_info* s, int module) {
  const struct aot_site_model* m = w->m;
  int key = aot_find(w->keys, m->nkeys, (uintptr_t)s->object);
  if (key < 0) {
    aot_failf("%s: BRANCH site %p in %s: object %p is not a key of a loaded module", w->where, s->address,
              m->modules[module].name, s->object);
    return;
  }
  int j = aot_find(w->jumps, w->njumps, (uintptr_t)s->address);
  if (j < 0) {
    aot_failf("%s: BRANCH site %p of key %s is not the code of any __patchcall_jump_table record", w->where,
              s->address, m->key_names[key]);
    return;
  }
  w->jump_visits[j]++;
  const struct patchcall_jump_entry* e = w->jump_refs[j].entry;
  if (w->jump_refs[j].module != module)
    aot_failf("%s: BRANCH site %p of key %s: its record is in module %s, the address in %s", w->where, s->address,
              m->key_names[key], m->modules[w->jump_refs[j].module].name, m->modules[module].name);
  int likely = (int)(e->key & 1);
  const struct patchcall_static_key* recorded = *(struct patchcall_static_key* const*)(e->key & ~(uintptr_t)1);
  if (recorded != m->keys[key])
    aot_failf("%s: BRANCH site %p: sites_each says key %s (%p), its record says key %p", w->where, s->address,
              m->key_names[key], (const void*)m->keys[key], (const void*)recorded);
  int enabled = m->key_enabled[key];
  int jump = enabled ^ likely;
  struct aot_insn insn;
  aot_decode(s->address, &insn);
  const void* want = jump ? (const void*)e->target : NULL;
  if (s->destination != want)
    aot_failf("%s: BRANCH site %p (%s, %s) of key %s (expected %s): destination %p, expected %p (%s)", w->where,
              s->address, likely ? "LIKELY" : "UNLIKELY", m->modules[module].name, m->key_names[key],
              enabled ? "enabled" : "disabled", s->destination, want, jump ? "the label" : "NULL: a NOP");
  if (jump ? (insn.kind != AOT_INSN_JUMP || insn.target != e->target) : insn.kind != AOT_INSN_NOP)
    aot_failf("%s: BRANCH site %p (%s, %s) of key %s (expected %s): decodes as '%s', expected a %s%s %#lx", w->where,
              s->address, likely ? "LIKELY" : "UNLIKELY", m->modules[module].name, m->key_names[key],
              enabled ? "enabled" : "disabled", insn.text, aot_insn_name(jump ? AOT_INSN_JUMP : AOT_INSN_NOP),
              jump ? " to the label" : "", jump ? (unsigned long)e->target : 0ul);
}

static void aot_check_trampoline(struct aot_walk* w, const patchcall_static_site_info* s, int module) {
  const struct aot_site_model* m = w->m;
  int c = aot_find(w->calls, m->ncalls, (uintptr_t)s->object);
  if (c < 0) {
    aot_failf("%s: TRAMPOLINE site %p in %s: object %p is not a static call of a loaded module", w->where,
              s->address, m->modules[module].name, s->object);
    return;
  }
  w->trampoline_visits[c]++;
  const char* tramp = (const char*)m->call_trampolines[c];
  if ((const char*)s->address != tramp)
    aot_failf("%s: TRAMPOLINE site of %s at %p, its trampoline is %p", w->where, m->call_names[c], s->address,
              (const void*)tramp);
  const void* target = m->call_targets[c];
  const void* field = __atomic_load_n(&m->calls[c]->target, __ATOMIC_RELAXED);
  const void* want_field = target ? target : (const void*)(tramp + PATCHCALL_SCT_RET);
  if (field != want_field)
    aot_failf("%s: static call %s: its `target` field is %p, expected %p%s", w->where, m->call_names[c], field,
              want_field, target ? "" : " (the trampoline's ret: the no-op)");
  struct aot_insn insn;
  aot_decode(tramp, &insn);
  int ok;
  const char* expect;
  if (target == NULL) {
    ok = s->destination == tramp + PATCHCALL_SCT_RET || s->destination == tramp + PATCHCALL_SCT_INDIRECT;
    expect = "the trampoline's ret (directly or through its indirect path)";
  } else if (aot_in_branch_reach(tramp, target)) {
    ok = s->destination == target;
    expect = "the target (in branch reach)";
  } else {
    ok = s->destination == tramp + PATCHCALL_SCT_INDIRECT;
    expect = "the trampoline's indirect path (target out of branch reach)";
  }
  if (!ok)
    aot_failf("%s: TRAMPOLINE of %s at %p: destination %p, expected %s; target %p", w->where, m->call_names[c],
              (const void*)tramp, s->destination, expect, target);
  if (insn.kind != AOT_INSN_JUMP || (const void*)insn.target != s->destination)
    aot_failf("%s: TRAMPOLINE of %s at %p decodes as '%s', expected a %s to its destination %p", w->where,
              m->call_names[c], (const void*)tramp, insn.text, aot_insn_name(AOT_INSN_JUMP), s->destination);
  char why[384];
  if (!aot_trampoline_body_ok(tramp, m->calls[c], why, sizeof why))
    aot_failf("%s: TRAMPOLINE of %s at %p: its body decodes as %s, not as the header emits it", w->where,
              m->call_names[c], (const void*)tramp, why);
}

static void aot_check_inline(struct aot_walk* w, const patchcall_static_site_info* s, int module) {
  const struct aot_site_model* m = w->m;
  const char* kind = aot_kind_name(s->kind);
  int c = aot_find(w->calls, m->ncalls, (uintptr_t)s->object);
  if (c < 0) {
    aot_failf("%s: %s site %p in %s: object %p is not a static call of a loaded module", w->where, kind, s->address,
              m->modules[module].name, s->object);
    return;
  }
  /* The nearest marker of this call before the site, in the same module, within 1 KiB. */
  const struct aot_site_module* mod = &m->modules[module];
  uintptr_t best = 0;
  for (const struct patchcall_call_site_entry* e = mod->sites_begin; e < mod->sites_end; e++)
    if (e->call == m->calls[c] && e->marker <= (uintptr_t)s->address && e->marker > best) best = e->marker;
  if (best == 0 || (uintptr_t)s->address - best > 1024)
    aot_failf("%s: %s site %p of %s in %s: no marker of that call precedes it within 1 KiB (nearest %#lx)", w->where,
              kind, s->address, m->call_names[c], mod->name, (unsigned long)best);
  const void* target = m->call_targets[c];
  const void* tramp = m->call_trampolines[c];
  struct aot_insn insn;
  aot_decode(s->address, &insn);
  int tail = s->kind == PATCHCALL_STATIC_SITE_TAIL_CALL;
  int want_insn = tail ? AOT_INSN_JUMP : AOT_INSN_CALL;
  if (target == NULL && !tail) {
    w->r->inline_noop[module]++;
    if (s->destination != NULL || insn.kind != AOT_INSN_NOP)
      aot_failf("%s: CALL site %p of %s (%s) with the no-op target decodes as '%s', destination %p; expected a %s, NULL",
                w->where, s->address, m->call_names[c], mod->name, insn.text, s->destination, aot_insn_name(AOT_INSN_NOP));
    return;
  }
  if (insn.kind != want_insn || (const void*)insn.target != s->destination) {
    aot_failf("%s: %s site %p of %s (%s) decodes as '%s', expected a %s to its destination %p", w->where, kind,
              s->address, m->call_names[c], mod->name, insn.text, aot_insn_name(want_insn), s->destination);
    return;
  }
  if (target == NULL) { /* a tail call to the no-op: must reach a ret */
    w->r->inline_noop[module]++;
    struct aot_insn at;
    aot_decode(s->destination, &at);
    if (at.kind != AOT_INSN_RET && !aot_reaches(s->destination, tramp))
      aot_failf("%s: TAIL_CALL site %p of %s (%s) with the no-op target jumps to %p ('%s'): neither a ret nor "
                "the trampoline", w->where, s->address, m->call_names[c], mod->name, s->destination, at.text);
    return;
  }
  if (aot_in_branch_reach(s->address, target)) {
    w->r->inline_direct[module]++;
    if (s->destination != target)
      aot_failf("%s: %s site %p of %s (%s): destination %p, expected the target %p (in branch reach)", w->where, kind,
                s->address, m->call_names[c], mod->name, s->destination, target);
  } else {
    w->r->inline_fallback[module]++;
    if (!aot_reaches(s->destination, tramp))
      aot_failf("%s: %s site %p of %s (%s): target %p out of reach, destination %p does not reach the trampoline %p",
                w->where, kind, s->address, m->call_names[c], mod->name, target, s->destination, tramp);
  }
}

static int aot_visit(void* user, const patchcall_static_site_info* s) {
  struct aot_walk* w = (struct aot_walk*)user;
  w->r->sites++;
  int module = aot_module_of(w->m, (uintptr_t)s->address);
  if (module < 0) {
    if (w->m->ignore_other_modules) w->r->other_sites++;
    else
      aot_failf("%s: site %p (kind %d, object %p) lies in no loaded module of the test", w->where, s->address, s->kind,
                s->object);
    return 0;
  }
  if (s->kind >= 1 && s->kind <= 4) w->r->by_kind[module][s->kind]++;
  switch (s->kind) {
    case PATCHCALL_STATIC_SITE_BRANCH: aot_check_branch(w, s, module); break;
    case PATCHCALL_STATIC_SITE_TRAMPOLINE: aot_check_trampoline(w, s, module); break;
    case PATCHCALL_STATIC_SITE_CALL:
    case PATCHCALL_STATIC_SITE_TAIL_CALL: aot_check_inline(w, s, module); break;
    default: aot_failf("%s: site %p has kind %d", w->where, s->address, s->kind);
  }
  return 0;
}

long aot_check_sites(const struct aot_site_model* m, struct aot_site_report* r, const char* where) {
  memset(r, 0, sizeof *r);
  struct aot_walk w;
  memset(&w, 0, sizeof w);
  w.m = m;
  w.r = r;
  w.where = where;
  w.failures_at_start = __atomic_load_n(&aot_failures, __ATOMIC_RELAXED);
  w.keys = (struct aot_ptr_index*)calloc((size_t)m->nkeys + 1, sizeof *w.keys);
  w.calls = (struct aot_ptr_index*)calloc((size_t)m->ncalls + 1, sizeof *w.calls);
  for (int i = 0; i < m->nkeys; i++) {
    w.keys[i].address = (uintptr_t)m->keys[i];
    w.keys[i].index = i;
  }
  for (int i = 0; i < m->ncalls; i++) {
    w.calls[i].address = (uintptr_t)m->calls[i];
    w.calls[i].index = i;
  }
  qsort(w.keys, (size_t)m->nkeys, sizeof *w.keys, aot_cmp_ptr_index);
  qsort(w.calls, (size_t)m->ncalls, sizeof *w.calls, aot_cmp_ptr_index);
  for (int i = 0; i < m->nmodules; i++) w.njumps += (int)(m->modules[i].jumps_end - m->modules[i].jumps_begin);
  w.jumps = (struct aot_ptr_index*)calloc((size_t)w.njumps + 1, sizeof *w.jumps);
  w.jump_refs = (struct aot_jump_ref*)calloc((size_t)w.njumps + 1, sizeof *w.jump_refs);
  w.jump_visits = (int*)calloc((size_t)w.njumps + 1, sizeof *w.jump_visits);
  w.trampoline_visits = (int*)calloc((size_t)m->ncalls + 1, sizeof *w.trampoline_visits);
  int n = 0;
  for (int i = 0; i < m->nmodules; i++)
    for (const struct patchcall_jump_entry* e = m->modules[i].jumps_begin; e < m->modules[i].jumps_end; e++) {
      w.jump_refs[n].entry = e;
      w.jump_refs[n].module = i;
      w.jumps[n].address = e->code;
      w.jumps[n].index = n;
      n++;
    }
  qsort(w.jumps, (size_t)w.njumps, sizeof *w.jumps, aot_cmp_ptr_index);

  int rc = patchcall_static_sites_each(aot_visit, &w);
  if (rc != 0) aot_failf("%s: patchcall_static_sites_each returned %d", where, rc);

  for (int j = 0; j < w.njumps; j++)
    if (w.jump_visits[j] != 1) {
      const struct patchcall_jump_entry* e = w.jump_refs[j].entry;
      aot_failf("%s: jump-table record of %s at %#lx (key ref %#lx) was reported %d times (expected once)", where,
                m->modules[w.jump_refs[j].module].name, (unsigned long)e->code, (unsigned long)e->key, w.jump_visits[j]);
    }
  for (int k = 0; k < m->nkeys; k++) {
    int field = __atomic_load_n(&m->keys[k]->enabled, __ATOMIC_RELAXED) != 0;
    if (field != m->key_enabled[k])
      aot_failf("%s: key %s: its `enabled` field is %d, expected %d", where, m->key_names[k], field, m->key_enabled[k]);
  }
  for (int c = 0; c < m->ncalls; c++)
    if (w.trampoline_visits[c] != 1)
      aot_failf("%s: the trampoline of %s was reported %d times (expected once)", where, m->call_names[c],
                w.trampoline_visits[c]);
  free(w.keys);
  free(w.calls);
  free(w.jumps);
  free(w.jump_refs);
  free(w.jump_visits);
  free(w.trampoline_visits);
  r->failures = __atomic_load_n(&aot_failures, __ATOMIC_RELAXED) - w.failures_at_start;
  return r->failures;
}

long aot_branches_in_tables(const struct aot_site_model* m, const struct patchcall_static_key* key) {
  long n = 0;
  for (int i = 0; i < m->nmodules; i++)
    for (const struct patchcall_jump_entry* e = m->modules[i].jumps_begin; e < m->modules[i].jumps_end; e++)
      if (*(struct patchcall_static_key* const*)(e->key & ~(uintptr_t)1) == key) n++;
  return n;
}

/* ---- modules ------------------------------------------------------------------------------- */
struct aot_span_query {
  uintptr_t address;
  uintptr_t lo, hi;
  int found;
};
static int aot_span_cb(struct dl_phdr_info* info, size_t size, void* user) {
  (void)size;
  struct aot_span_query* q = (struct aot_span_query*)user;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr)* ph = &info->dlpi_phdr[i];
    if (ph->p_type != PT_LOAD) continue;
    uintptr_t a = info->dlpi_addr + ph->p_vaddr, b = a + ph->p_memsz;
    if (a < lo) lo = a;
    if (b > hi) hi = b;
  }
  if (q->address >= lo && q->address < hi) {
    q->lo = lo;
    q->hi = hi;
    q->found = 1;
    return 1;
  }
  return 0;
}
int aot_module_span(const void* address, uintptr_t* lo, uintptr_t* hi) {
  struct aot_span_query q;
  memset(&q, 0, sizeof q);
  q.address = (uintptr_t)address;
  dl_iterate_phdr(aot_span_cb, &q);
  *lo = q.lo;
  *hi = q.hi;
  return q.found;
}
