// patchcall-stress — violation records and the fault handlers.
#include "checker.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "isa.h"
#include "options.h"

namespace stress {

thread_local FaultEscape* tlsEscape = nullptr;

namespace {

std::atomic<uint64_t> gByForm[4];  // direct, toggle, breakpoint, unknown
std::atomic<uint64_t> gTotal{0};
std::atomic<int> gDetailCount{0};
Violation gDetails[Checker::kMaxDetails];
std::atomic<bool> gDetailReady[Checker::kMaxDetails];
constexpr int kPrinted = 8;  // violations printed as they happen

// Async-signal-safe formatting into a fixed buffer.
struct Line {
  char buf[512];
  size_t n = 0;
  void str(const char* s) {
    while (*s != '\0' && n < sizeof buf - 1) buf[n++] = *s++;
  }
  void dec(uint64_t v) {
    char t[24];
    int i = 0;
    do t[i++] = static_cast<char>('0' + v % 10), v /= 10;
    while (v != 0);
    while (i > 0 && n < sizeof buf - 1) buf[n++] = t[--i];
  }
  void hex(uint64_t v) {
    str("0x");
    char t[16];
    int i = 0;
    do t[i++] = "0123456789abcdef"[v & 15], v >>= 4;
    while (v != 0);
    while (i > 0 && n < sizeof buf - 1) buf[n++] = t[--i];
  }
  void version(uint64_t tagged) {
    if (tagged == 0) return str("-");
    str("k");
    dec(tagKey(tagged));
    str(":v");
    dec(tagVersion(tagged));
  }
  void flush() {
    buf[n++] = '\n';
    ssize_t r = write(STDERR_FILENO, buf, n);
    (void)r;
  }
};

const char* signalName(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGILL: return "SIGILL";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGTRAP: return "SIGTRAP (an int3 the breakpoint protocol does not own: freed or padding code)";
    default: return "signal";
  }
}

void describe(Line& l, const Violation& v) {
  l.str("patchcall-stress: VIOLATION thread ");
  l.dec(static_cast<uint64_t>(v.thread));
  if (v.site != UINT32_MAX) {
    l.str(" site ");
    l.dec(v.site);
    l.str(" (");
    l.str(formName(static_cast<patchcall::SiteForm>(v.form)));
    l.str(", key ");
    l.dec(v.key);
    l.str(")");
  } else {
    l.str(" site unknown");
  }
  if (v.signal != 0) {
    l.str(": ");
    l.str(signalName(v.signal));
    l.str(" at ");
    l.hex(v.address);
    l.str(" (rip ");
    l.hex(v.rip);
    l.str(v.inArena ? ", JIT code)" : ", outside the JIT arena: library or driver code)");
    if (v.site == UINT32_MAX) return;
    l.str("; key cells now end=");
    l.version(v.pre);
    l.str(" begin=");
    l.version(v.post);
  } else {
    l.str(": call returned ");
    l.version(v.returned);
    l.str(" (raw ");
    l.hex(v.returned);
    l.str("), valid window [");
    l.version(v.pre);
    l.str(", ");
    l.version(v.post);
    l.str("]");
  }
}

void installOne(int sig, void (*handler)(int, siginfo_t*, void*)) {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = handler;
  sa.sa_flags = SA_SIGINFO;  // the signal mask is restored by siglongjmp (sigsetjmp(.., 1))
  sigemptyset(&sa.sa_mask);
  sigaction(sig, &sa, nullptr);
}

}  // namespace

void onFault(int sig, siginfo_t* info, void* context) {
  Checker& c = Checker::instance();
  isa::FaultContext ctx = isa::faultContext(sig, info, context);
  uintptr_t rip = ctx.pc;
  Violation v;
  v.signal = sig;
  v.rip = rip;
  v.address = ctx.address;
  FaultEscape* escape = tlsEscape;
  v.thread = escape != nullptr ? escape->thread : -1;
  bool inJit = escape != nullptr && escape->inJit != 0;
  if (c.code_ != nullptr && inJit) {
    // Inside the caller code itself, or in a target called from it: the return address (on
    // top of the stack, or in the link register) names the site.
    const SiteMeta* m = c.code_->siteAt(rip);
    if (m == nullptr) {
      uintptr_t ret = isa::faultReturnAddress(context);
      if (ret != 0) m = c.code_->siteReturningTo(ret);
    }
    if (m != nullptr) {
      v.site = m->index;
      v.form = static_cast<int>(m->form);
      v.key = m->key;
      v.pre = c.cells_[m->key].end.load(std::memory_order_relaxed);
      v.post = c.cells_[m->key].begin.load(std::memory_order_relaxed);
    }
  }
  v.inArena = rip >= c.arenaBegin_ && rip < c.arenaEnd_;
  if (inJit) {
    c.record(v);
    escape->inJit = 0;
    siglongjmp(escape->jump, sig);
  }
  Line l;
  l.str("patchcall-stress: fatal ");
  l.str(signalName(sig));
  l.str(" at ");
  l.hex(v.address);
  l.str(" (rip ");
  l.hex(rip);
  l.str(") outside the JIT caller loops (");
  if (v.thread >= 0) {
    l.str("caller thread ");
    l.dec(static_cast<uint64_t>(v.thread));
  } else {
    l.str("not a caller thread");
  }
  l.str(")");
  l.flush();
  signal(sig, SIG_DFL);  // returning re-executes the fault and dies by the signal
  if (sig == SIGTRAP) raise(sig);
}

Checker& Checker::instance() {
  static Checker c;
  return c;
}

void Checker::installSignalHandlers() {
  for (int sig : {SIGSEGV, SIGILL, SIGBUS, SIGFPE, SIGTRAP}) installOne(sig, onFault);
}

void Checker::attach(const CallerCode* code, const KeyCells* cells, const void* arena, size_t arenaSize) {
  code_ = code;
  cells_ = cells;
  arenaBegin_ = reinterpret_cast<uintptr_t>(arena);
  arenaEnd_ = arenaBegin_ + arenaSize;
}

void Checker::record(const Violation& v) {
  int form = v.form >= 0 && v.form < 3 ? v.form : 3;
  gByForm[form].fetch_add(1, std::memory_order_relaxed);
  uint64_t n = gTotal.fetch_add(1, std::memory_order_relaxed);
  int slot = gDetailCount.fetch_add(1, std::memory_order_relaxed);
  if (slot < kMaxDetails) {
    gDetails[slot] = v;
    gDetailReady[slot].store(true, std::memory_order_release);
  } else {
    gDetailCount.store(kMaxDetails, std::memory_order_relaxed);
  }
  if (n < kPrinted) {
    Line l;
    describe(l, v);
    l.flush();
  } else if (n == kPrinted) {
    Line l;
    l.str("patchcall-stress: further violations are counted, not printed");
    l.flush();
  }
}

uint64_t Checker::total() const { return gTotal.load(); }
uint64_t Checker::byForm(int form) const { return gByForm[form < 0 || form > 3 ? 3 : form].load(); }

std::vector<Violation> Checker::details() const {
  std::vector<Violation> out;
  int n = std::min(gDetailCount.load(), kMaxDetails);
  for (int i = 0; i < n; ++i) {
    if (gDetailReady[i].load(std::memory_order_acquire)) out.push_back(gDetails[i]);
  }
  return out;
}

}  // namespace stress
