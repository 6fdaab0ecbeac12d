// patchcall — the C API (include/patchcall/patchcall.h) over the C++ API.
//
// The C++ API reports every failure as a Status and throws nothing of its own; the one
// exception that can still escape it is std::bad_alloc from a standard container or string,
// which each entry point turns into PATCHCALL_E_OUT_OF_MEMORY. Messages are copied into a
// fixed per-thread buffer, so reporting an error never allocates. Keys and updates live in
// c_api_keys.cpp, code in c_api_code.cpp, stacks in c_api_stacks.cpp, polled grace periods in
// c_api_quiescence.cpp.
#include "patchcall/patchcall.h"

#include <chrono>
#include <cstdio>
#include <cstring>
#include <new>
#include <optional>
#include <thread>
#include <vector>

#include "c_api_support.h"
#include "runtime_access.h"
#include "runtime_impl.h"

// ---- error reporting (c_api_support.h) ------------------------------------------------------

namespace {
thread_local char tlsMessage[1024];
}  // namespace

namespace patchcall::capi {

int succeed() {
  tlsMessage[0] = '\0';
  return PATCHCALL_OK;
}

int fail(int code, const char* message) {
  std::snprintf(tlsMessage, sizeof tlsMessage, "%s", message);
  return code;
}

int fail(const Status& s) { return fail(static_cast<int>(s.code()), s.message().c_str()); }

int report(const Status& s) { return s.isOk() ? succeed() : fail(s); }

int outOfMemory(const char* function) {
  std::snprintf(tlsMessage, sizeof tlsMessage, "%s: out of memory", function);
  return PATCHCALL_E_OUT_OF_MEMORY;
}

int nullArgument(const char* function, const char* what) {
  std::snprintf(tlsMessage, sizeof tlsMessage, "%s: %s is NULL", function, what);
  return PATCHCALL_E_INVALID_ARGUMENT;
}

int unexpectedException(const char* function, const char* what) {
  std::snprintf(tlsMessage, sizeof tlsMessage, "%s: %s", function, what);
  return PATCHCALL_E_INVALID_ARGUMENT;
}

int tooMany(int code, const char* function, const char* what, size_t count, size_t limit) {
  std::snprintf(tlsMessage, sizeof tlsMessage, "%s: %zu %s exceed the runtime's limit of %zu (%s)", function, count, what,
                limit, code == PATCHCALL_E_TOO_MANY_SITES ? "Options::maxSites" : "Options::maxKeys");
  return code;
}

}  // namespace patchcall::capi

namespace {

using namespace patchcall::capi;
using patchcall::Error;

constexpr size_t kOptionsSizeV1 = offsetof(patchcall_options, diagnostic_user) + sizeof(void*);
// 0.2 ended at report_unregistered_threads, padded to the struct's pointer alignment.
constexpr size_t kOptionsSizeV2 =
    (offsetof(patchcall_options, report_unregistered_threads) + sizeof(int) + alignof(void*) - 1) & ~(alignof(void*) - 1);
static_assert(kOptionsSizeV2 < sizeof(patchcall_options));
using patchcall::Status;

std::optional<std::chrono::milliseconds> deadlineOf(int64_t ms) {
  if (ms < 0) return std::nullopt;
  return std::chrono::milliseconds(ms);
}


}  // namespace


