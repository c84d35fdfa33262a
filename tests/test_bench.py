"""
The benchmark scripts of C{bench/} run end to end, small and short: each
starts its servers, drives them with the load robot, stops them, and writes
figures that add up. (What they measure is in doc/benchmarks.md; these tests
only check that the suite works, never a figure's size.)
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from twisted.internet import reactor, utils
from twisted.trial.unittest import TestCase

REPO = Path(__file__).resolve().parent.parent


async def run_script(test: TestCase, name: str, *args: object, json_out: bool = True) -> tuple[int, dict, str]:
    """
    Run C{bench/NAME.py ARGS --json FILE} (without C{--json} unless
    C{json_out}); returns its exit status, the JSON it wrote, and its output
    (stdout and stderr, for failure messages).
    """
    out = Path(test.mktemp()).resolve()
    env = {key: value for key, value in os.environ.items() if key not in ("GAMENET_SECRET", "GAMENET_MASTER_PID")}
    stdout, stderr, code = await utils.getProcessOutputAndValue(
        sys.executable, [str(REPO / "bench" / f"{name}.py"), *map(str, args), *(["--json", str(out)] * json_out)],
        env=env, path=str(REPO), reactor=reactor,
    )
    text = (stdout + stderr).decode(errors="replace")
    document = json.loads(out.read_text()) if out.exists() else {}
    return code, document, text


class BenchScriptTests(TestCase):
    """
    Each script, on a tiny load.
    """

    timeout = 120

    async def test_echo(self):
        """
        The echo benchmark measures the bare server and gamenet over TCP,
        without errors, and computes their ratios.
        """
        code, document, text = await run_script(self, "echo", "--transport", "tcp", "--clients", 4, "--workers", 1,
                                                "--seconds", 1)
        self.assertEqual(code, 0, text)
        tcp = document["transports"]["tcp"]
        self.assertEqual([row["server"] for row in tcp["rows"]], ["bare Twisted", "gamenet"])
        for row in tcp["rows"]:
            self.assertGreater(row["requests_per_second"], 0, text)
            self.assertGreater(row["cpu_us_per_request"], 0, text)
            self.assertEqual(row["errors"], {})
        self.assertGreater(tcp["cpu_ratio"], 0)
        self.assertIn("gamenet / bare Twisted: CPU per request", text)

    async def test_echoMetrics(self):
        """
        With C{--metrics}, the echo benchmark measures gamenet with metrics
        on against gamenet with them off, and the server counted every request.
        """
        code, document, text = await run_script(self, "echo", "--metrics", "--transport", "tcp", "--clients", 4,
                                                "--workers", 1, "--seconds", 1)
        self.assertEqual(code, 0, text)
        tcp = document["transports"]["tcp"]
        self.assertEqual([row["server"] for row in tcp["rows"]], ["gamenet", "gamenet+metrics"])
        self.assertGreater(tcp["cpu_ratio"], 0)
        self.assertIn("gamenet with metrics / without: CPU per request", text)
        self.assertIn("gamenet+metrics counted", text)

    async def test_echoProtobuf(self):
        """
        With C{--protobuf}, the echo benchmark measures gamenet with protobuf
        bodies against gamenet with JSON, every answer checked.
        """
        code, document, text = await run_script(self, "echo", "--protobuf", "--transport", "tcp", "--clients", 4,
                                                "--workers", 1, "--seconds", 1)
        self.assertEqual(code, 0, text)
        tcp = document["transports"]["tcp"]
        self.assertEqual([row["server"] for row in tcp["rows"]], ["gamenet", "gamenet+protobuf"])
        self.assertTrue(all(row["requests_per_second"] > 0 and row["errors"] == {} for row in tcp["rows"]), text)
        self.assertIn("gamenet with protobuf bodies / JSON: CPU per request", text)

    async def test_echoAgainst(self):
        """
        With C{--against}, the echo benchmark measures gamenet against the
        gamenet of another work tree (here this one).
        """
        code, document, text = await run_script(self, "echo", "--against", REPO, "--transport", "tcp", "--clients", 4,
                                                "--workers", 1, "--seconds", 1)
        self.assertEqual(code, 0, text)
        tcp = document["transports"]["tcp"]
        self.assertEqual([row["server"] for row in tcp["rows"]], ["gamenet-before", "gamenet"])
        self.assertTrue(all(row["requests_per_second"] > 0 and row["errors"] == {} for row in tcp["rows"]), text)
        self.assertIn("gamenet / gamenet-before: CPU per request", text)

    async def test_idle(self):
        """
        The idle benchmark holds every connection on both servers through a
        window longer than the heartbeat timeout, and reports their memory.
        """
        code, document, text = await run_script(self, "idle", "--connections", 40, "--heartbeat", 1, "--warmup", 2,
                                                "--seconds", 3, "--workers", 2)
        self.assertEqual(code, 0, text)
        self.assertEqual([(row["server"], row["held"], row["errors"]) for row in document["rows"]],
                         [("bare Autobahn", 40, {}), ("gamenet", 40, {})])
        for row in document["rows"]:
            self.assertGreater(row["rss_end_mib"], 0)
        self.assertIn("KiB per connection", text)

    async def test_forward(self):
        """
        The forwarding benchmark drives a connector and a backend, both
        routes answer without errors, and the backend's CPU shows only in
        the forwarded rows.
        """
        code, document, text = await run_script(self, "forward", "--clients", 4, "--workers", 1, "--seconds", 1)
        self.assertEqual(code, 0, text)
        kinds = {row["kind"]: row for row in document["rows"]}
        self.assertEqual(set(kinds), {"local", "forwarded"})
        for row in kinds.values():
            self.assertGreater(row["req_per_s"], 0, text)
            self.assertEqual(row["errors"], {})
        self.assertGreater(document["rate_ratio"], 0)

    async def test_channel(self):
        """
        The channel benchmark delivers every push to every member of a room
        of ten over two connectors, and reports the time to the last delivery.
        """
        code, document, text = await run_script(self, "channel", "--rooms", 10, "--seconds", 3, "--workers", 2)
        self.assertEqual(code, 0, text)
        [row] = document["rows"]
        self.assertEqual(row["members"], 10)
        self.assertGreater(row["pushes"], 0, text)
        self.assertEqual(row["missing"], 0, text)
        self.assertEqual(row["deliveries"], row["pushes"] * 10)
        self.assertIsNotNone(document["target"]["last_p50_ms"])

    async def test_storage(self):
        """
        The storage benchmark writes every session's settings through Redis
        (its own private redis-server) and through memory, without errors
        or wrong reads, and computes their ratio.
        """
        code, document, text = await run_script(self, "storage", "--sessions", 20, "--writes", 5, "--seconds", 5)
        self.assertEqual(code, 0, text)
        self.assertEqual(set(document["rows"]), {"memory", "redis"})
        for row in document["rows"].values():
            self.assertEqual((row["done"], row["errors"], row["wrong"]), (100, 0, 0), text)
            self.assertGreater(row["rate"], 0)
        self.assertGreater(document["memory_over_redis"], 0)
        self.assertIn("memory / redis:", text)

    async def test_httpEcho(self):
        """
        The HTTP benchmark drives a bare twisted.web resource and gamenet's
        HTTP front, every answer right, and computes their CPU ratio.
        """
        code, document, text = await run_script(self, "http_echo", "--connections", 4, "--seconds", 1)
        self.assertEqual(code, 0, text)
        self.assertEqual([row["server"] for row in document["rows"]], ["bare twisted.web", "gamenet"])
        for row in document["rows"]:
            self.assertGreater(row["requests"], 0, text)
            self.assertEqual(row["wrong"], 0, text)
        self.assertGreater(document["cpu_ratio"], 0)
        self.assertIn("gamenet/bare CPU per request:", text)

    async def test_chatpath(self):
        """
        The chat path's count runs in memory and on loopback sockets, every
        answer and push checked, and counts the servers' calls per message.
        """
        for mode in ((), ("--sockets",)):
            code, document, text = await run_script(self, "chatpath", *mode, "--rooms", 2, "--users", 3,
                                                    "--messages", 20, "--warmup", 5)
            self.assertEqual(code, 0, text)
            self.assertEqual((document["messages"], document["sockets"]), (20, bool(mode)))
            self.assertGreater(document["python_calls_per_message"], 0)
            self.assertIn("servers' Python calls per message", text)

    async def test_echopath(self):
        """
        The TCP echo path's driver runs gamenet's connector and the bare
        echo in its own process, every answer checked.
        """
        for server in ("gamenet", "bare"):
            code, _, text = await run_script(self, "echopath", "--server", server, "--per-read", 3, "--reads", 20,
                                             "--warmup", 5, json_out=False)
            self.assertEqual(code, 0, text)
            self.assertIn(f"{server}: 60 requests in 20 reads of 3, every answer checked", text)


class SuiteTests(TestCase):
    """
    C{bench/suite.py --quick}, on two of its benchmarks (each of the others
    has its own test above).
    """

    timeout = 300

    async def test_quick(self):
        """
        The suite runs each benchmark asked for, keeps its output and
        figures in the output directory, prints the targets of those that
        have one with a verdict, and exits 0.
        """
        out = Path(self.mktemp()).resolve()
        env = {key: value for key, value in os.environ.items() if key not in ("GAMENET_SECRET", "GAMENET_MASTER_PID")}
        stdout, stderr, code = await utils.getProcessOutputAndValue(
            sys.executable,
            [str(REPO / "bench" / "suite.py"), "--quick", "--only", "storage,forward", "--out", str(out)],
            env=env, path=str(REPO), reactor=reactor,
        )
        text = (stdout + stderr).decode(errors="replace")
        self.assertEqual(code, 0, text)
        self.assertEqual(sorted(path.name for path in out.iterdir()),
                         ["forward.json", "forward.txt", "storage.json", "storage.txt"])
        self.assertIn("memory / redis:", (out / "storage.txt").read_text())
        self.assertEqual({row["kind"] for row in json.loads((out / "forward.json").read_text())["rows"]},
                         {"local", "forwarded"})
        targets = text[text.index("=== targets"):]
        self.assertRegex(targets,
                         r"forwarded echo: rate [0-9.]+x the frontend-local rate \(aim >= 0.5x\): (met|MISSED)")
