// patchcall — the registry of AOT static keys and calls: registering a module (its segments,
// its records, the sites found in its functions) and unregistering it (static_registry.h).
#include <elf.h>
#include <link.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <unordered_set>

#include "../arch/arch.h"
#include "../format.h"
#include "../trap_table.h"
#include "call_site_discovery.h"
#include "function_bounds.h"
#include "static_registry.h"

namespace patchcall::detail::aot {
namespace {

// The module's segments and .eh_frame_hdr, found from any address inside it.
struct FindModule {
  uintptr_t address;
  Module* out;
  bool found = false;
};

int visitObject(dl_phdr_info* info, size_t, void* arg) {
  auto* f = static_cast<FindModule*>(arg);
  bool inside = false;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD && f->address >= lo && f->address < lo + ph.p_memsz) inside = true;
  }
  if (!inside) return 0;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    uintptr_t lo = info->dlpi_addr + ph.p_vaddr;
    if (ph.p_type == PT_LOAD) {
      f->out->segments.emplace_back(lo, lo + ph.p_memsz);
      if ((ph.p_flags & PF_X) != 0) f->out->executable.emplace_back(lo, lo + ph.p_memsz);
    } else if (ph.p_type == PT_GNU_EH_FRAME) {
      f->out->ehFrameHdr = lo;
    }
  }
  f->out->name = info->dlpi_name != nullptr && info->dlpi_name[0] != '\0' ? info->dlpi_name : "the executable";
  f->found = true;
  return 1;
}

template <typename T>
std::span<const T> section(const void* begin, const void* end) {
  if (begin == nullptr || end == nullptr || end <= begin) return {};
  auto n = static_cast<size_t>(static_cast<const char*>(end) - static_cast<const char*>(begin)) / sizeof(T);
  return {static_cast<const T*>(begin), n};
}

}  // namespace

bool Module::contains(uintptr_t a) const noexcept {
  for (auto [lo, hi] : segments)
    if (a >= lo && a < hi) return true;
  return false;
}
bool Module::executes(uintptr_t a, size_t n) const noexcept {
  for (auto [lo, hi] : executable)
    if (a >= lo && a + n <= hi) return true;
  return false;
}

// ---- modules ----------------------------------------------------------------------------

void StaticRegistry::registerModule(const patchcall_module* handle) {
  if (handle == nullptr) return;
  std::lock_guard<std::mutex> lock(mutex_);
  try {
    for (const Module& m : modules_)
      if (m.handle == handle) return;
    keyPlans_.clear();  // a new module's branches join its keys' batches
    Module& m = modules_.emplace_back();
    m.id = nextId_++;
    m.handle = handle;
    Status s = doRegister(handle, m);
    if (!s) m.status = std::move(s);
  } catch (const std::bad_alloc&) {
    // The module stays unknown: its keys and calls report UNKNOWN_KEY, its code runs as
    // compiled (branches in their default direction, calls through the trampoline).
    if (!modules_.empty() && modules_.back().handle == handle) modules_.pop_back();
  }
}

Status StaticRegistry::doRegister(const patchcall_module* handle, Module& m) {
  FindModule find{reinterpret_cast<uintptr_t>(handle), &m};
  dl_iterate_phdr(&visitObject, &find);
  if (!find.found) return Status(Error::kInvalidArgument, "AOT module at " + hex(find.address) + ": not inside any loaded object");
  if (handle->abi != PATCHCALL_MODULE_ABI) {
    return Status(Error::kInvalidArgument, "AOT module " + m.name + ": compiled against static_module.h ABI " +
                                               std::to_string(handle->abi) + ", this library reads " + std::to_string(PATCHCALL_MODULE_ABI));
  }
  auto keys = section<patchcall_static_key>(handle->keys_begin, handle->keys_end);
  auto calls = section<patchcall_static_call>(handle->calls_begin, handle->calls_end);
  if (keys_.size() + keys.size() > PATCHCALL_STATIC_KEYS_MAX) {
    return Status(Error::kTableFull, "AOT module " + m.name + ": its " + std::to_string(keys.size()) + " static keys do not fit the key table (" +
                                         std::to_string(keys_.size()) + " of " + std::to_string(PATCHCALL_STATIC_KEYS_MAX) +
                                         " in use); the module's keys and calls stay as compiled");
  }
  for (const patchcall_static_key& k : keys) keys_.emplace(reinterpret_cast<uintptr_t>(&k), m.id);
  for (const patchcall_static_call& c : calls) {
    if (!arch::kStaticPatching || arch::isStaticTrampoline(static_cast<const uint8_t*>(c.trampoline))) {
      calls_.emplace(reinterpret_cast<uintptr_t>(&c), m.id);
    }
  }
  if (!arch::kStaticPatching) return Status::ok();
  std::vector<Site> added;
  addBranches(m, added);
  addCalls(m, added);
  addCallSites(m, added);
  std::unordered_set<uintptr_t> touched;
  for (const Site& s : added) {
    sites_[s.object].push_back(s);
    siteAddresses_.insert(s.address);
    touched.insert(s.object);
  }
  // Each object's sites stay in address order: a flip's batch needs no sort.
  for (uintptr_t object : touched) {
    std::vector<Site>& list = sites_[object];
    std::sort(list.begin(), list.end(), [](const Site& a, const Site& b) { return a.address < b.address; });
  }
  // Branches of keys already flipped, calls already retargeted: the module's sites follow.
  return rewrite(added);
}

