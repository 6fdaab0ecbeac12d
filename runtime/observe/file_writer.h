// patchcall — the file plumbing perf map and jitdump share: open, write all, disable once.
#pragma once

#include <string>
#include <string_view>

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
  // Closes the file; later writes are dropped. After fork() the child calls it on the
  // parent's descriptor (O_APPEND shared with the parent: it must never write through it).
  void close();
  // Marks the writer failed with `status` (which is returned), as a failed write does.
  Status fail(Status status);

  // Open, and opened by this process (not inherited through fork()).
  bool enabled() const noexcept;
  // Open here or inherited from the parent: what afterForkInChild() replaces.
  bool isOpen() const noexcept { return fd_ >= 0; }
  int fd() const noexcept { return fd_; }
  const std::string& path() const noexcept { return path_; }

 private:
  int fd_ = -1;
  int owner_ = 0;  // getpid() at open()
  std::string path_;
  std::string what_;
};

}  // namespace patchcall::observe
