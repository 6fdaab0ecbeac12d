// Threads that exit while registered (ThreadScope never reset): they are unregistered at exit,
// no later grace period waits for them or scans their (possibly unmapped) stack, the
// diagnostic sink names them once, and a ThreadScope that outlives its thread stays harmless.
#include <gtest/gtest.h>
#include <pthread.h>
#include <sys/mman.h>


#include <memory>
#include <optional>

#include "emulation.h"
#include "isa.h"
#include "patchcall/jit.h"
#include "patchcall/runtime.h"
#include "quiescence_util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#define PATCHCALL_LSAN 1
#endif

using namespace patchcall;
using namespace patchcall::qtest;

namespace {

constexpr const char* kExitMessage = "exited while registered";

// A pthread on a stack the test maps and unmaps itself (glibc would cache its own stacks, so
// a scan of a dead thread's stack would read stale but mapped memory and go unnoticed).
class MappedStackThread {
 public:
  static constexpr size_t kSize = 256 * 1024;
  ~MappedStackThread() {
    if (started_) (void)join();
  }
  bool start(std::function<void()> body) {
    body_ = std::move(body);
    stack_ = mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (stack_ == MAP_FAILED) return false;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstack(&attr, stack_, kSize);
    started_ = pthread_create(&thread_, &attr, &MappedStackThread::entry, this) == 0;
    pthread_attr_destroy(&attr);
    return started_;
  }
  // Joins, then unmaps the stack: any later read of it faults.
  bool join() {
    if (!started_) return false;
    started_ = false;
    bool ok = pthread_join(thread_, nullptr) == 0;
    munmap(stack_, kSize);
    return ok;
  }
  uintptr_t stackLo() const { return reinterpret_cast<uintptr_t>(stack_); }

 private:
  static void* entry(void* self) {
    static_cast<MappedStackThread*>(self)->body_();
    return nullptr;
  }
  std::function<void()> body_;
  void* stack_ = nullptr;
  pthread_t thread_{};
  bool started_ = false;
};

// Registers the calling thread and parks the ThreadScope in `kept`, which outlives the thread:
// the thread then exits registered, exactly as one whose scope is never reset.
Status registerAndKeep(Runtime& rt, const char* name, std::unique_ptr<ThreadScope>& kept) {
  Result<ThreadScope> scope = rt.registerThread(name);
  if (!scope) return scope.status();
  kept = std::make_unique<ThreadScope>(std::move(*scope));
  return Status::ok();
}

std::string exitDiagnostics(const DiagnosticLog& log, const char* name) {
  std::string out;
  for (const std::string& m : log.matching(kExitMessage)) {
    if (m.find(name) != std::string::npos) out += m + "\n";
  }
  return out;
}

size_t countExitDiagnostics(const DiagnosticLog& log) { return log.matching(kExitMessage).size(); }

TEST(ThreadExit, OnlineExitWhileRegisteredHoldsUpNoGracePeriod) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::unique_ptr<ThreadScope> kept;
  Status reg;
  std::thread t([&] {
    reg = registerAndKeep(*rt, "exits-online", kept);
    safepoint();
  });  // returns online, registered
  t.join();
  ASSERT_TRUE(reg.isOk()) << reg.toString();

  auto start = Clock::now();
  Status s = rt->synchronize(100ms);
  EXPECT_TRUE(s.isOk()) << "a grace period waited for a thread that has exited: " << s.toString() << "\n" << log.all();
  ASSERT_TRUE(rt->retire([] {}).isOk());
  Status b = rt->barrier(100ms);
  EXPECT_TRUE(b.isOk()) << "barrier waited for a thread that has exited: " << b.toString();
  EXPECT_LT(msSince(start), 200) << "grace periods took too long after the exit";
  std::string named = exitDiagnostics(log, "exits-online");
  EXPECT_FALSE(named.empty()) << "no diagnostic named the thread that exited while registered; got:\n" << log.all();
  EXPECT_EQ(countExitDiagnostics(log), 1u) << "expected exactly one exit diagnostic:\n" << log.all();
  EXPECT_FALSE(kept->active()) << "the scope of an exited thread still claims to be registered";
  kept.reset();  // on another thread, after the exit: must touch nothing that was freed
  EXPECT_TRUE(rt->synchronize(100ms).isOk());
  EXPECT_EQ(countExitDiagnostics(log), 1u) << "destroying the stale scope reported again:\n" << log.all();
}

