#!/usr/bin/env python3
"""Goal table for patchcall_bench results (issues 2, 3 and 4), from ONE run.

The README's table comes from scripts/bench-table (5 processes, interleaved pairs, sensitivity
controls, load check); this script reads one JSON of the older sequential benchmarks.

Reads Google Benchmark JSON (--benchmark_format=json or --benchmark_out=FILE) and prints a
markdown table: for each goal the two figures, their ratio, the goal and PASS/MISS.

  build/bench/patchcall_bench --benchmark_repetitions=3 \
      --benchmark_report_aggregates_only=true --benchmark_out=bench.json
  python3 bench/ratios.py bench.json

With repetitions the chosen aggregate (--stat, default median) is used; without, the single
run (or each field's median of repeated runs: bench/gbench_json.py states the rules). Figures
use real time (every benchmark is UseRealTime); --time cpu uses CPU time instead, a useful
cross-check on a busy machine (it leaves out time the thread spent preempted, and also time
blocked in the kernel, so it understates syncs).
Python 3 standard library only.
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gbench_json  # noqa: E402  (bench/gbench_json.py: names, repetitions, units, errors)


class Results(gbench_json.Results):
    """gbench_json.Results with this table's time kind; a missing figure raises KeyError."""

    def __init__(self, doc, stat, time_kind):
        super().__init__(doc, stat)
        self.time_kind = time_kind

    def time_ns(self, name):
        """Time of one benchmark iteration, in ns."""
        return super().time_ns(name, self.time_kind)

    def per_item_ns(self, name):
        """Time per processed item (one call, one loop iteration), in ns."""
        ns = super().per_item_ns(name, self.time_kind)
        return self.time_ns(name) if ns is None else ns

    def counter(self, name, key):
        return self.entries[name][key]


def fmt_ns(ns):
    if ns >= 1e6:
        return "%.2f ms" % (ns / 1e6)
    if ns >= 1e3:
        return "%.2f us" % (ns / 1e3)
    if ns >= 10:
        return "%.1f ns" % ns
    return "%.2f ns" % ns


class Goal:
    """a / b compared with `limit` (<= unless at_least; None: shown for information only);
    figures are (label, value, formatter)."""

    def __init__(self, title, a, b, limit, at_least=False):
        self.title, self.a, self.b, self.limit, self.at_least = title, a, b, limit, at_least


