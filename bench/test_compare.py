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

_cpath = Path(__file__).resolve().parent / "peers" / "dtn7-client"
_cloader = importlib.machinery.SourceFileLoader("dtn7_client", str(_cpath))
dtn7_client = importlib.util.module_from_spec(importlib.util.spec_from_loader("dtn7_client",
                                                                             _cloader))
_cloader.exec_module(dtn7_client)


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

    def test_the_token_buckets_sent_bytes_come_from_tcs_statistics(self):
        stats = ("qdisc tbf 8004: root refcnt 3 rate 20Mbit burst 16Kb lat 50ms \n"
                 " Sent 7225881 bytes 5032 pkt (dropped 3, overlimits 912 requeues 0) \n"
                 " backlog 0b 0p requeues 0\n")
        self.assertEqual(compare.tbf_sent_bytes(stats), 7225881)
        for bad in ("qdisc noqueue 0: root refcnt 2\n", " Sent many bytes", " Sent 12 pkt"):
            with self.assertRaises(RuntimeError):
                compare.tbf_sent_bytes(bad)

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


class Dtn7Driver(unittest.TestCase):
    def test_dtn7_has_a_driver(self):
        self.assertEqual(compare.NOT_IMPLEMENTED, {})
        self.assertEqual(set(compare.DRIVERS), set(compare.SYSTEMS))

    def test_dtnd_args_for_b(self):
        argv = [str(x) for x in compare.dtnd_args("dtnd", "b", Path("/w/b"), "127.0.0.1", 4556,
                                                 3001, "1s", endpoints=["bench-r", "bench-x"])]
        self.assertEqual(argv[:2], ["dtnd", "-n"])
        self.assertIn("tcp:port=4556:bind=127.0.0.1", argv)
        self.assertEqual(argv[argv.index("-D") + 1], "sled")
        self.assertEqual(argv[argv.index("-j") + 1], "1s")
        self.assertEqual(argv[argv.index("-W") + 1], "/w/b")
        self.assertIn("--disable_nd", argv)
        self.assertIn("-6", argv)  # web API on [::1] only
        self.assertNotIn("-U", argv)
        self.assertNotIn("-s", argv)
        self.assertEqual([argv[i + 1] for i, x in enumerate(argv) if x == "-e"],
                         ["bench-r", "bench-x"])

    def test_dtnd_args_for_a_in_a_namespace(self):
        argv = [str(x) for x in compare.dtnd_args("dtnd", "a", Path("/w/a"), "10.0.0.2", 1, 2,
                                                 "1s", peer="tcp://10.0.0.1:3/b",
                                                 web_everywhere=True)]
        self.assertEqual(argv[argv.index("-s") + 1], "tcp://10.0.0.1:3/b")
        self.assertIn("-4", argv)
        self.assertIn("-U", argv)
        self.assertNotIn("-6", argv)
        self.assertNotIn("-e", argv)

    def test_dtnd_panics(self):
        log = (" 2026 ERROR dtn7::cla::tcp > Failed parsing package\n\n"
               "thread 'tokio-runtime-worker' (8167) panicked at /root/.cargo/registry/src/"
               "index.crates.io-1949cf8c6b5b557f/dtn7-0.21.0/src/core/store/sled.rs:130:41:\n"
               "called `Option::unwrap()` on a `None` value\nstack backtrace:\n"
               "thread 'x' panicked at src/a.rs:1:2:\nboom\n"
               "thread 'y' panicked at src/a.rs:1:2:\nboom\n")
        self.assertEqual(compare.dtnd_panics(log),
                         ["dtn7-0.21.0/src/core/store/sled.rs:130:41: "
                          "called `Option::unwrap()` on a `None` value",
                          "src/a.rs:1:2: boom"])
        self.assertEqual(compare.dtnd_panics("all fine\n"), [])

    def test_split_web(self):
        self.assertEqual(compare.split_web("[::1]:3000"), ("::1", 3000))
        self.assertEqual(compare.split_web("10.214.3.2:80"), ("10.214.3.2", 80))

    def test_free_port_ipv6(self):
        self.assertGreater(compare.free_port("::1"), 0)

    def test_throughput_cap_is_dtn7_only(self):
        self.assertEqual(compare.Dtn7.throughput_messages, 20_000)
        self.assertIsNone(compare.Mosquitto.throughput_messages)

    def test_topics_are_endpoints_the_subscriber_reads(self):
        d = compare.Dtn7
        subs = d.sub_topic(d).split(",")
        for leaf in d.leaves:
            self.assertEqual(d.topic(d, leaf), f"dtn://b/bench-{leaf}")
            self.assertIn(f"bench-{leaf}", subs)


