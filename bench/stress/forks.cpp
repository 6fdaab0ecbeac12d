// patchcall-stress — the fork driver and what each child runs.
#include "forks.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "caller_threads.h"
#include "checker.h"
#include "updater.h"

namespace stress {

void ForkDriver::start() {
  if (o_.forks > 0) thread_ = std::thread([this] { run(); });
}

void ForkDriver::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void ForkDriver::run() {
  using Clock = std::chrono::steady_clock;
  auto spacing = std::chrono::duration<double>(o_.seconds / (o_.forks + 1));
  auto next = Clock::now();
  // Every child is forked even when the run ends first (a loaded machine): once stop() is
  // called the remaining ones follow without spacing, while callers and updaters still run.
  for (int n = 0; n < o_.forks; ++n) {
    next += std::chrono::duration_cast<Clock::duration>(spacing);
    while (Clock::now() < next && !stop_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    std::fflush(stdout);
    std::fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
      int code = child();
      std::fflush(stderr);
      _exit(code);
    }
    if (pid < 0) {
      error_ = std::string("fork: ") + std::strerror(errno);
      return;
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    children_.fetch_add(1);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      failures_.fetch_add(1);
      std::fprintf(stderr, "patchcall-stress: fork child %d %s %d\n", pid, WIFEXITED(status) ? "exited with" : "killed by signal",
                   WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
    }
  }
}

int ForkDriver::child() {
  // 1. Everything inherited is consistent: each site decodes to its key's registry target.
  for (const SiteMeta& s : world_.code.sites()) {
    patchcall::Result<patchcall::SiteInfo> info = rt_.site(reinterpret_cast<const void*>(s.call));
    patchcall::Result<const void*> want = rt_.target(world_.keys[s.key]);
    if (!info || !want || info->target != *want) {
      std::fprintf(stderr, "fork child: inherited site %u (key %u, %s) decodes to %p, its registry says %p\n", s.index, s.key,
                   formName(s.form), info ? info->target : nullptr, want ? *want : nullptr);
      return 1;
    }
  }
  // 2. A stress of its own: fresh keys, code and threads in the child's copy of the runtime.
  Options co = o_;
  co.threads = 2;
  co.sites = 96;
  co.keys = 12;
  co.forks = 0;
  co.fibers = 0;  // the parent's fiber pool does not exist here
  co.updateRate = 0;
  co.seed = o_.seed + 1000;
  World world;
  std::string err;
  if (!world.build(rt_, co, "child.", &err)) {
    std::fprintf(stderr, "fork child: %s\n", err.c_str());
    return 3;
  }
  Checker& checker = Checker::instance();
  uint64_t before = checker.total();
  patchcall::ArenaInfo arena = rt_.arenaInfo();
  checker.attach(&world.code, world.cells.get(), arena.rxBase, arena.size);
  CallerThreads callers(rt_, world.code, world.cells.get(), co.threads, co.seed, co.fibers);
  if (!callers.start(&err)) {
    std::fprintf(stderr, "fork child: %s\n", err.c_str());
    return 3;
  }
  Updaters updaters(rt_, world.keys, world.cells.get(), *world.targets);
  updaters.start(world.updaterConfigs(co));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  updaters.stop();
  callers.stop();
  uint64_t updates = updaters.updates(), violations = checker.total() - before;
  for (const UpdaterStats& u : updaters.stats()) {
    if (!u.error.empty()) {
      std::fprintf(stderr, "fork child: updater: %s\n", u.error.c_str());
      return 3;
    }
  }
  if (violations != 0 || updates == 0 || callers.calls() == 0) {
    std::fprintf(stderr, "fork child: %llu violations, %llu updates, %llu calls\n", static_cast<unsigned long long>(violations),
                 static_cast<unsigned long long>(updates), static_cast<unsigned long long>(callers.calls()));
    return 1;
  }
  return 0;
}

}  // namespace stress
