// tinyvm CLI — `run`: one call on the main thread, or N threads with an optional hot reload.
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <mutex>
#include <thread>

#include "commands.h"
#include "compiler.h"
#include "interpreter.h"
#include "loader.h"

namespace tinyvm::cli {
namespace {

using Clock = std::chrono::steady_clock;
using patchcall::Status;

struct WorkerResult {
  uint64_t calls = 0, oldResults = 0, newResults = 0, wrong = 0, afterReload = 0;
  std::string firstWrong;
  Status status;
};

// What a threaded run checks each result against.
struct Expectation {
  int64_t before = 0;          // the interpreter's result for the program as loaded
  std::optional<int64_t> after;  // ... and for the reloaded program
};

std::unique_ptr<Vm> createVm(const CliOptions& o, const Program& program) {
  VmOptions vmo = o.vm;
  if (o.verbose) {
    auto start = Clock::now();
    vmo.log = [start](const std::string& line) {
      double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      std::fprintf(stderr, "[%8.3f ms] %s\n", ms, line.c_str());
    };
  }
  patchcall::Result<std::unique_ptr<Vm>> vm = Vm::create(program, vmo);
  if (!vm) {
    std::fprintf(stderr, "tinyvm: cannot start the VM: %s\n", vm.status().toString().c_str());
    return nullptr;
  }
  return std::move(*vm);
}

void worker(Vm& vm, uint32_t entry, const std::vector<int64_t>& args, const CliOptions& o, const Expectation& expect,
            const std::atomic<bool>& reloaded, Clock::time_point deadline, int id, WorkerResult* out) {
  patchcall::Result<patchcall::ThreadScope> scope = vm.attachThread("tinyvm-worker-" + std::to_string(id));
  if (!scope) {
    out->status = scope.status();
    return;
  }
  bool reloading = !o.reloadFile.empty();
  bool sawNew = false;
  for (uint64_t i = 0;; ++i) {
    bool startedAfterReload = reloaded.load(std::memory_order_acquire);
    if (i >= o.iterations && (!reloading || out->afterReload > 0)) break;
    if (Clock::now() > deadline) {
      out->status = Status(patchcall::Error::kTimeout, "worker " + std::to_string(id) + " ran out of time");
      break;
    }
    patchcall::Result<int64_t> r = vm.call(entry, args);
    if (!r) {
      out->status = r.status();
      break;
    }
    ++out->calls;
    if (startedAfterReload) ++out->afterReload;
    std::string problem;
    if (*r == expect.before && (!expect.after || *expect.after != expect.before)) {
      ++out->oldResults;
      if (startedAfterReload) problem = "old result " + std::to_string(*r) + " from a call that started after the reload";
      else if (sawNew) problem = "old result " + std::to_string(*r) + " after this thread had seen the new one";
    } else if (expect.after && *r == *expect.after) {
      ++out->newResults;
      sawNew = true;
    } else {
      problem = "result " + std::to_string(*r) + " is neither " + std::to_string(expect.before) +
                (expect.after ? " (old) nor " + std::to_string(*expect.after) + " (new)" : "");
    }
    if (!problem.empty()) {
      if (out->wrong++ == 0) out->firstWrong = "thread " + std::to_string(id) + ", call " + std::to_string(i) + ": " + problem;
    }
  }
}

int threadedRun(const CliOptions& o, Vm& vm, uint32_t entry, const Expectation& expect, const Module* patch) {
  std::atomic<bool> reloaded{false};
  auto start = Clock::now();
  auto deadline = start + std::chrono::milliseconds(o.timeoutMs);
  std::vector<WorkerResult> results(o.threads);
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < o.threads; ++t) {
    threads.emplace_back(worker, std::ref(vm), entry, std::cref(o.args), std::cref(o), std::cref(expect),
                         std::cref(reloaded), deadline, static_cast<int>(t), &results[t]);
  }
  ReloadResult reload;
  double reloadAtMs = 0;
  if (patch != nullptr) {
    std::this_thread::sleep_for(std::chrono::milliseconds(o.afterMs));
    reloadAtMs = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    reload = vm.reload(*patch);
    reloaded.store(true, std::memory_order_release);
  }
  for (std::thread& t : threads) t.join();
  double elapsedMs = std::chrono::duration<double, std::milli>(Clock::now() - start).count();