Result<Blob> emitReturn(Runtime& rt, int value) {
  jit::Assembler a(rt);
  test::emitSetResult(a, value);
  test::emitRet(a);
  return jit::install(a);
}

// Runs in a child (EXPECT_EXIT): on today's code the grace-period leader scans the unmapped
// stack of the dead offline thread and the child dies of SIGSEGV instead of exiting 0.
std::string offlineExitOnUnmappedStack() {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  if (!rt) return "Runtime::create: " + rt.status().toString();
  std::unique_ptr<ThreadScope> kept;
  Status reg, off;
  MappedStackThread t;
  if (!t.start([&] {
        reg = registerAndKeep(*rt, "exits-offline", kept);
        off = goOffline();
      })) {
    return "cannot start a thread on a mapped stack";
  }
  if (!t.join()) return "pthread_join failed";
  if (!reg.isOk() || !off.isOk()) return "register/goOffline: " + reg.toString() + " / " + off.toString();
  // A blob retirement round: a scan set rides on the next grace period.
  Result<Blob> blob = emitReturn(*rt, 5);
  if (!blob) return "emit: " + blob.status().toString();
  if (Status s = rt->retire(*blob); !s) return "retire: " + s.toString();
  if (Status s = rt->barrier(2000ms); !s) return "barrier after the exit: " + s.toString() + "\n" + log.all();
  if (Status s = rt->synchronize(100ms); !s) return "synchronize after the exit: " + s.toString();
  if (rt->stats().blobsFreed != 1) return "the retired blob was not freed";
  if (exitDiagnostics(log, "exits-offline").empty()) return "no exit diagnostic named the thread:\n" + log.all();
  kept.reset();
  return "";
}

[[noreturn]] void exitWith(const std::string& error) {
  if (!error.empty()) std::fprintf(stderr, "FAILED: %s\n", error.c_str());
  std::fflush(stderr);
  _exit(error.empty() ? 0 : 1);
}

TEST(ThreadExitDeathTest, OfflineExitWhileRegisteredIsNeverScannedAfterItsStackIsUnmapped) {
  test::useThreadsafeDeathTests();
  EXPECT_EXIT(exitWith(offlineExitOnUnmappedStack()), ::testing::ExitedWithCode(0), "")
      << "a crash here (SIGSEGV) means a grace period scanned the freed stack of an exited thread";
}

// A thread_local ThreadScope is destroyed with the thread's other thread_locals, before the
// exit hook: an ordinary unregistration, so no diagnostic.
thread_local ThreadScope tlsScope;

TEST(ThreadExit, ThreadLocalScopeUnregistersAtExitWithoutADiagnostic) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  Status reg;
  std::thread t([&] {
    Result<ThreadScope> s = rt->registerThread("thread-local-scope");
    reg = s.status();
    if (s) tlsScope = std::move(*s);
  });
  t.join();
  ASSERT_TRUE(reg.isOk()) << reg.toString();
  EXPECT_TRUE(rt->synchronize(100ms).isOk()) << log.all();
  EXPECT_EQ(countExitDiagnostics(log), 0u) << "a thread_local scope unregisters normally:\n" << log.all();
}

// A ThreadScope destroyed on its thread after the exit hook ran (by a pthread key destructor
// of a later round): it must notice the registration is gone and touch nothing freed.
pthread_key_t lateKey;
pthread_once_t lateKeyOnce = PTHREAD_ONCE_INIT;
struct LateScope {
  std::unique_ptr<ThreadScope> scope;
  bool deferred = false;
  std::atomic<int>* destroyed = nullptr;
};
void lateDestructor(void* p) {
  auto* late = static_cast<LateScope*>(p);
  if (!late->deferred) {  // first round: come back in the next one, after every other key
    late->deferred = true;
    pthread_setspecific(lateKey, late);
    return;
  }
  late->scope.reset();
  late->destroyed->fetch_add(1);
  delete late;
}

