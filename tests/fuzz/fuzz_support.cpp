#include "fuzz_support.h"

#include "patchcall/quiescence.h"

namespace patchcall::fuzz {

std::string& trace() {
  static thread_local std::string t;
  return t;
}

void fail(int line, const std::string& what) {
  std::fprintf(stderr, "\napi_fuzz: invariant violated (api_fuzz.cpp:%d)\n  %s\noperations of this input:\n%s\n", line,
               what.c_str(), trace().c_str());
  std::fflush(stderr);
  std::abort();
}

std::string hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

std::string str(const Status& s) { return s.isOk() ? std::string("ok") : s.toString(); }

HelperThread::HelperThread(Runtime& rt) : rt_(rt), thread_([this] { loop(); }) {}

HelperThread::~HelperThread() {
  (void)run(Cmd::kUnregister);
  {
    std::lock_guard<std::mutex> lock(mu_);
    quit_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

Status HelperThread::run(Cmd cmd) {
  std::unique_lock<std::mutex> lock(mu_);
  pending_ = cmd;
  result_.reset();
  cv_.notify_all();
  if (!cv_.wait_for(lock, std::chrono::seconds(10), [&] { return result_.has_value(); })) {
    fail(__LINE__, "helper thread did not answer a command within 10 s");
  }
  return *result_;
}

void HelperThread::loop() {
  ThreadScope scope;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [&] { return quit_ || pending_.has_value(); });
    if (quit_) break;
    Cmd cmd = *pending_;
    pending_.reset();
    Status s;
    switch (cmd) {
      case Cmd::kRegister: {
        Result<ThreadScope> r = rt_.registerThread("fuzz-helper");
        if (r) scope = std::move(*r);
        s = r.status();
        break;
      }
      case Cmd::kUnregister: scope.reset(); break;
      case Cmd::kOffline: s = goOffline(); break;
      case Cmd::kOnline: s = goOnline(); break;
      case Cmd::kSafepoint: safepoint(); break;
    }
    result_ = s;
    cv_.notify_all();
  }
  scope.reset();
}

}  // namespace patchcall::fuzz
