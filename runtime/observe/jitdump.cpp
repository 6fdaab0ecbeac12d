// patchcall — JitDump (see jitdump.h).
#include "jitdump.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "../arch/arch.h"

namespace patchcall::observe {
namespace {

// perf record -k mono samples CLOCK_MONOTONIC: the records must use the same clock.
uint64_t monotonicNanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

std::string JitDump::defaultDirectory() {
  const char* dir = std::getenv("JITDUMPDIR");
  return dir != nullptr && *dir != '\0' ? dir : "/tmp";
}

Status JitDump::open(std::string directory) {
  close();
  directory_ = std::move(directory);
  // Readable: the marker mmap needs a descriptor open for reading.
  PATCHCALL_TRY(file_.open(directory_ + "/jit-" + std::to_string(::getpid()) + ".dump", "jitdump",
                           /*readable=*/true));
  jitdump::FileHeader h{};
  h.magic = jitdump::kMagic;
  h.version = jitdump::kVersion;
  h.totalSize = sizeof h;
  h.elfMach = arch::kElfMachine;
  h.pid = static_cast<uint32_t>(::getpid());
  h.timestamp = monotonicNanos();
  PATCHCALL_TRY(file_.write(&h, sizeof h));
  markerSize_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* m = mmap(nullptr, markerSize_, PROT_READ | PROT_EXEC, MAP_PRIVATE, file_.fd(), 0);
  if (m == MAP_FAILED) {
    const int e = errno;
    return file_.fail({Error::kSystemError, "jitdump: marker mmap(PROT_EXEC) of " + file_.path() +
                                                " failed: " + std::strerror(e) +
                                                " (noexec mount? disabled)"});
  }
  marker_ = m;
  return Status::ok();
}

Status JitDump::writeLoad(uintptr_t start, size_t size, std::string_view name, const uint8_t* bytes) {
  if (!file_.enabled()) return Status::ok();
  if (bytes == nullptr && size > 0) {
    return {Error::kInvalidArgument, "jitdump: code load without its bytes"};
  }
  jitdump::CodeLoad r{};
  r.prefix.id = jitdump::kCodeLoad;
  r.prefix.timestamp = monotonicNanos();
  r.pid = static_cast<uint32_t>(::getpid());
  r.tid = static_cast<uint32_t>(::syscall(SYS_gettid));
  r.vma = start;
  r.codeAddr = start;
  r.codeSize = size;
  r.codeIndex = codeIndex_++;
  const std::string shown = displayName(name, start);
  name = shown;
  const size_t total = sizeof r + name.size() + 1 + size;
  r.prefix.totalSize = static_cast<uint32_t>(total);
  // One write per record: a reader never sees half a record unless the write itself failed.
  std::vector<uint8_t> buf(total);
  std::memcpy(buf.data(), &r, sizeof r);
  std::memcpy(buf.data() + sizeof r, name.data(), name.size());
  buf[sizeof r + name.size()] = 0;
  if (size > 0) std::memcpy(buf.data() + sizeof r + name.size() + 1, bytes, size);
  Status s = file_.write(buf.data(), buf.size());
  if (!s.isOk()) unmapMarker();
  return s;
}

Status JitDump::codeLoaded(const CodeEvent& event) {
  return writeLoad(event.start, event.size, event.name, event.bytes);
}

Status JitDump::codeChanged(uintptr_t start, size_t size, std::string_view name, const uint8_t* bytes) {
  return writeLoad(start, size, name, bytes);
}

Status JitDump::afterForkInChild(pid_t parent, std::span<const CodeEvent> live) {
  if (!file_.isOpen()) return Status::ok();  // never opened, or disabled by a failure
  unmapMarker();
  file_.closeInherited(parent);  // the parent's file: no close record from the child
  PATCHCALL_TRY(open(directory_));
  for (const CodeEvent& e : live) PATCHCALL_TRY(codeLoaded(e));
  return Status::ok();
}

void JitDump::unmapMarker() {
  if (marker_ != nullptr) munmap(marker_, markerSize_);
  marker_ = nullptr;
}

void JitDump::close() {
  if (file_.enabled()) {
    jitdump::RecordPrefix p{jitdump::kCodeClose, sizeof p, monotonicNanos()};
    (void)file_.write(&p, sizeof p);  // best effort: perf reads a dump without it too
  }
  unmapMarker();
  file_.close();
}

}  // namespace patchcall::observe