  WorkerResult total;
  int status = 0;
  for (const WorkerResult& r : results) {
    total.calls += r.calls, total.oldResults += r.oldResults, total.newResults += r.newResults;
    total.wrong += r.wrong, total.afterReload += r.afterReload;
    if (total.firstWrong.empty()) total.firstWrong = r.firstWrong;
    if (!r.status.isOk()) {
      std::fprintf(stderr, "tinyvm: %s\n", r.status.toString().c_str());
      status = 1;
    }
  }
  std::printf("threads: %u x %s(): %" PRIu64 " calls in %.1f ms, %" PRIu64 " wrong\n", o.threads, o.entry.c_str(),
              total.calls, elapsedMs, total.wrong);
  if (total.wrong != 0) {
    std::printf("first wrong result: %s\n", total.firstWrong.c_str());
    status = 1;
  }
  if (patch != nullptr) {
    if (!reload.status.isOk()) {
      std::fprintf(stderr, "tinyvm: reload failed: %s\n", reload.status.toString().c_str());
      return 2;
    }
    Program p = vm.program();
    std::string names;
    for (uint32_t i : reload.redefined) names += (names.empty() ? "" : ", ") + p.functions[i]->name + " v" + std::to_string(p.functions[i]->version);
    std::printf("reload: at %.1f ms redefined %s in %" PRIu64 " us; results: %" PRIu64 " x %" PRId64 " (old), %" PRIu64
                " x %" PRId64 " (new), %" PRIu64 " calls started after the reload\n",
                reloadAtMs, names.c_str(), reload.micros, total.oldResults, expect.before, total.newResults,
                *expect.after, total.afterReload);
    if (*expect.after == expect.before) std::printf("note: the reload does not change the result; old and new are indistinguishable\n");
    if (total.newResults == 0 && *expect.after != expect.before) {
      std::printf("no thread saw the new definition\n");
      status = 1;
    }
  } else {
    std::printf("result: %" PRId64 "\n", expect.before);
  }
  // Every worker has detached: each retired blob must now be freed.
  Status drained = vm.runtime().barrier(std::chrono::milliseconds(5000));
  patchcall::RuntimeStats rs = vm.runtime().stats();
  VmStats vs = vm.stats();
  std::printf("code: %" PRIu64 " blobs installed (%" PRIu64 " stubs, %" PRIu64 " compiled), %" PRIu64 " retired, %" PRIu64
              " freed (%" PRIu64 " times a blob waited for a later round: a stack still pointed into it)\n",
              vs.stubsInstalled + vs.compiles, vs.stubsInstalled, vs.compiles, rs.blobsRetired, rs.blobsFreed,
              rs.blobsPinnedByStacks);
  if (!drained.isOk() || rs.blobsFreed != rs.blobsRetired) {
    std::printf("retired code was not freed: %s\n", drained.toString().c_str());
    status = 1;
  }
  if (o.stats) printStats(vm, vm.runtime());
  return status;
}

}  // namespace

int runCommand(const CliOptions& o) {
  LoadOutcome base = loadFile(o.file);
  if (!base.ok) {
    std::fprintf(stderr, "%s\n", base.error.c_str());
    return 2;
  }
  const Program& program = base.loaded.program;
  std::optional<uint32_t> entry = program.find(o.entry);
  if (!entry) {
    std::fprintf(stderr, "tinyvm: %s defines no function '%s'\n", o.file.c_str(), o.entry.c_str());
    return 2;
  }
  if (program.functions[*entry]->arity != o.args.size()) {
    std::fprintf(stderr, "tinyvm: '%s' takes %u argument(s), --args gave %zu\n", o.entry.c_str(),
                 program.functions[*entry]->arity, o.args.size());
    return 2;
  }
  if (o.interpretOnly) {
    for (uint64_t i = 1; i < o.iterations; ++i) (void)Interpreter(program).call(*entry, o.args);
    std::printf("%" PRId64 "\n", Interpreter(program).call(*entry, o.args));
    return 0;
  }

  std::optional<Module> patch;
  Expectation expect;
  if (o.threads > 0) expect.before = Interpreter(program).call(*entry, o.args);
  if (!o.reloadFile.empty()) {
    LoadOutcome parsed = parseFile(o.reloadFile);
    if (!parsed.ok) {
      std::fprintf(stderr, "%s\n", parsed.error.c_str());
      return 2;
    }
    Outcome<CompiledModule> merged = compile(parsed.loaded.module, &program);
    if (!merged.isOk()) {
      std::fprintf(stderr, "%s\n", merged.error.toString().c_str());
      return 2;
    }
    expect.after = Interpreter(merged.value->program).call(*entry, o.args);
    patch = std::move(parsed.loaded.module);
  }

  std::unique_ptr<Vm> vm = createVm(o, program);
  if (!vm) return 2;
  if (o.threads > 0) return threadedRun(o, *vm, *entry, expect, patch ? &*patch : nullptr);

  patchcall::Result<patchcall::ThreadScope> scope = vm->attachThread("tinyvm-main");
  if (!scope) {
    std::fprintf(stderr, "tinyvm: %s\n", scope.status().toString().c_str());
    return 2;
  }
  patchcall::Result<int64_t> result = int64_t{0};
  for (uint64_t i = 0; i < o.iterations && result; ++i) result = vm->call(*entry, o.args);
  if (!result) {
    std::fprintf(stderr, "tinyvm: %s\n", result.status().toString().c_str());
    return 2;
  }
  std::printf("%" PRId64 "\n", *result);
  if (o.stats) printStats(*vm, vm->runtime());
  return 0;
}

}  // namespace tinyvm::cli
