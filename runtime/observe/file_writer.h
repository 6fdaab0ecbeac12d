// patchcall — the file plumbing perf map and jitdump share: open, write all, disable once.
#pragma once

#include <string>
#include <string_view>

#include "../process_descriptor.h"
#include "patchcall/status.h"

namespace patchcall::observe {

// An append-only file written with one write(2) per record (so a crash loses at most the
// record being written, and no stdio buffer is shared with the embedder). After the first
// failure the writer is disabled: that failure's Status is returned once, later writes are
// dropped and return ok, so a full disk costs one diagnostic, not one per install.
class FileWriter {
 public:
  FileWriter() = default;
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  ~FileWriter() { close(); }

  // Creates (truncates, unless `truncate` is false: appends) `path`; `what` names the
  // feature in messages ("perf map").
  Status open(std::string path, std::string_view what, bool readable = false, bool truncate = true);
  Status write(const void* data, size_t size);
  // Closes the file if this process opened it; later writes are dropped.
  void close() { fd_.close(); }
  // In a fork child: closes the descriptor `parent` opened (O_APPEND shared with the parent:
  // the child must never write through it) before the child opens a file of its own.
  void closeInherited(pid_t parent) const noexcept { fd_.closeInherited(parent); }
  // Marks the writer failed with `status` (which is returned), as a failed write does.
  Status fail(Status status);

  // Open, and opened by this process (not inherited through fork()).
  bool enabled() const noexcept { return fd_.openHere(); }
  // Open here or inherited from the parent: what afterForkInChild() replaces.
  bool isOpen() const noexcept { return fd_.held(); }
  int fd() const noexcept { return fd_.fd(); }
  const std::string& path() const noexcept { return path_; }

 private:
  detail::ProcessDescriptor fd_;
  std::string path_;
  std::string what_;
};

}  // namespace patchcall::observe
