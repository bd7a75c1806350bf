"""Tests of bench/compare's own pieces: arguments, parsing of what the clients print, figures,
and the table. Run from the repository root: python3 -m unittest discover -s bench -p 'test_*.py'
"""

import importlib.machinery
import importlib.util
import json
import sys
import unittest
from pathlib import Path

_path = Path(__file__).resolve().parent / "compare"
_loader = importlib.machinery.SourceFileLoader("compare", str(_path))
_spec = importlib.util.spec_from_loader("compare", _loader)
compare = importlib.util.module_from_spec(_spec)
sys.modules["compare"] = compare  # dataclasses look their module up
_loader.exec_module(compare)


class Args(unittest.TestCase):
    def test_defaults_run_everything(self):
        a = compare.parse_args([])
        self.assertEqual(a.systems, compare.SYSTEMS)
        self.assertEqual(a.workloads, compare.WORKLOADS)
        self.assertEqual(a.settings.messages, 200_000)
        self.assertEqual(a.settings.outage_total, 7000)
        self.assertEqual(a.settings.outage_during, 5000)
        self.assertFalse(a.json)

    def test_quick_is_relaymesh_and_mosquitto_with_small_counts(self):
        a = compare.parse_args(["--quick"])
        self.assertEqual(a.systems, ["relaymesh", "mosquitto"])
        self.assertLess(a.settings.messages, 100_000)
        self.assertEqual(a.settings.runs, 1)
        # The defaults are not changed by a quick run.
        self.assertEqual(compare.Settings().messages, 200_000)

    def test_peers_and_skip(self):
        a = compare.parse_args(["--peers", "nats, jetstream", "--skip", "relaymesh"])
        self.assertEqual(a.systems, ["nats", "jetstream"])
        a = compare.parse_args(["--skip", "zenoh,dtn7"])
        self.assertEqual(a.systems, ["relaymesh", "mosquitto", "nats", "jetstream"])
        a = compare.parse_args(["--quick", "--peers", "nats"])
        self.assertEqual(a.systems, ["relaymesh", "nats"])

    def test_workloads_keep_their_order(self):
        a = compare.parse_args(["--workloads", "outage,throughput"])
        self.assertEqual(a.workloads, ["throughput", "outage"])

    def test_overrides(self):
        a = compare.parse_args(["--runs", "5", "--cut", "20", "--json"])
        self.assertEqual(a.settings.runs, 5)
        self.assertEqual(a.settings.cut_s, 20)
        self.assertTrue(a.json)

    def test_outage_modes(self):
        a = compare.parse_args(["--outage-modes", "kill,drop"])
        self.assertEqual(a.settings.outage_modes, ("drop", "kill"))
        self.assertEqual(compare.parse_args([]).settings.outage_modes, ("clean", "drop", "kill"))

    def test_unknown_names_are_usage_errors(self):
        for argv in (["--peers", "kafka"], ["--skip", "rabbit"], ["--workloads", "speed"],
                     ["--outage-modes", "flood"]):
            with self.assertRaises(SystemExit) as e, _quiet():
                compare.parse_args(argv)
            self.assertEqual(e.exception.code, 2)

    def test_routine_rate_is_one_and_a_half_times_the_link(self):
        s = compare.Settings(link_kbit=20_000, size=256)
        self.assertEqual(s.routine(), 20_000_000 // 8 // 330 * 3 // 2)
        self.assertEqual(compare.Settings(routine_rate=5).routine(), 5)


class Parsing(unittest.TestCase):
    def test_bench_lines(self):
        out = ('throughput: median 1 msg/s\n{"bench":"throughput","msgs_per_s":101.5}\n'
               '{not json}\n  {"bench":"latency","p50_ms":0.4}  \n')
        self.assertEqual(compare.parse_bench_lines(out),
                         [{"bench": "throughput", "msgs_per_s": 101.5},
                          {"bench": "latency", "p50_ms": 0.4}])

    def test_sub_lines(self):
        self.assertEqual(compare.parse_sub_line("12 1000 2000\n"), (12, 1000, 2000))
        for bad in ("", "12 1000", "a b c", "1 2 3 4"):
            self.assertIsNone(compare.parse_sub_line(bad))

    def test_summarize_counts_lost_and_duplicates_in_range(self):
        recs = [(1, 0, 0), (2, 0, 0), (2, 0, 0), (4, 0, 0), (0, 0, 0), (9, 0, 0)]
        self.assertEqual(compare.summarize(recs, 1, 5), {"lost": 2, "duplicates": 1})

    def test_quantile_is_nearest_rank(self):
        v = [float(x) for x in range(1, 101)]
        self.assertEqual(compare.quantile(v, 0.5), 50.0)
        self.assertEqual(compare.quantile(v, 0.99), 99.0)
        self.assertEqual(compare.quantile([3.0, 1.0, 2.0], 0.5), 2.0)
        self.assertEqual(compare.quantile([7.0], 0.99), 7.0)
        self.assertNotEqual(compare.quantile([], 0.5), compare.quantile([], 0.5))  # NaN


class Table(unittest.TestCase):
    results = {
        "relaymesh": {"throughput": {"msgs_per_s": 100_000.0},
                      "outage_clean": {"lost": 0, "duplicates": 0, "backlog_s": 1.0}},
        "mosquitto": {"throughput": {"msgs_per_s": 40_000.0},
                      "outage_clean": {"lost": 0, "duplicates": 0, "backlog_s": 4.0}},
        "nats": {"throughput": {"error": "boom"}},
    }

    def test_rows_columns_and_ratios(self):
        t = compare.format_table(self.results, {"zenoh": "no driver"})
        lines = t.splitlines()
        self.assertEqual(lines[0], "| workload | figure | relaymesh | mosquitto | nats | "
                                   "rm/mosquitto | rm/nats |")
        row = next(x for x in lines if "msgs_per_s" in x)
        self.assertEqual(row, "| throughput | msgs_per_s (msg/s) | 100,000 | 40,000 | - | 2.50 | - |")
        backlog = next(x for x in lines if "backlog_s" in x)
        self.assertIn("| 0.25 |", backlog)
        lost = next(x for x in lines if "| lost" in x)
        self.assertTrue(lost.endswith("| 0 | 0 | - | - | - |"))
        self.assertNotIn("latency", t)  # no system has it
        self.assertIn("skipped zenoh: no driver", t)

    def test_every_row_has_as_many_cells_as_the_header(self):
        lines = compare.format_table(self.results).splitlines()
        widths = {line.count("|") for line in lines if line.startswith("|")}
        self.assertEqual(len(widths), 1)

    def test_table_without_relaymesh_has_no_ratios(self):
        t = compare.format_table({"nats": {"throughput": {"msgs_per_s": 5.0}}})
        self.assertNotIn("rm/", t)

    def test_ratio(self):
        self.assertEqual(compare.ratio(1.0, 4.0), "0.25")
        self.assertEqual(compare.ratio(3.0, 1000.0), "0.003")
        self.assertEqual(compare.ratio(0, 0), "-")
        self.assertEqual(compare.ratio(5, 0), "inf")
        self.assertEqual(compare.ratio(None, 1), "-")
        self.assertEqual(compare.ratio(float("nan"), 1), "-")

    def test_values(self):
        self.assertEqual(compare.fmt_value(None), "-")
        self.assertEqual(compare.fmt_value(7000), "7,000")
        self.assertEqual(compare.fmt_value(123456.7), "123,457")
        self.assertEqual(compare.fmt_value(12.345), "12.3")
        self.assertEqual(compare.fmt_value(1.234), "1.23")
        self.assertEqual(compare.fmt_value(0.01234), "0.0123")
        self.assertEqual(compare.fmt_value(float("nan")), "-")

    def test_saved_json_gives_the_same_table(self):
        saved = json.dumps(self.results | {"zenoh": {"skipped": {"reason": "no driver"}}})
        results, skipped = compare.load_results(saved)
        self.assertEqual(skipped, {"zenoh": "no driver"})
        self.assertEqual(compare.format_table(results, skipped),
                         compare.format_table(self.results, {"zenoh": "no driver"}))

    def test_json_round_trips(self):
        # --json prints results as they are; they must be plain JSON.
        self.assertEqual(json.loads(json.dumps(self.results)), self.results)


class _quiet:
    """Silences argparse's usage message on stderr."""

    def __enter__(self):
        import io
        self.saved, sys.stderr = sys.stderr, io.StringIO()

    def __exit__(self, *exc):
        sys.stderr = self.saved
        return False


if __name__ == "__main__":
    unittest.main()