def goals(r):
    memb = "BM_Membarrier_SyncCore"
    out = []

    def per_call(name):
        return (name, lambda: r.per_item_ns(name), fmt_ns)

    def per_iter(name):
        return (name, lambda: r.time_ns(name), fmt_ns)

    out.append(Goal("Direct site vs hard-wired call", per_call("BM_Call_Site"), per_call("BM_Call_Direct"), 1.02))
    out.append(Goal("Trampoline vs hard-wired call", per_call("BM_Call_Trampoline"), per_call("BM_Call_Direct"), 1.10))
    out.append(Goal("Trampoline stub (jmp rel32) vs hard-wired call", per_call("BM_Call_TrampolineStub"),
                    per_call("BM_Call_Direct"), None))
    out.append(Goal("Retpoline vs Direct site", per_call("BM_Call_Retpoline"), per_call("BM_Call_Site"), 3.0, at_least=True))
    out.append(Goal("Update of one site vs one membarrier", per_iter("BM_Update_OneSite"), per_iter(memb), 1.2))
    n = 10000
    out.append(Goal("Batch of 10,000 vs 2 membarriers + 30 ns/site", per_iter("BM_Update_Batch/%d" % n),
                    ("2 x %s + %d x 30 ns" % (memb, n), lambda: 2 * r.time_ns(memb) + 30.0 * n, fmt_ns), 1.0))
    out.append(Goal("Registry metadata per site (1M sites) vs 32 bytes",
                    ("BM_Registry_BytesPerSite bytes_per_site", lambda: r.counter("BM_Registry_BytesPerSite", "bytes_per_site"),
                     lambda v: "%.1f B" % v),
                    ("32 bytes", lambda: 32.0, lambda v: "%.0f B" % v), 1.0))
    out.append(Goal("JIT loop with safepoint poll vs without", per_call("BM_SafepointPoll_Loop"), per_call("BM_Loop_NoPoll"), 1.02))
    for threads in (1, 2, 4, 8):
        out.append(Goal("Grace period, %d reader thread%s, vs liburcu-qsbr" % (threads, "s" if threads > 1 else ""),
                        per_iter("BM_GracePeriod/%d" % threads), per_iter("BM_Urcu_GracePeriod/%d" % threads), 1.0))
    out.append(Goal("Toggle site vs Direct site", per_call("BM_Call_ToggleSite"), per_call("BM_Call_Site"), 1.05))
    out.append(Goal("Breakpoint update vs one membarrier", per_iter("BM_Update_Breakpoint"), per_iter(memb), 3.5))
    out.append(Goal("Toggle update excluding its grace wait vs one membarrier",
                    ("BM_Update_Toggle excl_grace_ns", lambda: r.counter("BM_Update_Toggle", "excl_grace_ns"), fmt_ns),
                    per_iter(memb), 2.5))
    out.append(Goal("switchStack there and back (BM_FiberSwitch - BM_FiberSwitch_Bare) vs 20 ns",
                    ("BM_FiberSwitch - BM_FiberSwitch_Bare",
                     lambda: r.time_ns("BM_FiberSwitch") - r.time_ns("BM_FiberSwitch_Bare"), fmt_ns),
                    ("20 ns", lambda: 20.0, fmt_ns), 1.0))
    out.append(Goal("What patchcall adds to a fork on the way into the child (child_start_ns /1 - /2) vs copying the used code",
                    ("BM_ForkChild/1 - /2 child_start_ns",
                     lambda: r.counter("BM_ForkChild/1", "child_start_ns") - r.counter("BM_ForkChild/2", "child_start_ns"), fmt_ns),
                    per_iter("BM_ArenaCopy"), 1.0))
    out.append(Goal("Fork round trip with patchcall vs the same process forked without handlers (info)",
                    per_iter("BM_ForkChild/1"), per_iter("BM_ForkChild/2"), None))
    tv = "BM_TinyVm_Fib_SitesOverHardwired"
    out.append(Goal("tinyvm fib(20): site calls vs hard-wired calls (alternating calls)",
                    (tv + " site_ns_per_call", lambda: r.counter(tv, "site_ns_per_call"), fmt_ns),
                    (tv + " hardwired_ns_per_call", lambda: r.counter(tv, "hardwired_ns_per_call"), fmt_ns), 1.05))
    out.append(Goal("Fiber round trip told vs bare (info)", per_iter("BM_FiberSwitch"), per_iter("BM_FiberSwitch_Bare"), None))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="?", default="-", help="benchmark JSON file ('-' for stdin)")
    ap.add_argument("--stat", choices=["median", "mean"], default="median", help="aggregate to use with repetitions")
    ap.add_argument("--time", choices=["real", "cpu"], default="real", help="real (default) or cpu time")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed or a figure is missing")
    args = ap.parse_args()

    r = Results(gbench_json.load(args.json), args.stat, args.time)

    ctx = r.context
    print("Run: %s, %s CPUs at %s MHz, load average %s; %s of %s time%s." % (
        ctx.get("date", "?"), ctx.get("num_cpus", "?"), ctx.get("mhz_per_cpu", "?"),
        " / ".join("%.2f" % x for x in ctx.get("load_avg", [])) or "?", args.stat, args.time,
        ", %s repetitions" % ctx["repetitions"] if "repetitions" in ctx else ""))
    print()
    print("| Goal | Figure A | Figure B | A / B | Goal | Result |")
    print("|---|---|---|---|---|---|")
    missed = 0
    for g in goals(r):
        goal = "-" if g.limit is None else "%s %.2f" % (">=" if g.at_least else "<=", g.limit)
        try:
            a, b = g.a[1](), g.b[1]()
        except KeyError as e:
            print("| %s | %s | %s | - | %s | MISSING (%s) |" % (g.title, g.a[0], g.b[0], goal, e))
            missed += 0 if g.limit is None else 1
            continue
        ratio = a / b if b else float("inf")
        if g.limit is None:
            verdict = "info"
        else:
            ok = ratio >= g.limit if g.at_least else ratio <= g.limit
            missed += 0 if ok else 1
            verdict = "PASS" if ok else "MISS"
        print("| %s | %s: %s | %s: %s | %.3f | %s | %s |" % (
            g.title, g.a[0], g.a[2](a), g.b[0], g.b[2](b), ratio, goal, verdict))
    if r.errors:
        print()
        for e in sorted(r.errors):
            print("- benchmark error: " + e)
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