TEST(ThreadExit, ScopeDestroyedOnItsThreadAfterTheExitHookIsHarmless) {
  pthread_once(&lateKeyOnce, [] { pthread_key_create(&lateKey, &lateDestructor); });
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::atomic<int> destroyed{0};
  Status reg;
  std::thread t([&] {
    auto* late = new LateScope;
    late->destroyed = &destroyed;
    reg = registerAndKeep(*rt, "late-scope", late->scope);
    pthread_setspecific(lateKey, late);
  });
  t.join();
  ASSERT_TRUE(reg.isOk()) << reg.toString();
  EXPECT_EQ(destroyed.load(), 1) << "the late key destructor did not run";
  EXPECT_TRUE(rt->synchronize(100ms).isOk()) << log.all();
  EXPECT_FALSE(exitDiagnostics(log, "late-scope").empty()) << "the exit hook did not report:\n" << log.all();
  EXPECT_EQ(countExitDiagnostics(log), 1u) << log.all();
}

// reset() on another thread while the registering thread lives only drops the handle: the
// thread stays registered (its TLS is untouched) until it exits, then the hook unregisters it.
TEST(ThreadExit, ScopeResetOnAnotherThreadOnlyDropsTheHandle) {
  DiagnosticLog log;
  auto rt = Runtime::create(manualOptions(log));
  ASSERT_TRUE(rt.isOk()) << rt.status().toString();
  std::unique_ptr<ThreadScope> kept;
  std::atomic<int> phase{0};
  Status reg;
  bool stillRegistered = false;
  std::thread t([&] {
    reg = registerAndKeep(*rt, "reset-elsewhere", kept);
    phase = 1;
    waitUntil([&] { return phase.load() == 2; });
    stillRegistered = isThreadRegistered();
    safepoint();  // its record must still be alive
  });
  ASSERT_TRUE(waitUntil([&] { return phase.load() == 1; }));
  ASSERT_TRUE(reg.isOk()) << reg.toString();
  kept.reset();  // ~ThreadScope on the wrong thread
  EXPECT_EQ(rt->synchronize(50ms).code(), Error::kTimeout) << "the registration ended on the wrong thread";
  phase = 2;
  t.join();
  EXPECT_TRUE(stillRegistered);
  EXPECT_TRUE(rt->synchronize(100ms).isOk()) << log.all();
  EXPECT_FALSE(exitDiagnostics(log, "reset-elsewhere").empty()) << log.all();
}

// The runtime goes first (its threads' records lose their domain), then the thread exits
// registered, then its scope is destroyed on another thread: nothing may touch freed memory.
TEST(ThreadExit, RuntimeDestroyedBeforeTheThreadExits) {
  DiagnosticLog log;
  std::optional<Runtime> rt;
  {
#ifdef PATCHCALL_LSAN
    __lsan::ScopedDisabler ignore;  // the 8-byte counter leaks on purpose (quiescence.h)
#endif
    Result<Runtime> created = Runtime::create(manualOptions(log));
    ASSERT_TRUE(created.isOk()) << created.status().toString();
    rt.emplace(std::move(*created));
  }
  std::unique_ptr<ThreadScope> kept;
  std::atomic<int> phase{0};
  Status reg, off;
  std::thread t([&] {
    reg = registerAndKeep(*rt, "outlives-runtime", kept);
    phase = 1;
    waitUntil([&] { return phase.load() == 2; });
    safepoint();  // the runtime is gone: a no-op
    off = goOffline();
  });  // exits registered with a runtime that no longer exists
  ASSERT_TRUE(waitUntil([&] { return phase.load() == 1; }));
  rt.reset();
  phase = 2;
  t.join();
  ASSERT_TRUE(reg.isOk()) << reg.toString();
  EXPECT_EQ(off.code(), Error::kNotRegistered) << off.toString();
  EXPECT_FALSE(log.matching("outlives-runtime").empty()) << log.all();
  EXPECT_EQ(countExitDiagnostics(log), 0u) << "the runtime was gone, nobody to report to:\n" << log.all();
  EXPECT_FALSE(kept->active());
  kept.reset();
}

}  // namespace
