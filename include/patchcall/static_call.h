// patchcall — a typed static call callable from C++.
#pragma once

#include <string_view>

#include "patchcall/runtime.h"

namespace patchcall {

template <typename Sig>
class StaticCall;

// StaticCall<int(int)> sq = *StaticCall<int(int)>::create(rt, &square);
// sq(3); sq.update(&cube);  // every JIT site bound to sq.key() follows
//
// operator() calls the current target through the key's target cell (one well-predicted
// indirect call, as cheap as a function pointer); trampoline() is the key's `jmp rel32`
// stub, for callers that need one fixed code address (e.g. to store in a vtable or hand
// to C code). Both follow update() with the same guarantee as the JIT sites.
template <typename R, typename... Args>
class StaticCall<R(Args...)> {
 public:
  using Fn = R (*)(Args...);

  static Result<StaticCall> create(Runtime& rt, Fn initial, std::string_view name = {}) {
    Result<Key> key = rt.createKey(reinterpret_cast<const void*>(initial), name);
    if (!key) return key.status();
    Result<const void*> tramp = rt.trampoline(*key);
    if (!tramp) return tramp.status();
    Result<const void* const*> cell = rt.targetCell(*key);
    if (!cell) return cell.status();
    return StaticCall(rt, *key, reinterpret_cast<Fn>(const_cast<void*>(*tramp)), *cell);
  }

  R operator()(Args... args) const {
    const void* target = __atomic_load_n(cell_, __ATOMIC_ACQUIRE);
    return reinterpret_cast<Fn>(const_cast<void*>(target))(args...);
  }
  Fn trampoline() const noexcept { return trampoline_; }
  Key key() const noexcept { return key_; }

  // Returns the previous target.
  Result<Fn> update(Fn target, const UpdateOptions& options = {}) {
    Result<const void*> old = rt_->update(key_, reinterpret_cast<const void*>(target), options);
    if (!old) return old.status();
    return reinterpret_cast<Fn>(const_cast<void*>(*old));
  }
  Fn target() const {
    Result<const void*> t = rt_->target(key_);
    return t ? reinterpret_cast<Fn>(const_cast<void*>(*t)) : nullptr;
  }

 private:
  StaticCall(Runtime& rt, Key key, Fn tramp, const void* const* cell)
      : rt_(&rt), key_(key), trampoline_(tramp), cell_(cell) {}
  Runtime* rt_;
  Key key_;
  Fn trampoline_;
  const void* const* cell_;
};

}  // namespace patchcall
