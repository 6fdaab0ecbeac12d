// patchcall — the thread side of the public API: ThreadScope, goOffline/goOnline, and the
// exit hook that unregisters a thread which ends while still registered.
//
// Why a pthread key and not a thread_local object: glibc runs every C++ thread_local
// destructor (__call_tls_dtors) before the pthread key destructors (__nptl_deallocate_tsd),
// so a thread_local ThreadScope - whenever it was constructed or assigned - unregisters
// normally first and the hook only sees threads nobody unregistered. The hook still runs on
// the exiting thread, before pthread_join returns and before its stack can be unmapped.
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "fork_reset.h"
#include "quiescence.h"
#include "test_hooks.h"

namespace patchcall {
namespace detail {

namespace {

std::mutex gLifetime;  // trivially destructible in libstdc++: usable while a process exits
pthread_key_t gExitKey;
pthread_once_t gExitKeyOnce = PTHREAD_ONCE_INIT;
int gExitKeyError = 0;

void onThreadExit(void* p) noexcept {
  auto* r = static_cast<ThreadRecord*>(p);
  {
    std::lock_guard<std::mutex> lock(gLifetime);
    if (r->domain != nullptr) r->domain->unregisterAtExit(r);  // drops the domain's reference
  }
  if (tlsSafepoint.record == r) tlsSafepoint = SafepointTls{};  // later key destructors: no-ops
  // Release: a ThreadScope that sees `exited` (acquire) on another thread may then free r.
  r->exited.store(true, std::memory_order_release);
  releaseRecord(r);  // the hook's reference
}

void createExitKey() { gExitKeyError = pthread_key_create(&gExitKey, &onThreadExit); }

// Checked mode: the runtimes with Options::reportUnregisteredThreads (leaked on purpose: a
// thread may report while the process exits).
std::mutex gCheckedMutex;
std::vector<Quiescence*>* gChecked = nullptr;
thread_local bool tlsUnregisteredReported = false;

}  // namespace

constinit std::atomic<uint64_t> unregisteredCounter{0};

void addCheckedDomain(Quiescence* q) {
  std::lock_guard<std::mutex> lock(gCheckedMutex);
  if (gChecked == nullptr) gChecked = new std::vector<Quiescence*>();
  gChecked->push_back(q);
  unregisteredCounter.store(1, std::memory_order_relaxed);
}

void removeCheckedDomain(Quiescence* q) noexcept {
  std::lock_guard<std::mutex> lock(gCheckedMutex);
  if (gChecked == nullptr) return;
  std::erase(*gChecked, q);
  if (gChecked->empty()) unregisteredCounter.store(0, std::memory_order_relaxed);
}

// Off the fast path: only an unregistered thread whose `seen` lags unregisteredCounter gets
// here, and catching `seen` up sends it back to the fast path after one report.
void Quiescence::reportUnregistered(const char* what) noexcept {
  tlsSafepoint.seen = unregisteredCounter.load(std::memory_order_relaxed);
  if (tlsSafepoint.seen == 0 || tlsUnregisteredReported) return;
  tlsUnregisteredReported = true;
  std::lock_guard<std::mutex> lock(gCheckedMutex);
  if (gChecked == nullptr) return;
  try {
    std::string msg = std::string("patchcall: ") + what + " on thread tid " + std::to_string(syscall(SYS_gettid)) +
                      ", which is not registered with any runtime: it has no protection (call "
                      "Runtime::registerThread first); reported once per thread";
    for (Quiescence* q : *gChecked) {
      if (q->config_.diagnostics) q->config_.diagnostics(msg);
    }
  } catch (...) {  // out of memory, or a throwing sink: a report is not worth a crash
  }
}

PATCHCALL_FORK_PATH std::mutex& lifetimeMutex() noexcept { return gLifetime; }  // the child handler resets it

void releaseRecord(ThreadRecord* r) noexcept {
  // acq_rel: the last owner sees every write the others made before they let go.
  if (r->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete r;
}

Status armExitHook(ThreadRecord* r) noexcept {
  pthread_once(&gExitKeyOnce, &createExitKey);
  int err = gExitKeyError != 0 ? gExitKeyError : pthread_setspecific(gExitKey, r);
  if (err == 0) return Status::ok();
  return Status(err == ENOMEM ? Error::kOutOfMemory : Error::kInvalidArgument,
                "cannot install the thread-exit hook (pthread key): error " + std::to_string(err));
}

void disarmExitHook(ThreadRecord* r) noexcept {
  if (gExitKeyError == 0) pthread_setspecific(gExitKey, nullptr);  // cannot fail for a live key
  if (r != nullptr) releaseRecord(r);
}

void Quiescence::unregisterAtExit(ThreadRecord* r) noexcept {
  if (config_.diagnostics) {
    try {
      config_.diagnostics("patchcall: thread '" + std::string(r->name) + "' (tid " + std::to_string(r->tid) +
                          ") exited while registered; unregistered it at exit (reset its ThreadScope or call "
                          "patchcall_thread_unregister before the thread ends)");
    } catch (...) {  // out of memory, or a throwing sink: the unregistration matters more
    }
  }
  unregisterThread(r);
}

}  // namespace detail

// No std::atomic member calls here: their always_inline bodies assume SSE and would not
// inline into a general-registers-only function; __atomic builtins on the same object do.
__attribute__((target("general-regs-only"))) bool detail::safepointPending() noexcept {
  if (TestHooks* hooks = testHooks(); hooks != nullptr) {
    static_assert(sizeof hooks->inSafepointSlow == sizeof(void*));
    const auto* hook = reinterpret_cast<void* const*>(&hooks->inSafepointSlow);
    if (__atomic_load_n(hook, __ATOMIC_RELAXED) != nullptr) return true;  // the hook runs in the full path
  }
  const SafepointTls& t = tlsSafepoint;
  if (t.gpCounter == nullptr) return false;
  static_assert(sizeof(*t.gpCounter) == sizeof(uint64_t) && std::atomic<uint64_t>::is_always_lock_free);
  return __atomic_load_n(reinterpret_cast<const uint64_t*>(t.gpCounter), __ATOMIC_RELAXED) != t.seen;
}

void detail::safepointSlow() noexcept {
  if (TestHooks* hooks = testHooks(); hooks != nullptr) {
    if (void (*hook)() = hooks->inSafepointSlow.load(std::memory_order_relaxed); hook != nullptr) hook();
  }
  if (ThreadRecord* r = tlsSafepoint.record; r != nullptr && r->domain != nullptr) {
    r->domain->safepointSlow(r);
  } else if (r == nullptr) {
    Quiescence::reportUnregistered("safepoint()");
  }
}

Status goOffline() noexcept {
  detail::ThreadRecord* r = detail::tlsSafepoint.record;
  if (r == nullptr || r->domain == nullptr) {
    if (r == nullptr) detail::Quiescence::reportUnregistered("goOffline() (or OfflineScope)");
    return detail::statusNoexcept(Error::kNotRegistered, "not registered",
                          [] { return std::string("goOffline: the calling thread is not registered"); });
  }
  return r->domain->offline(r);
}

Status goOnline() noexcept {
  detail::ThreadRecord* r = detail::tlsSafepoint.record;
  if (r == nullptr || r->domain == nullptr) {
    if (r == nullptr) detail::Quiescence::reportUnregistered("goOnline()");
    return detail::statusNoexcept(Error::kNotRegistered, "not registered",
                          [] { return std::string("goOnline: the calling thread is not registered"); });
  }
  return r->domain->online(r);
}

bool isThreadRegistered() noexcept { return detail::tlsSafepoint.record != nullptr; }

ThreadScope& ThreadScope::operator=(ThreadScope&& other) noexcept {
  if (this != &other) {
    reset();
    record_ = other.record_;
    other.record_ = nullptr;
  }
  return *this;
}

bool ThreadScope::active() const noexcept {
  return record_ != nullptr && !record_->exited.load(std::memory_order_acquire);
}

void ThreadScope::reset() noexcept {
  detail::ThreadRecord* r = record_;
  if (r == nullptr) return;
  record_ = nullptr;
  // Its thread is gone (the hook unregistered it), or this is not its thread: then only the
  // scope's reference goes; a live registration ends when its thread exits.
  if (r->exited.load(std::memory_order_acquire) || detail::tlsSafepoint.record != r) {
    detail::releaseRecord(r);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(detail::lifetimeMutex());
    if (r->domain != nullptr) r->domain->unregisterThread(r);  // drops the domain's reference
  }
  if (detail::tlsSafepoint.record == r) detail::tlsSafepoint = detail::SafepointTls{};  // runtime gone
  detail::disarmExitHook(r);
  detail::releaseRecord(r);
}

}  // namespace patchcall
