// patchcall-stress — target code: the fixed pool and the per-batch blobs of --retire.
#include "targets.h"

#include <cstring>

#include "callers.h"
#include "isa.h"
#include "versions.h"

namespace stress {
namespace {

// A run of the ISA's trapping fill, to pad between targets.
struct TrapFill {
  uint8_t bytes[64];
  TrapFill() { std::memset(bytes, isa::kTrapFillByte, sizeof bytes); }
};
const TrapFill kTrapFill;

// Pads with the trapping fill up to the next multiple of `stride` (so a stray jump into
// padding traps).
bool padTo(patchcall::jit::Assembler& a, size_t stride) {
  size_t pad = (stride - a.offset() % stride) % stride;
  while (pad > 0) {
    size_t n = pad < sizeof kTrapFill.bytes ? pad : sizeof kTrapFill.bytes;
    if (a.embed(kTrapFill.bytes, n) != asmjit::kErrorOk) return false;
    pad -= n;
  }
  return true;
}

}  // namespace

TargetSource::TargetSource(patchcall::Runtime& rt, uint32_t keys, bool retire, bool spread, void (*yield)())
    : rt_(rt), keys_(keys), retire_(retire), stride_(static_cast<uint32_t>(isa::targetStride(spread))), yield_(yield) {}

TargetSource::~TargetSource() {
  if (current_ == nullptr) return;
  for (uint32_t k = 0; k < keys_; ++k) {
    TargetBlob* b = current_[k].load();
    if (b != nullptr && b->refs.fetch_sub(1) == 1) delete b;  // the runtime frees the code itself
  }
}

bool TargetSource::init(std::vector<const void*>* initial, std::string* error) {
  std::vector<uint32_t> all(keys_), zero(keys_, 0);
  for (uint32_t k = 0; k < keys_; ++k) all[k] = k;
  if (retire_) {
    current_ = std::make_unique<std::atomic<TargetBlob*>[]>(keys_);
    pending_ = std::make_unique<TargetBlob*[]>(keys_);
    TargetBlob* blob = nullptr;
    if (!emitBlob(all.data(), zero.data(), keys_, initial, &blob, error)) return false;
    for (uint32_t k = 0; k < keys_; ++k) current_[k].store(blob), pending_[k] = nullptr;
    return true;
  }
  cells_ = std::make_unique<std::atomic<uint64_t>[]>(size_t{keys_} * kPoolSize);
  patchcall::jit::Assembler a(rt_);
  for (uint32_t k = 0; k < keys_; ++k) {
    for (uint32_t e = 0; e < kPoolSize; ++e) {
      std::atomic<uint64_t>& cell = cells_[size_t{k} * kPoolSize + e];
      cell.store(tag(k, e == 0 ? 0 : UINT32_MAX));  // entries other than 0 are not current yet
      bool ok = isa::emitPoolEntry(a, &cell).isOk() && padTo(a, stride_);
      if (!ok) {
        *error = "emitting the target pool failed";
        return false;
      }
    }
  }
  patchcall::Result<patchcall::Blob> blob = patchcall::jit::install(a, "stress_target_pool");
  if (!blob) {
    *error = "installing the target pool: " + blob.status().toString();
    return false;
  }
  pool_ = static_cast<const uint8_t*>(blob->code);
  for (uint32_t k = 0; k < keys_; ++k) initial->push_back(pool_ + size_t{k} * kPoolSize * stride_);
  return true;
}

bool TargetSource::emitBlob(const uint32_t* keys, const uint32_t* versions, size_t n, std::vector<const void*>* targets,
                            TargetBlob** out, std::string* error) {
  patchcall::jit::Assembler a(rt_);
  std::vector<size_t> offsets;
  for (size_t i = 0; i < n; ++i) {
    offsets.push_back(a.offset());
    // The yield point finds the caller group's CallerFrame where the group keeps it (isa.h).
    bool ok = (yield_ == nullptr || isa::emitYieldPoint(a, yield_, true).isOk()) &&
              isa::emitTagEntry(a, tag(keys[i], versions[i])).isOk() && padTo(a, stride_);
    if (!ok) {
      *error = "emitting a target blob failed";
      return false;
    }
  }
  patchcall::Result<patchcall::Blob> blob = patchcall::jit::install(a, "stress_targets");
  if (!blob) {
    *error = "installing a target blob: " + blob.status().toString();
    return false;
  }
  auto* tb = new TargetBlob;
  tb->blob = *blob;
  tb->refs.store(static_cast<uint32_t>(n));
  for (size_t off : offsets) targets->push_back(static_cast<const uint8_t*>(blob->code) + off);
  *out = tb;
  return true;
}

bool TargetSource::prepare(const uint32_t* keys, const uint32_t* versions, size_t n, std::vector<const void*>* targets,
                           std::string* error) {
  targets->clear();
  if (!retire_) {
    for (size_t i = 0; i < n; ++i) {
      targets->push_back(pool_ + (size_t{keys[i]} * kPoolSize + versions[i] % kPoolSize) * stride_);
    }
    return true;
  }
  TargetBlob* blob = nullptr;
  if (!emitBlob(keys, versions, n, targets, &blob, error)) return false;
  for (size_t i = 0; i < n; ++i) pending_[keys[i]] = blob;
  return true;
}

void TargetSource::publish(const uint32_t* keys, const uint32_t* versions, size_t n) {
  if (retire_) return;
  for (size_t i = 0; i < n; ++i) {
    cells_[size_t{keys[i]} * kPoolSize + versions[i] % kPoolSize].store(tag(keys[i], versions[i]),
                                                                         std::memory_order_release);
  }
}

int64_t TargetSource::committed(const uint32_t* keys, size_t n, std::string* error) {
  if (!retire_) return 0;
  int64_t retired = 0;
  for (size_t i = 0; i < n; ++i) {
    TargetBlob* old = current_[keys[i]].exchange(pending_[keys[i]]);
    pending_[keys[i]] = nullptr;
    if (old->refs.fetch_sub(1) != 1) continue;
    patchcall::Status s = rt_.retire(old->blob);
    if (!s.isOk()) {
      *error = "rt.retire(target blob " + std::to_string(old->blob.id) + "): " + s.toString();
      return -1;
    }
    delete old;
    ++retired;
  }
  return retired;
}

}  // namespace stress
