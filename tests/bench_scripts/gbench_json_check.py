#!/usr/bin/env python3
"""ctest GbenchJson_Rules: the rules of bench/gbench_json.py (names, repetitions, units,
errors) on small hand-written documents. Python 3 standard library only."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
import gbench_json  # noqa: E402


def run(name, real, cpu=None, unit="ns", **extra):
    b = {"name": name, "run_name": name, "run_type": "iteration", "real_time": real,
         "cpu_time": real if cpu is None else cpu, "time_unit": unit}
    b.update(extra)
    return b


def aggregate(name, stat, real):
    b = run(name, real)
    b.update({"name": name + "_" + stat, "run_type": "aggregate", "aggregate_name": stat})
    return b


class Rules(unittest.TestCase):
    def test_names_lose_the_parts_google_benchmark_appends(self):
        self.assertEqual(gbench_json.base_name("BM_GracePeriod/1/min_time:0.200/real_time"), "BM_GracePeriod/1")
        self.assertEqual(gbench_json.base_name("BM_X/iterations:20/repeats:3/manual_time"), "BM_X")
        self.assertEqual(gbench_json.base_name("BM_X/real_time/threads:4"), "BM_X/threads:4")
        self.assertEqual(gbench_json.base_name("BM_Update_Batch/10000"), "BM_Update_Batch/10000")

    def test_the_aggregate_named_stat_wins_over_the_runs(self):
        doc = {"benchmarks": [run("BM_A/real_time", 10), run("BM_A/real_time", 30),
                              aggregate("BM_A/real_time", "mean", 20), aggregate("BM_A/real_time", "median", 25)]}
        self.assertEqual(gbench_json.Results(doc, "median").time_ns("BM_A"), 25)
        self.assertEqual(gbench_json.Results(doc, "mean").time_ns("BM_A"), 20)

    def test_runs_without_the_aggregate_combine_field_by_field(self):
        doc = {"benchmarks": [run("BM_A", 10, c=1), run("BM_A", 40, c=5), run("BM_A", 20, c=3), run("BM_A", 90, c=7)]}
        median = gbench_json.Results(doc, "median").entries["BM_A"]
        self.assertEqual((median["real_time"], median["c"]), (30, 4))
        mean = gbench_json.Results(doc, "mean").entries["BM_A"]
        self.assertEqual((mean["real_time"], mean["c"]), (40, 4))
        single = gbench_json.Results({"benchmarks": [run("BM_B", 7, c=2)]}).entries["BM_B"]
        self.assertEqual((single["real_time"], single["c"]), (7, 2))

    def test_times_are_converted_to_ns_real_or_cpu(self):
        r = gbench_json.Results({"benchmarks": [run("BM_U", 2, cpu=1.5, unit="us"), run("BM_M", 3, unit="ms"),
                                                run("BM_S", 1, unit="s")]})
        self.assertEqual(r.time_ns("BM_U"), 2000)
        self.assertEqual(r.time_ns("BM_U", "cpu"), 1500)
        self.assertEqual(r.time_ns("BM_M"), 3e6)
        self.assertEqual(r.time_ns("BM_S"), 1e9)

    def test_per_item_time_uses_items_per_second(self):
        # 1000 items per 2 us iteration: 2 ns per item real, 1 ns per item CPU.
        r = gbench_json.Results({"benchmarks": [run("BM_C", 2, cpu=1, unit="us", items_per_second=5e8), run("BM_N", 9)]})
        self.assertAlmostEqual(r.per_item_ns("BM_C"), 2.0)
        self.assertAlmostEqual(r.per_item_ns("BM_C", "cpu"), 1.0)
        self.assertIsNone(r.per_item_ns("BM_N"))

    def test_errors_are_listed_once_in_document_order_and_left_out(self):
        err = {"name": "BM_Z/real_time", "run_type": "iteration", "error_occurred": True, "error_message": "no urcu"}
        other = dict(err, name="BM_A/real_time", error_message="refused")
        r = gbench_json.Results({"benchmarks": [err, run("BM_Ok", 1), other, err]})
        self.assertEqual(r.errors, ["BM_Z: no urcu", "BM_A: refused"])
        self.assertEqual(r.error_items[0], ("BM_Z", "no urcu"))
        self.assertEqual(list(r.entries), ["BM_Ok"])
        self.assertEqual(r.names("BM_"), ["BM_Ok"])

    def test_console_text_before_the_json_is_skipped(self):
        doc = gbench_json.parse('Running bench\n2026-01-01 load\n{"context": {"num_cpus": 2}, "benchmarks": []}')
        self.assertEqual(doc["context"]["num_cpus"], 2)
        self.assertEqual(gbench_json.Results(None).entries, {})


if __name__ == "__main__":
    unittest.main(verbosity=2)
