// patchcall — runtime configuration.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace patchcall {

// How a call site is patched. See README "Site forms".
enum class SiteForm : uint8_t {
  kDirect = 0,      // E8 rel32 with a 4-byte aligned rel32: one aligned store per update
  kToggle = 1,      // 2-byte toggle + two calls: patch the inactive call, flip the toggle
  kBreakpoint = 2,  // any 5-byte E8 call: int3 protocol (text_poke_bp) with a SIGTRAP handler
  kAuto = 3,        // emission picks Direct where the rel32 can be aligned, else Breakpoint
};

// How every core is made to serialize its instruction stream after a code write.
enum class SyncMethod : uint8_t {
  kAuto = 0,         // membarrier SYNC_CORE; if the kernel refuses, the mprotect-IPI fallback
  kMembarrier = 1,   // membarrier SYNC_CORE only; Runtime::create fails if the kernel refuses
  kMprotectIpi = 2,  // fallback: an mprotect downgrade forces a TLB-shootdown IPI on every
                     // core running this process; the interrupt return serializes (HotSpot's
                     // pre-membarrier serialize_memory trick). Only where every remote TLB
                     // flush is an IPI: refused (kSyncUnsupported) on Linux >= 6.15 with a CPU
                     // that has INVLPGB (broadcast flushes, no IPI), or when that is unknown
  kEmulatorRemap = 3,  // qemu-user only, never on hardware: membarrier SYNC_CORE plus, after every
                       // write phase, the arena's RX view mapped again over itself (MAP_FIXED from
                       // its memfd), which makes qemu drop the translations it keeps of code
                       // written through the RW view. Chosen only here or, with kAuto, by the
                       // environment variable PATCHCALL_SYNC=emulator-remap (scripts/test-aarch64)
};

// One code write, reported to Options::patchObserver under the text mutex (e.g. for a
// profiler's perf map or a debugger). The observer must not call back into the runtime's
// update path: doing so returns Error::kReentrantUpdate.
struct PatchEvent {
  const void* site;       // RX address of the site (first byte of the instruction)
  const void* newTarget;  // where the site now calls (a veneer when the target is far)
  SiteForm form;
};

// Which blobs get an in-memory ELF image for gdb's JIT interface (runtime/observe/gdb_jit.h).
enum class GdbJitMode : uint8_t {
  kDescribed = 0,  // blobs installed with a name, named ranges or a frame layout (CodeInfo)
  kAll = 1,        // every blob (unnamed ones as "jit_<hex address>")
  kOff = 2,
};

struct Options {
  // Code arena: reserved once, mapped twice (RX + RW) through a memfd.
  size_t arenaSize = size_t{256} << 20;
  // Placement hint for the RX mapping; nullptr means "next to this executable's text",
  // searched in /proc/self/maps.
  const void* arenaHint = nullptr;
  // Far targets go through shared veneers (x86 jmp [rip+0]; .quad target, A64 ldr x16; br x16).
  // When false a far target is an Error::kOutOfRange.
  bool allowVeneers = true;
  // A veneer to code outside the arena (C++, a shared library) stays for the runtime's life
  // once made, unused or not (16 bytes per far target, reused by every later branch to it): a
  // thread patchcall does not track, an unregistered C++ caller of trampoline(key), may be
  // between the trampoline's jump and the veneer's at any moment. True frees such a veneer a
  // grace period after its last branch moved away, as veneers into the arena always are; only
  // for runtimes whose every caller of trampolines is a registered thread.
  bool freeVeneersOutsideArena = false;
  // Targets must be multiples of this (1 accepts any byte address, as x86 does).
  uint32_t targetAlignment = 1;
  SyncMethod sync = SyncMethod::kAuto;

  // Quiescence: the default bound for synchronize() and blob reclamation.
  std::chrono::milliseconds graceDeadline{10000};
  // Spin this long before sleeping on the futex while waiting for a grace period (only
  // while every pending thread has a CPU of its own: as liburcu, spin briefly, then sleep).
  std::chrono::microseconds graceSpin{3};
  // Retired callbacks and blobs are processed by a background thread; when false the
  // runtime owns no thread and the embedder calls barrier()/poll().
  bool backgroundReclaimer = true;
  // Deferred updates (Publish::kDeferred) nobody publishes are published by the background
  // reclaimer this long after the first of them (in manual mode: by the next poll()), so an
  // old target never stays reachable indefinitely.
  std::chrono::microseconds publishDelay{1000};

  // Checked mode: safepoint(), goOffline/goOnline and OfflineScope on a thread that is not
  // registered (so it has no protection) send one diagnostic per thread to the sink of every
  // runtime created with this set. Costs nothing on a registered thread's safepoint().
  bool reportUnregisteredThreads = false;

  // Resource limits (each reached limit is an error value, the runtime stays usable).
  uint32_t maxThreads = 1024;
  uint32_t maxSites = uint32_t{1} << 24;
  uint32_t maxKeys = uint32_t{1} << 20;

  // Profilers and debuggers (README "Profiling and debugging JIT code"). Every write happens
  // under the text mutex at install, free and update, never on a call path; a failing file
  // write turns that file off with one diagnostic. The environment can turn them on for an
  // embedder that does not: PATCHCALL_PERF_MAP=1, PATCHCALL_JITDUMP=1 (or =<directory>),
  // read by Runtime::create.
  // /tmp/perf-<pid>.map: a line per blob (or named range), trampoline, veneer and the
  // safepoint stub.
  bool perfMap = false;
  // <jitDumpDirectory>/jit-<pid>.dump with the code bytes (perf inject --jit); a new load
  // record of each blob an update rewrote, once per update.
  bool jitDump = false;
  std::string jitDumpDirectory;  // empty: $JITDUMPDIR, else /tmp
  // An ELF image per blob (a few hundred bytes, and an attached gdb re-reads its symbols at
  // each registration). Unwinding through a declared frame layout does not depend on it.
  GdbJitMode gdbJit = GdbJitMode::kDescribed;

  // Called under the text mutex for every site or trampoline write.
  std::function<void(const PatchEvent&)> patchObserver;
  // Receives diagnostics (a stuck thread, a refused membarrier). Default: stderr.
  std::function<void(const std::string&)> diagnosticSink;
};

}  // namespace patchcall
