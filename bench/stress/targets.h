// patchcall-stress — the targets: JIT code that returns tag(key, version) (in rax, x0).
//
// Two sources:
//  * Pool (default): each key owns kPoolSize fixed entries that return the value of their
//    data cell (isa.h); version v uses entry v % kPoolSize, whose data cell is set to tag(key, v)
//    after `begin` is published and before the update (see versions.h). No code is written
//    after startup except the sites themselves.
//  * Retire (--retire): every batch installs a fresh blob with one entry per key that
//    returns its tag as an immediate. A blob is retired through rt.retire(blob) once no key targets it
//    anymore; the runtime frees it (int3-filled) after a grace period and a stack scan.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "patchcall/jit.h"

namespace stress {

class TargetSource {
 public:
  static constexpr uint32_t kPoolSize = 32;

  // `spread` places pool entries 0x110 bytes apart (fault tests): a torn rel32 between two
  // entries then lands on trapping padding (isa.h) instead of another valid entry.
  // `yield` (--fibers with --retire): every retire-mode target starts with a yield point, so a
  // fiber parks with a return address into a target blob that is then retired.
  TargetSource(patchcall::Runtime& rt, uint32_t keys, bool retire, bool spread, void (*yield)() = nullptr);
  ~TargetSource();

  // Version 0 of every key; call once before creating the keys.
  bool init(std::vector<const void*>* initialTargets, std::string* error);

  // Step 1 (before `begin` is published): the code for `versions[i]` of `keys[i]`.
  bool prepare(const uint32_t* keys, const uint32_t* versions, size_t n, std::vector<const void*>* targets,
               std::string* error);
  // Step 2 (after `begin`, before the update): pool mode stores the tags in the data cells.
  void publish(const uint32_t* keys, const uint32_t* versions, size_t n);
  // Step 3 (after the update returned): retire-mode blobs nobody targets go to rt.retire.
  // Returns how many blobs were retired, or -1 with `error` set.
  int64_t committed(const uint32_t* keys, size_t n, std::string* error);

 private:
  struct TargetBlob {
    patchcall::Blob blob;
    std::atomic<uint32_t> refs{0};
  };
  bool emitBlob(const uint32_t* keys, const uint32_t* versions, size_t n, std::vector<const void*>* targets,
                TargetBlob** out, std::string* error);

  patchcall::Runtime& rt_;
  uint32_t keys_;
  bool retire_;
  uint32_t stride_;
  void (*yield_)();
  // Pool mode.
  std::unique_ptr<std::atomic<uint64_t>[]> cells_;  // [key * kPoolSize + entry]
  const uint8_t* pool_ = nullptr;
  // Retire mode: the blob each key targets, and the blob each pending batch moved it to.
  std::unique_ptr<std::atomic<TargetBlob*>[]> current_;
  std::unique_ptr<TargetBlob*[]> pending_;  // written by the key's (single) updater only
};

}  // namespace stress
