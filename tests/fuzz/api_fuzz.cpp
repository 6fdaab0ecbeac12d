// libFuzzer target over the public API. The input bytes are decoded into a sequence of
// operations on one Runtime (options chosen by the first bytes): create/update/batch/destroy
// keys with good and bad targets, emit and install blobs with every site form at random
// offsets (through jit::Assembler and through raw installCode, correct and corrupted), call
// them, retire blobs and callbacks, barrier/poll/synchronize with tiny deadlines, register
// threads, foreign sites, and bad arguments of every kind.
//
// A model tracks what the runtime should hold. After every operation:
//   - each error is one the model allows for that input (and carries a message);
//   - every live site decodes (fuzz_layout.h: Zydis on x86, the A64 words) and reports
//     (Runtime::site) its key's current target, Direct sites keep their field 4-byte aligned,
//     toggles are well formed (x86; aarch64 refuses toggle and breakpoint sites, and the model
//     expects the refusal);
//   - every trampoline jumps to its key's target (directly or through a veneer);
//   - RuntimeStats agrees with the model (keys, blobs, sites, updates, retirements);
//   - code the model can evaluate is called and must return the value the model computes.
// Build and run: docs/sanitizers.md ("Fuzzing"). Replay a file: api_fuzz <file>.
#include <cstdlib>
#include <cstring>
#include <string>

#include "fuzz_code.h"
#include "fuzz_session.h"

namespace patchcall::fuzz {

// ---- driver ----------------------------------------------------------------------------------

bool Session::start() {
  static const size_t kArenas[] = {size_t{64} << 10, size_t{128} << 10, size_t{1} << 20, size_t{4} << 20};
  uint8_t o = in_.u8(), p = in_.u8();
  options_.arenaSize = kArenas[o & 3];
  options_.allowVeneers = (o & 4) == 0;
  options_.targetAlignment = (o & 8) != 0 ? 16 : 1;
  options_.backgroundReclaimer = (o & 0x30) == 0x30;
  options_.sync = (o & 0xC0) == 0xC0 ? SyncMethod::kMprotectIpi : SyncMethod::kAuto;
  // Under qemu-user (scripts/test-aarch64 sets PATCHCALL_SYNC=emulator-remap) only the emulator's
  // sync, which kAuto becomes there, makes qemu drop its translations of rewritten code: with
  // the mprotect-IPI fallback a blob installed where a freed one was ran the freed one's code.
  const char* envSync = std::getenv("PATCHCALL_SYNC");
  if (envSync != nullptr && std::strcmp(envSync, "emulator-remap") == 0) options_.sync = SyncMethod::kAuto;
  options_.maxSites = (p & 3) == 0 ? 4 + (p >> 5) : 1u << 24;
  options_.maxThreads = (p & 4) != 0 ? 1 : 16;
  options_.maxKeys = (p & 8) != 0 ? 3 + ((p >> 4) & 7) : 1u << 20;
  options_.graceDeadline = milliseconds(10);  // timeouts are expected (stuck helper): keep them cheap
  options_.diagnosticSink = [](const std::string&) {};
  options_.patchObserver = [this](const PatchEvent& e) {
    shared_.patchEvents.fetch_add(1);
    if (!inArena(e.site) && !(foreign_ && e.site == foreign_->at) && e.site != foreignCode()->call()) {
      shared_.report("patch observer saw a write at " + hex(e.site) + " outside the arena and the foreign site");
    }
    if (!reenterFromObserver_ || keys_.empty()) return;
    Result<const void*> u = rt_->update(keys_[0].key, cxxTargets()[0].fn);
    if (u.code() != Error::kReentrantUpdate) shared_.report("update from the patch observer returned " + str(u.status()));
    Result<Key> k = rt_->createKey(cxxTargets()[0].fn);
    if (k.code() != Error::kReentrantUpdate) shared_.report("createKey from the patch observer returned " + str(k.status()));
    Result<Blob> b = rt_->installCode(code::retBytes(), {});
    if (b.code() != Error::kReentrantUpdate && b.code() != Error::kArenaExhausted) shared_.report("installCode from the patch observer returned " + str(b.status()));
  };
  trace() = "  options: arena " + std::to_string(options_.arenaSize) + ", veneers " + std::to_string(options_.allowVeneers) +
            ", align " + std::to_string(options_.targetAlignment) + ", background " + std::to_string(options_.backgroundReclaimer) +
            ", maxSites " + std::to_string(options_.maxSites) + ", maxThreads " + std::to_string(options_.maxThreads) +
            ", maxKeys " + std::to_string(options_.maxKeys) + "\n";
  Result<Runtime> r = Runtime::create(options_);
  if (r.code() == Error::kSyncUnsupported && options_.sync == SyncMethod::kMprotectIpi) {
    options_.sync = SyncMethod::kAuto;  // the fallback is refused on this kernel and CPU (INVLPGB)
    r = Runtime::create(options_);
  }
  FUZZ_CHECK(r.isOk(), "Runtime::create with valid options: " + str(r.status()));
  rt_.emplace(std::move(*r));
  ArenaInfo a = rt().arenaInfo();
  arenaLo_ = reinterpret_cast<uintptr_t>(a.rxBase);
  sharedTargets_[0] = rt().noopTarget();
  sharedTargets_[1] = rt().returnZeroTarget();
  arenaHi_ = arenaLo_ + a.size;
  foreignCode()->reset(cxxTargets()[0].fn);
  return true;
}

void Session::step() {
  ++ops_;
  switch (in_.below(24)) {
    case 0: case 1: opNewReturner(); break;
    case 2: case 3: opCreateKey(); break;
    case 4: opStaticCall(); break;
    case 5: case 6: opUpdate(); break;
    case 7: opBatch(); break;
    case 8: opDestroyKey(); break;
    case 9: case 10: opEmitBlob(); break;
    case 11: opRawBlob(); break;
    case 12: opBadCode(); break;
    case 13: case 14: opCall(); break;
    case 15: opRetireBlob(); break;
    case 16: opRetireCallback(); break;
    case 17: opBarrierOrPoll(); break;
    case 18: opSynchronize(); break;
    case 19: opSelfThread(); break;
    case 20: opHelperThread(); break;
    case 21: opForeignSite(); break;
    case 22: opSiteQuery(); break;
    default: opObserver(); break;
  }
  checkAll();
}

}  // namespace patchcall::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  patchcall::fuzz::Input in(data, size);
  patchcall::fuzz::Session session(in);
  if (!session.start()) return 0;
  while (!session.done()) session.step();
  return 0;
}