extern "C" {

const char* patchcall_strerror(int code) {
  if (code < 0 || code >= PATCHCALL_ERROR_COUNT) return "unknown error";
  return patchcall::errorName(static_cast<Error>(code));
}

const char* patchcall_last_error_message(void) { return tlsMessage; }

// ---- runtime ----------------------------------------------------------------------------------

void patchcall_options_init(patchcall_options* o) {
  if (o == nullptr) return;
  const patchcall::Options d;
  std::memset(o, 0, sizeof *o);
  o->struct_size = sizeof *o;
  o->arena_size = d.arenaSize;
  o->arena_hint = d.arenaHint;
  o->allow_veneers = d.allowVeneers ? 1 : 0;
  o->target_alignment = d.targetAlignment;
  o->sync = static_cast<int>(d.sync);
  o->grace_deadline_ms = static_cast<uint32_t>(d.graceDeadline.count());
  o->grace_spin_us = static_cast<uint32_t>(d.graceSpin.count());
  o->background_reclaimer = d.backgroundReclaimer ? 1 : 0;
  o->max_threads = d.maxThreads;
  o->max_sites = d.maxSites;
  o->max_keys = d.maxKeys;
  o->report_unregistered_threads = d.reportUnregisteredThreads ? 1 : 0;
  o->perf_map = d.perfMap ? 1 : 0;
  o->jitdump = d.jitDump ? 1 : 0;
  o->jitdump_directory = nullptr;
  o->gdb_jit = static_cast<int>(d.gdbJit);
}

int patchcall_runtime_create(const patchcall_options* options, patchcall_runtime** out) {
  return guarded("patchcall_runtime_create", [&] {
    if (out == nullptr) return nullArgument("patchcall_runtime_create", "out");
    *out = nullptr;
    patchcall::Options o;
    if (options != nullptr) {
      // Every size a released header had: 0.1 ended at diagnostic_user.
      if (options->struct_size != sizeof(patchcall_options) && options->struct_size != kOptionsSizeV1 &&
          options->struct_size != kOptionsSizeV2) {
        return fail(PATCHCALL_E_INVALID_ARGUMENT,
                    "patchcall_runtime_create: options.struct_size does not match this library; "
                    "fill the options with patchcall_options_init first");
      }
      if (options->sync < PATCHCALL_SYNC_AUTO || options->sync > PATCHCALL_SYNC_MPROTECT_IPI) {
        return fail(PATCHCALL_E_INVALID_ARGUMENT, "patchcall_runtime_create: options.sync is not a patchcall_sync_method");
      }
      o.arenaSize = options->arena_size;
      o.arenaHint = options->arena_hint;
      o.allowVeneers = options->allow_veneers != 0;
      o.targetAlignment = options->target_alignment;
      o.sync = static_cast<patchcall::SyncMethod>(options->sync);
      o.graceDeadline = std::chrono::milliseconds(options->grace_deadline_ms);
      o.graceSpin = std::chrono::microseconds(options->grace_spin_us);
      o.backgroundReclaimer = options->background_reclaimer != 0;
      o.maxThreads = options->max_threads;
      o.maxSites = options->max_sites;
      o.maxKeys = options->max_keys;
      if (options->struct_size >= offsetof(patchcall_options, report_unregistered_threads) + sizeof(int)) {
        o.reportUnregisteredThreads = options->report_unregistered_threads != 0;
      }
      if (options->struct_size == sizeof(patchcall_options)) {
        if (options->gdb_jit < PATCHCALL_GDB_JIT_DESCRIBED || options->gdb_jit > PATCHCALL_GDB_JIT_OFF) {
          return fail(PATCHCALL_E_INVALID_ARGUMENT, "patchcall_runtime_create: options.gdb_jit is not a patchcall_gdb_jit");
        }
        o.perfMap = options->perf_map != 0;
        o.jitDump = options->jitdump != 0;
        if (options->jitdump_directory != nullptr) o.jitDumpDirectory = options->jitdump_directory;
        o.gdbJit = static_cast<patchcall::GdbJitMode>(options->gdb_jit);
      }
      if (auto observer = options->patch_observer) {
        void* user = options->patch_observer_user;
        o.patchObserver = [observer, user](const patchcall::PatchEvent& e) {
          patchcall_patch_event ce{e.site, e.newTarget, static_cast<int>(e.form)};
          observer(user, &ce);
        };
      }
      if (auto sink = options->diagnostic_sink) {
        void* user = options->diagnostic_user;
        o.diagnosticSink = [sink, user](const std::string& m) { sink(user, m.c_str()); };
      }
    }
    patchcall::Result<patchcall::Runtime> rt = patchcall::Runtime::create(std::move(o));
    if (!rt) return fail(rt.status());
    auto* handle = new (std::nothrow) patchcall_runtime{std::move(*rt)};
    if (handle == nullptr) return outOfMemory("patchcall_runtime_create");
    *out = handle;
    return succeed();
  });
}

void patchcall_runtime_destroy(patchcall_runtime* rt) { delete rt; }

int patchcall_arena_info_get(const patchcall_runtime* rt, patchcall_arena_info* out) {
  if (rt == nullptr) return nullArgument("patchcall_arena_info_get", "rt");
  if (out == nullptr) return nullArgument("patchcall_arena_info_get", "out");
  patchcall::ArenaInfo a = rt->rt.arenaInfo();
  *out = patchcall_arena_info{a.rxBase, a.rwBase, a.size, a.used, a.distanceFromText, a.nearText ? 1 : 0,
                              static_cast<int>(a.sync)};
  return succeed();
}

int patchcall_stats_get(const patchcall_runtime* rt, patchcall_stats* out) {
  if (rt == nullptr) return nullArgument("patchcall_stats_get", "rt");
  if (out == nullptr) return nullArgument("patchcall_stats_get", "out");
  patchcall::RuntimeStats s = rt->rt.stats();
  *out = patchcall_stats{s.keys,          s.sites,          s.blobs,           s.veneers,          s.updates,
                         s.siteWrites,    s.syncs,          s.trapsEmulated,   s.gracePeriods,     s.toggleGraceWaits,
                         s.callbacksRetired, s.callbacksRun, s.blobsRetired,   s.blobsFreed,       s.blobsPinnedByStacks,
                         s.siteMetadataBytes};
  return succeed();
}

int patchcall_fork_state_get(const patchcall_runtime* rt, patchcall_fork_state* out) {
  if (rt == nullptr) return nullArgument("patchcall_fork_state_get", "rt");
  if (out == nullptr) return nullArgument("patchcall_fork_state_get", "out");
  *out = patchcall_fork_state{rt->rt.arenaInfo().sharedAfterFork ? 1 : 0, rt->rt.stats().codeCopiesAfterFork};
  return succeed();
}

const volatile uint8_t* patchcall_safepoint_flag(const patchcall_runtime* rt) {
  return rt == nullptr ? nullptr : rt->rt.safepointFlag();
}

const void* patchcall_safepoint_stub(const patchcall_runtime* rt) {
  return rt == nullptr ? nullptr : rt->rt.safepointStub();
}

const void* patchcall_noop_target(const patchcall_runtime* rt) { return rt == nullptr ? nullptr : rt->rt.noopTarget(); }

const void* patchcall_return_zero_target(const patchcall_runtime* rt) {
  return rt == nullptr ? nullptr : rt->rt.returnZeroTarget();
}

// ---- threads and quiescence -----------------------------------------------------------------

int patchcall_thread_register(patchcall_runtime* rt, const char* name, patchcall_thread** out) {
  return guarded("patchcall_thread_register", [&] {
    if (rt == nullptr) return nullArgument("patchcall_thread_register", "rt");
    if (out == nullptr) return nullArgument("patchcall_thread_register", "out");
    *out = nullptr;
    auto* handle = new (std::nothrow) patchcall_thread{};
    if (handle == nullptr) return outOfMemory("patchcall_thread_register");
    patchcall::Result<patchcall::ThreadScope> scope = rt->rt.registerThread(name != nullptr ? name : "");
    if (!scope) {
      delete handle;
      return fail(scope.status());
    }
    handle->scope = std::move(*scope);
    handle->owner = std::this_thread::get_id();
    *out = handle;
    return succeed();
  });
}

int patchcall_thread_unregister(patchcall_thread* thread) {
  if (thread == nullptr) return nullArgument("patchcall_thread_unregister", "thread");
  // A thread that exited registered was unregistered by the exit hook; its handle (still
  // ours, never freed behind the caller's back) is released from whichever thread holds it.
  if (thread->owner != std::this_thread::get_id() && thread->scope.active()) {
    return fail(PATCHCALL_E_INVALID_ARGUMENT,
                "patchcall_thread_unregister: called from another thread; a thread unregisters itself");
  }
  thread->scope.reset();
  delete thread;
  return succeed();
}

void patchcall_safepoint(void) { patchcall::safepoint(); }

int patchcall_offline(void) {
  return guarded("patchcall_offline", [] { return report(patchcall::goOffline()); });
}

int patchcall_online(void) {
  return guarded("patchcall_online", [] { return report(patchcall::goOnline()); });
}

int patchcall_thread_is_registered(void) { return patchcall::isThreadRegistered() ? 1 : 0; }

int patchcall_synchronize(patchcall_runtime* rt, int64_t deadline_ms) {
  return guarded("patchcall_synchronize", [&] {
    if (rt == nullptr) return nullArgument("patchcall_synchronize", "rt");
    return report(rt->rt.synchronize(deadlineOf(deadline_ms)));
  });
}

int patchcall_barrier(patchcall_runtime* rt, int64_t deadline_ms) {
  return guarded("patchcall_barrier", [&] {
    if (rt == nullptr) return nullArgument("patchcall_barrier", "rt");
    return report(rt->rt.barrier(deadlineOf(deadline_ms)));
  });
}

size_t patchcall_poll(patchcall_runtime* rt) {
  if (rt == nullptr) return 0;
  try {
    return rt->rt.poll();
  } catch (const std::bad_alloc&) {
    outOfMemory("patchcall_poll");
    return 0;
  }
}

int patchcall_retire_callback(patchcall_runtime* rt, void (*callback)(void* user), void* user) {
  return guarded("patchcall_retire_callback", [&] {
    if (rt == nullptr) return nullArgument("patchcall_retire_callback", "rt");
    if (callback == nullptr) return nullArgument("patchcall_retire_callback", "callback");
    return report(rt->rt.retire([callback, user] { callback(user); }));
  });
}

// ---- sites ----------------------------------------------------------------------------------------

int patchcall_site_info_get(const patchcall_runtime* rt, const void* address, patchcall_site_info* out) {
  return guarded("patchcall_site_info_get", [&] {
    if (rt == nullptr) return nullArgument("patchcall_site_info_get", "rt");
    if (out == nullptr) return nullArgument("patchcall_site_info_get", "out");
    patchcall::Result<patchcall::SiteInfo> s = rt->rt.site(address);
    if (!s) return fail(s.status());
    *out = patchcall_site_info{s->address, s->key.id, static_cast<int>(s->form), s->target, s->foreign ? 1 : 0};
    return succeed();
  });
}

int patchcall_foreign_site_register(patchcall_runtime* rt, void* call_instruction, patchcall_key key) {
  return guarded("patchcall_foreign_site_register", [&] {
    if (rt == nullptr) return nullArgument("patchcall_foreign_site_register", "rt");
    return report(rt->rt.registerForeignSite(call_instruction, patchcall::Key{key}));
  });
}

int patchcall_foreign_site_unregister(patchcall_runtime* rt, void* call_instruction) {
  return guarded("patchcall_foreign_site_unregister", [&] {
    if (rt == nullptr) return nullArgument("patchcall_foreign_site_unregister", "rt");
    return report(rt->rt.unregisterForeignSite(call_instruction));
  });
}

#ifdef PATCHCALL_TEST_HOOKS
// For tests/c_api: lets a C test's operator new interposer raise std::bad_alloc, so the
// OUT_OF_MEMORY mapping is exercised without C++ in the test. Not in the public header.
[[noreturn]] void patchcall_testing_throw_bad_alloc(void) { throw std::bad_alloc(); }
#endif

}  // extern "C"