void StaticRegistry::addBranches(Module& m, std::vector<Site>& added) {
  for (const patchcall_jump_entry& e : section<patchcall_jump_entry>(m.handle->jumps_begin, m.handle->jumps_end)) {
    uintptr_t ref = e.key & ~uintptr_t{1};
    if (!m.contains(ref) || !m.executes(e.code, arch::kStaticSiteSize) || !m.executes(e.target, 1)) continue;
    uintptr_t key = reinterpret_cast<uintptr_t>(*reinterpret_cast<patchcall_static_key* const*>(ref));
    uintptr_t dest = 0;
    arch::StaticInsn insn = arch::decodeStaticSite(e.code, reinterpret_cast<const uint8_t*>(e.code), &dest);
    bool valid = insn == arch::StaticInsn::kNop || (insn == arch::StaticInsn::kJump && dest == e.target);
    if (key == 0 || !valid || siteAddresses_.count(e.code) != 0) continue;
    added.push_back(Site{e.code, key, m.id, SiteKind::kBranch, (e.key & 1) != 0, e.target});
  }
}

void StaticRegistry::addCalls(Module& m, std::vector<Site>& added) {
  for (const patchcall_static_call& c : section<patchcall_static_call>(m.handle->calls_begin, m.handle->calls_end)) {
    auto tramp = reinterpret_cast<uintptr_t>(c.trampoline);
    if (calls_.count(reinterpret_cast<uintptr_t>(&c)) == 0 || !m.executes(tramp, PATCHCALL_SCT_SIZE)) continue;
    added.push_back(Site{tramp, reinterpret_cast<uintptr_t>(&c), m.id, SiteKind::kTrampoline, false, 0});
  }
}

void StaticRegistry::addCallSites(Module& m, std::vector<Site>& added) {
  std::unordered_set<uintptr_t> claimed;
  auto taken = [&](uintptr_t a) { return claimed.count(a) != 0 || siteAddresses_.count(a) != 0; };
  for (const patchcall_call_site_entry& e : section<patchcall_call_site_entry>(m.handle->sites_begin, m.handle->sites_end)) {
    FunctionBounds fn;
    if (e.call == nullptr || !m.executes(e.marker, 1) || !functionBounds(m.ehFrameHdr, e.marker, &fn)) continue;
    auto tramp = reinterpret_cast<uintptr_t>(e.call->trampoline);
    if (!arch::isStaticTrampoline(reinterpret_cast<const uint8_t*>(tramp))) continue;
    FoundCall found;
    if (!findCallAfterMarker(e.marker, fn.end, tramp, taken, &found) || !m.executes(found.address, arch::kStaticSiteSize)) continue;
    // With shadow stacks the handler cannot emulate a call: the call keeps its trampoline
    // (a tail call's jmp is emulated as a jump, which needs no shadow stack entry).
    if (arch::kBreakpointProtocol && !found.tail && TrapTable::callEmulationBlocked()) continue;
    claimed.insert(found.address);
    added.push_back(Site{found.address, reinterpret_cast<uintptr_t>(e.call), m.id, found.tail ? SiteKind::kTailCall : SiteKind::kCall,
                         false, found.original});
  }
}

void StaticRegistry::unregisterModule(const patchcall_module* handle) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = std::find_if(modules_.begin(), modules_.end(), [&](const Module& m) { return m.handle == handle; });
  if (it == modules_.end()) return;
  const Module& m = *it;
  keyPlans_.clear();
  // Its objects (and their sites anywhere) and its sites (of any object) are forgotten.
  for (auto k = keys_.begin(); k != keys_.end();) k = k->second == m.id ? keys_.erase(k) : std::next(k);
  for (auto c = calls_.begin(); c != calls_.end();) c = c->second == m.id ? calls_.erase(c) : std::next(c);
  for (auto s = sites_.begin(); s != sites_.end();) {
    std::vector<Site>& list = s->second;
    bool objectGone = m.contains(s->first);
    list.erase(std::remove_if(list.begin(), list.end(),
                              [&](const Site& site) {
                                bool gone = objectGone || site.module == m.id;
                                if (gone) siteAddresses_.erase(site.address);
                                return gone;
                              }),
               list.end());
    s = list.empty() ? sites_.erase(s) : std::next(s);
  }
  modules_.erase(it);
}

Status StaticRegistry::moduleStatus(uintptr_t address) {
  std::lock_guard<std::mutex> lock(mutex_);
  for (const Module& m : modules_)
    if (m.contains(address)) return m.status;
  return Status(Error::kUnknownKey, "no registered AOT module contains " + hex(address));
}

Status StaticRegistry::unknown(uintptr_t object, const char* what) {
  for (const Module& m : modules_)
    if (m.contains(object) && !m.status) return m.status;
  return Status(Error::kUnknownKey, hex(object) + " is not a " + what + " of a loaded module (defined with PATCHCALL_DEFINE_" +
                                        (std::strcmp(what, "static key") == 0 ? "STATIC_KEY_*" : "STATIC_CALL") +
                                        "; a dlclose'd library's are forgotten)");
}

}  // namespace patchcall::detail::aot
