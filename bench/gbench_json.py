"""Google Benchmark JSON, read one way for bench/ratios.py, scripts/bench-report and
scripts/bench-table (Python 3 standard library only).

  doc = gbench_json.load("bench.json")        # a file, '-' for stdin; console text before the JSON is skipped
  r = gbench_json.Results(doc, stat="median")
  r.entries["BM_Call_Site"]                   # one record per benchmark, see below
  r.time_ns("BM_Call_Site", "cpu")            # real (default) or cpu time of one iteration, in ns
  r.errors                                    # ["BM_Urcu_GracePeriod/1: liburcu-qsbr missing", ...]

The rules, for every script alike:
  - names: a record's run_name (else name) without the parts Google Benchmark appends
    (real_time, manual_time, min_time:*, iterations:*, repeats:*), so
    "BM_GracePeriod/1/min_time:0.200/real_time" is "BM_GracePeriod/1"; threads:N is kept, as
    it tells apart the runs of one benchmark at several thread counts
    ("BM_Update_Concurrent/real_time/threads:4" is "BM_Update_Concurrent/threads:4");
  - repetitions: the aggregate named `stat` ("median" or "mean") when the JSON has it (with
    --benchmark_repetitions); otherwise every numeric field is the median (or mean) of that
    field over the benchmark's runs (one run: that run itself). Other aggregates are ignored;
  - units: time_unit (ns, us, ms, s) is converted to ns; counters are taken as they are;
  - errors: a record with error_occurred is left out of `entries`; `errors` lists each
    "name: message" once, in the order of the document.
"""
import json
import re
import statistics
import sys

UNIT_NS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}
_APPENDED = re.compile(r"^(real_time|manual_time|min_time:.*|iterations:.*|repeats:.*)$")


def parse(text):
    """The JSON document in `text` (console output may precede it when stdout was captured)."""
    return json.loads(text[text.index("{"):])


def load(path):
    """The JSON document of file `path` ('-': stdin)."""
    if path == "-":
        return parse(sys.stdin.read())
    with open(path, encoding="utf-8") as f:
        return parse(f.read())


def base_name(name):
    """BM_GracePeriod/1/min_time:0.200/real_time -> BM_GracePeriod/1"""
    return "/".join(p for p in name.split("/") if not _APPENDED.match(p))


def record_name(record):
    return base_name(record.get("run_name", record["name"]))


def combine(runs, stat="median"):
    """One record from repeated runs: each numeric field's median (or mean) over the runs."""
    if len(runs) == 1:
        return runs[0]
    pick = statistics.median if stat == "median" else statistics.mean
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = pick([r[key] for r in runs if key in r])
    return out


def time_ns(record, kind="real"):
    """real_time (kind "real") or cpu_time (kind "cpu") of one iteration, in ns."""
    return record[kind + "_time"] * UNIT_NS[record.get("time_unit", "ns")]


def items_per_iteration(record):
    """Items (calls, loop iterations) of one iteration: items_per_second is computed from real
    time, every benchmark here being UseRealTime. None without items_per_second."""
    ips = record.get("items_per_second")
    return ips * time_ns(record, "real") * 1e-9 if ips else None


def per_item_ns(record, kind="real"):
    """Real or CPU time per processed item, in ns; None without items_per_second."""
    n = items_per_iteration(record)
    if not n:
        return None
    return 1e9 / record["items_per_second"] if kind == "real" else time_ns(record, kind) / n


class Results:
    """The records of one document by base name, one per benchmark (rules: module docstring)."""

    def __init__(self, doc, stat="median"):
        doc = doc or {}
        self.context = doc.get("context", {})
        self.entries = {}
        runs, errors = {}, {}
        for b in doc.get("benchmarks", []):
            name = record_name(b)
            if b.get("error_occurred"):
                errors.setdefault((name, b.get("error_message", "")))
            elif b.get("run_type") == "aggregate":
                if b.get("aggregate_name") == stat:
                    self.entries[name] = b
            else:
                runs.setdefault(name, []).append(b)
        for name, group in runs.items():
            if name not in self.entries:
                self.entries[name] = combine(group, stat)
        self.error_items = list(errors)  # (name, message)
        self.errors = ["%s: %s" % e for e in self.error_items]

    def time_ns(self, name, kind="real"):
        return time_ns(self.entries[name], kind)

    def per_item_ns(self, name, kind="real"):
        return per_item_ns(self.entries[name], kind)

    def names(self, prefix):
        return sorted(n for n in self.entries if n.startswith(prefix))