class Dtn7Client(unittest.TestCase):
    def test_accept_key_is_rfc6455s_example(self):
        self.assertEqual(dtn7_client.accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
                         "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")

    def test_frames_round_trip_masked(self):
        for n in (0, 5, 125, 126, 65535, 70_000):
            data = bytes(i % 251 for i in range(n))
            f = dtn7_client.encode_frame(2, data, b"\x01\x02\x03\x04")
            self.assertEqual(f[1] & 0x80, 0x80)  # masked
            self.assertNotEqual(f[-n:] if n else b"", data if n else b"x")
            self.assertEqual(dtn7_client.decode_frame(f + b"rest"), (True, 2, data, len(f)))
            self.assertIsNone(dtn7_client.decode_frame(f[:-1]))

    def test_unmasked_server_frame(self):
        self.assertEqual(dtn7_client.decode_frame(b"\x81\x03200"), (True, 1, b"200", 5))
        self.assertEqual(dtn7_client.decode_frame(b"\x89\x00"), (True, 9, b"", 2))
        self.assertIsNone(dtn7_client.decode_frame(b"\x81"))

    def test_cbor(self):
        dec = dtn7_client.cbor_decode
        self.assertEqual(dec(bytes.fromhex("1903e8")), (1000, 3))
        self.assertEqual(dec(bytes.fromhex("20")), (-1, 1))
        self.assertEqual(dec(bytes.fromhex("8201820203")), ([1, [2, 3]], 5))
        self.assertEqual(dec(bytes.fromhex("9f0102ff")), ([1, 2], 4))
        self.assertEqual(dec(bytes.fromhex("a161610f")), ({"a": 15}, 4))
        self.assertEqual(dec(bytes.fromhex("5f42010241ffff")), (b"\x01\x02\xff", 7))
        self.assertEqual(dec(bytes.fromhex("c11a514b67b0")), (1363896240, 6))
        self.assertEqual(dec(bytes.fromhex("f5")), (True, 1))

    def test_payload_of_a_bundle_from_dtnd(self):
        # GET /endpoint.hex from dtnd 0.21 of a bundle the client sent over the WebSocket
        # (primary block, then the payload block [1, 1, 0, 0, data]), payload bytes spliced in.
        data = b"24 1795915886249493813 " + b"x" * 233
        cbor = bytes.fromhex(
            "9f880704008201692f2f622f62656e63688201642f2f622f8201642f2f622f821b000000c5ba1e02a9"
            "171a0036ee808501010000590100" + data.hex() + "ff")
        self.assertEqual(dtn7_client.bundle_payload(cbor), data)

    def test_lines(self):
        self.assertEqual(dtn7_client.sub_line(b"7 123 xxx", 456), "7 123 456")
        self.assertIsNone(dtn7_client.sub_line(b"probe", 1))
        self.assertIsNone(dtn7_client.sub_line(b"a 1 x", 1))
        msg = json.dumps({"bid": "x", "src": "dtn://a/", "dst": "dtn://b/bench-r", "cts": [1, 0],
                          "lifetime": 1, "data": "NyAxMjMgeHg="}).encode()  # "7 123 xx"
        self.assertEqual(dtn7_client.recv_data_line(msg, 9), "7 123 9")
        self.assertIsNone(dtn7_client.recv_data_line(b"{}", 9))
        self.assertIsNone(dtn7_client.recv_data_line(b"200 subscribed", 9))

    def test_send_data_is_dtnds_json_wssenddata(self):
        d = json.loads(dtn7_client.send_data("dtn://a/", "dtn://b/bench-r", 5000, b"1 2 x"))
        self.assertEqual(d, {"src": "dtn://a/", "dst": "dtn://b/bench-r",
                             "delivery_notification": False, "lifetime": 5000,
                             "data": "MSAyIHg="})

    def test_payload_has_the_size_and_convention(self):
        p = dtn7_client.payload(42, 256)
        self.assertEqual(len(p), 256)
        self.assertIsNotNone(compare.parse_sub_line(dtn7_client.sub_line(p, 1)))

    def test_answers(self):
        self.assertEqual(dtn7_client.answered((1, b"200 Sent bundle x with 256 bytes")), 1)
        self.assertEqual(dtn7_client.answered((9, b"")), 0)
        with self.assertRaises(RuntimeError):
            dtn7_client.answered((1, b"400 Unexpected binary"))
        with self.assertRaises(TimeoutError):
            dtn7_client.answered(None)


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
