"""
The load robot (C{gamenet bench}, L{gamenet.robot}) run as a user runs it,
in a subprocess, against gamenet servers started in the test: what it
reports completed matches what the server served, errors are counted by
kind, a run stops on time, remote targets are refused, URL targets and TLS
work, idle clients keep their heartbeats, fan-out deliveries are gathered
across workers, the chat scenario reports pushes, and the JSON and PNG
reports are written.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet import reactor, utils
from twisted.internet.defer import DeferredList
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet import GamenetError, Handler, handler
from gamenet.plugins import discover
from gamenet.robot.stats import Histogram
from gamenet.testing import client_port, cluster_config, free_ports, frontend, start_server

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))}

JSON_KEYS = {
    "target", "scenario", "seconds", "warmup", "measured", "workers", "clients", "connect_ms", "completed",
    "uncounted", "abandoned", "requests_per_second", "latency_ms", "routes", "pushes", "errors", "error_count",
    "server", "robot", "timeline", "warnings",
}


class Counted(Handler):
    """
    C{connector.counted.*}: an echo that counts what it served, a route that
    raises, one that answers something else than its body, and a channel to
    join and push to.
    """

    served = 0

    def echo(self, msg, session):
        Counted.served += 1
        return msg

    def boom(self, msg, session):
        Counted.served += 1
        raise GamenetError("boom", 500)

    def other(self, msg, session):
        Counted.served += 1
        return {"not": "the body"}

    async def join(self, msg, session):
        await session.bind(msg["uid"])
        self.app.channels.create_channel("all").add(msg["uid"], self.app.server_id)
        return {}

    def shout(self, msg, session):
        self.app.channels.get_channel("all").push_message("onShout", msg)
        return {}


def served(report):
    """
    Requests the server served, by the robot's report.
    """
    return report["completed"] + report["uncounted"] + report["abandoned"] + sum(
        n for kind, n in report["errors"].items() if kind.startswith("error_response:"))


async def bench(*args, timeout=30.0):
    """
    Run C{python -m gamenet.cli bench ARGS --json -} without blocking the
    reactor; returns (exit status, the JSON report or None, stderr, seconds taken).
    """
    started = time.monotonic()
    out, err, code = await utils.getProcessOutputAndValue(
        sys.executable, ["-m", "gamenet.cli", "bench", "--json", "-", *map(str, args)], env=ENV, path=str(REPO),
        reactor=reactor,
    )
    taken = time.monotonic() - started
    try:
        report = json.loads(out)
    except ValueError:
        report = None
    return code, report, err.decode(errors="replace"), taken


class FrontendTestCase(TestCase):
    """
    A frontend in this process, with the C{Counted} routes, frontend options C{options}.
    """

    timeout = 60
    options = {}

    async def setUp(self):
        Counted.served = 0
        cluster = cluster_config(frontend("connector-1", "connector", messages_per_second=1000000, **self.options))
        self.app = await start_server(cluster, "connector-1", [handler(Counted, "connector", name="counted")])
        self.addCleanup(self.app.stopService)
        self.port = client_port(self.app)


class EchoServerTests(FrontendTestCase):
    """
    The route scenario against one frontend in this process.
    """

    async def test_counts_match(self):
        """
        What the robot reports completed (plus abandoned) is what the server
        served; the server CPU per request comes from the given pid.
        """
        code, report, err, taken = await bench(
            "--port", self.port, "--route", "connector.counted.echo", "--body", '{"n": 1}', "--clients", 4,
            "--inflight", 3, "--workers", 2, "--seconds", 2, "--pid", os.getpid(), "--quiet")
        self.assertEqual(code, 0, err)
        self.assertGreater(report["completed"], 0)
        self.assertEqual(served(report), Counted.served)
        self.assertEqual(report["routes"]["connector.counted.echo"]["completed"], report["completed"])
        self.assertEqual(report["errors"], {})
        self.assertEqual(report["clients"]["connected"], 4)
        self.assertIsNotNone(report["server"]["cpu_us_per_request"])
        self.assertIn(str(os.getpid()), report["server"]["peak_rss_kib"])
        self.assertEqual(sum(t["completed"] for t in report["timeline"]), report["completed"])
        self.assertEqual(sum(t["routes"]["connector.counted.echo"]["completed"] for t in report["timeline"]
                             if t["routes"]), report["completed"])

    async def test_warmup(self):
        """
        With a warm-up, answers before the window opens are served but not
        counted; the window lasts C{--seconds}; the server's memory before
        the load and at the deadline is reported.
        """
        code, report, err, _ = await bench(
            "--port", self.port, "--route", "connector.counted.echo", "--clients", 2, "--inflight", 2,
            "--workers", 1, "--warmup", 1, "--seconds", 1, "--pid", os.getpid(), "--quiet")
        self.assertEqual(code, 0, err)
        self.assertGreater(report["uncounted"], report["completed"] / 4)
        self.assertGreater(report["completed"], 0)
        self.assertEqual(served(report), Counted.served)
        self.assertAlmostEqual(report["measured"], 1.0, delta=0.3)
        self.assertEqual(set(report["server"]["rss_kib"][str(os.getpid())]), {"before", "end"})
        self.assertEqual(sum(t["completed"] for t in report["timeline"][:1]), 0)  # the warm-up's second

    async def test_echo_check(self):
        """
        With C{--echo}, an answer that is not the body counts as C{wrong_answer}.
        """
        code, report, err, _ = await bench(
            "--port", self.port, "--route", "connector.counted.echo", "--echo", "--body", '{"a": [1, 2]}',
            "--clients", 1, "--workers", 1, "--seconds", 1, "--quiet")
        self.assertEqual((code, report["errors"]), (0, {}), err)
        code, report, err, _ = await bench(
            "--port", self.port, "--route", "connector.counted.other", "--echo", "--clients", 1, "--workers", 1,
            "--seconds", 1, "--quiet")
        self.assertEqual(code, 1, err)
        self.assertEqual(set(report["errors"]), {"wrong_answer"})
        self.assertGreaterEqual(report["errors"]["wrong_answer"], report["completed"])

    async def test_url(self):
        """
        The target as a URL: C{ws://} and C{tcp://}.
        """
        total = 0
        for url, transport in ((f"ws://127.0.0.1:{self.port}/any/path", "websocket"),
                               (f"tcp://127.0.0.1:{self.port}", "tcp")):
            code, report, err, _ = await bench(url, "--route", "connector.counted.echo", "--clients", 1,
                                               "--workers", 1, "--seconds", 1, "--quiet")
            self.assertEqual(code, 0, err)
            self.assertGreater(report["completed"], 0)
            self.assertEqual(report["target"]["transport"], transport)
            total += served(report)
        self.assertEqual(total, Counted.served)

    async def test_fanout(self):
        """
        A scenario recording deliveries of numbered channel pushes: each
        message's deliveries, over both workers, are one per client, and the
        first and last delivery latencies are reported.
        """
        scenario = str(REPO / "tests" / "_robot_fanout.py")
        code, report, err, _ = await bench(
            "--port", self.port, "--scenario", scenario, "--clients", 6, "--workers", 2, "--warmup", 1,
            "--seconds", 2, "--quiet")
        self.assertEqual(code, 0, err)
        fanout = report["pushes"]["fanout"]["onShout"]
        shouts = report["routes"]["connector.counted.shout"]["completed"]
        self.assertGreater(shouts, 5)
        self.assertIn(fanout["messages"], (shouts, shouts + 1))
        self.assertGreaterEqual(fanout["deliveries"], (fanout["messages"] - 1) * 6)
        self.assertLessEqual(fanout["deliveries"], fanout["messages"] * 6)
        self.assertLessEqual(fanout["first_ms"]["p50"], fanout["last_ms"]["p50"])
        self.assertEqual(report["pushes"]["routes"]["onShout"], fanout["deliveries"])

    async def test_tcp(self):
        """
        The TCP transport too.
        """
        code, report, err, _ = await bench(
            "--port", self.port, "--transport", "tcp", "--route", "connector.counted.echo", "--clients", 2,
            "--workers", 1, "--seconds", 1, "--quiet")
        self.assertEqual(code, 0, err)
        self.assertEqual(served(report), Counted.served)
        self.assertGreater(report["completed"], 0)

    async def test_error_response(self):
        """
        A route that raises counts as C{error_response:500}, once per request served.
        """
        code, report, err, _ = await bench(
            "--port", self.port, "--route", "connector.counted.boom", "--clients", 2, "--workers", 1,
            "--seconds", 1, "--quiet")
        self.assertEqual(code, 1, (err, report))
        self.assertEqual(report["completed"], 0)
        self.assertEqual(set(report["errors"]), {"error_response:500"})
        self.assertEqual(served(report), Counted.served)
        self.assertGreater(Counted.served, 0)

    async def test_unknown_route(self):
        """
        An unknown route counts as C{error_response:404}.
        """
        code, report, err, _ = await bench(
            "--port", self.port, "--route", "connector.counted.nothing", "--clients", 1, "--workers", 1,
            "--seconds", 1, "--quiet")
        self.assertEqual(code, 1, (err, report))
        self.assertEqual(set(report["errors"]), {"error_response:404"})
        self.assertGreater(report["errors"]["error_response:404"], 0)

    async def test_stops_on_time(self):
        """
        A run of D seconds ends within D plus the start-up allowance, the
        drain and a little more, even with requests in flight (the margin is
        wide: starting the worker processes is slow on a busy machine; what
        is checked is that the run ends by itself, and the measured window).
        """
        code, report, err, taken = await bench(
            "--port", self.port, "--route", "connector.counted.echo", "--clients", 8, "--inflight", 5,
            "--workers", 2, "--seconds", 3, "--drain", 1, "--quiet")
        self.assertEqual(code, 0, err)
        self.assertLess(taken, 3 + 1 + 1 + 20.0)
        self.assertAlmostEqual(report["measured"], 3.0, delta=0.3)

    async def test_json_and_png(self):
        """
        The JSON report has the documented keys; C{--png} writes a PNG file.
        """
        png = Path(tempfile.mkdtemp()) / "run.png"
        code, report, err, _ = await bench(
            "--port", self.port, "--route", "connector.counted.echo", "--clients", 2, "--workers", 1,
            "--seconds", 2, "--png", png, "--quiet")
        self.assertEqual(code, 0, err)
        self.assertEqual(set(report), JSON_KEYS)
        for key in ("p50", "p95", "p99", "max"):
            self.assertIn(key, report["latency_ms"])
        self.assertTrue(png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n"))


class IdleTests(FrontendTestCase):
    """
    C{--idle} against a frontend that kicks a client after two silent heartbeat periods.
    """

    options = {"heartbeat": 0.5}

    async def test_idle(self):
        """
        Idle clients connect, keep their heartbeats (no client is dropped in
        a run eight heartbeat periods long), send nothing, and close at the deadline.
        """
        code, report, err, _ = await bench(
            "--port", self.port, "--idle", "--clients", 20, "--workers", 2, "--seconds", 4, "--pid", os.getpid(),
            "--quiet")
        self.assertEqual(code, 0, err)
        self.assertEqual(report["errors"], {})
        self.assertEqual(report["clients"]["connected"], 20)
        self.assertEqual((report["completed"], Counted.served), (0, 0))
        self.assertEqual(report["scenario"], "idle")
        self.assertIsNone(report["server"]["cpu_us_per_request"])
        self.assertIsNotNone(report["server"]["cpu_percent"])


class TLSTests(TestCase):
    """
    C{wss://} and C{tls://} targets: a frontend with a certificate.
    """

    timeout = 60

    async def test_tls(self):
        """
        Over TLS, WebSocket and TCP, the counts match what the server served.
        """
        from tests.test_tls import write_certificate

        Counted.served = 0
        cert, key = self.mktemp(), self.mktemp()
        write_certificate(cert, key)
        cluster = cluster_config(frontend("connector-1", "connector", transport="hybrid", tls_cert=cert, tls_key=key,
                                          messages_per_second=1000000))
        app = await start_server(cluster, "connector-1", [handler(Counted, "connector", name="counted")])
        self.addCleanup(app.stopService)
        total = 0
        for scheme in ("wss", "tls"):
            code, report, err, _ = await bench(
                f"{scheme}://127.0.0.1:{client_port(app)}", "--route", "connector.counted.echo", "--echo",
                "--clients", 2, "--workers", 1, "--seconds", 1, "--quiet")
            self.assertEqual(code, 0, err)
            self.assertTrue(report["target"]["tls"])
            self.assertGreater(report["completed"], 0)
            total += served(report)
        self.assertEqual(total, Counted.served)


class RefusalTests(TestCase):
    """
    What the robot refuses or cannot reach.
    """

    timeout = 30

    async def test_connect_failed(self):
        """
        A port nobody listens on: every client counts C{connect_failed}.
        """
        port = free_ports(1)[0]
        code, report, err, _ = await bench("--port", port, "--route", "x.y.z", "--clients", 3, "--workers", 1,
                                           "--seconds", 1, "--quiet")
        self.assertEqual(code, 1, (err, report))
        self.assertEqual(report["errors"], {"connect_failed": 3})
        self.assertEqual(report["clients"]["connected"], 0)

    async def test_remote_refused(self):
        """
        A target that is not loopback is refused, with a clear message and
        exit status 2, before any connection.
        """
        code, report, err, taken = await bench("--host", "192.0.2.1", "--port", 3010, "--route", "x.y.z",
                                               "--seconds", 1)
        self.assertEqual(code, 2)
        self.assertIsNone(report)
        self.assertIn("refusing to load '192.0.2.1'", err)
        self.assertIn("--allow-remote", err)

    async def test_bad_urls(self):
        """
        A URL with an unknown scheme, without a port, or naming a remote host is refused.
        """
        for url, message in (("http://127.0.0.1:3010", "the scheme must be one of"),
                             ("ws://127.0.0.1", "give a host and a port"),
                             ("wss://192.0.2.1:3010", "refusing to load '192.0.2.1'")):
            code, report, err, _ = await bench(url, "--idle", "--seconds", 1)
            self.assertEqual((code, report), (2, None), url)
            self.assertIn(message, err)


class ChatScenarioTests(TestCase):
    """
    The chat scenario (C{examples/chat/robot.py}) against the chat example's cluster.
    """

    timeout = 60

    async def test_chat(self):
        from tests.test_chat import PLUGINS, SERVER_IDS, chat_cluster

        ports = free_ports(3 + len(SERVER_IDS))
        cluster = chat_cluster(ports[:3], ports[3:])
        registrations = discover(PLUGINS)
        apps = {}

        async def stop():
            await DeferredList([app.stopService() for app in apps.values()])

        self.addCleanup(stop)
        for server_id in SERVER_IDS:
            apps[server_id] = await start_server(cluster, server_id, registrations)
        deadline = time.monotonic() + 20
        while not all(link.up for app in apps.values() for link in app.node.links.values()):
            self.assertLess(time.monotonic(), deadline, "node links did not come up")
            await deferLater(reactor, 0.05, lambda: None)
        code, report, err, _ = await bench(
            "--port", ports[0], "--scenario", "examples/chat/robot.py", "--param", "rooms=2", "--param", "rate=4",
            "--clients", 6, "--workers", 2, "--seconds", 3, "--pid", os.getpid(), "--quiet")
        self.assertEqual(code, 0, err)
        self.assertEqual(report["errors"], {})
        self.assertEqual(report["clients"]["connected"], 12)  # the gate, then a connector
        routes = report["routes"]
        self.assertEqual(routes["gate.gateHandler.queryEntry"]["completed"], 6)
        self.assertEqual(routes["connector.entryHandler.enter"]["completed"], 6)
        self.assertGreater(routes["chat.chatHandler.send"]["completed"], 6)
        pushes = report["pushes"]
        self.assertGreater(pushes["routes"]["onChat"], routes["chat.chatHandler.send"]["completed"])
        self.assertIn("onAdd", pushes["routes"])
        self.assertIsNotNone(pushes["latency_ms_by_route"]["onChat"])
        self.assertGreater(pushes["latency_ms"]["p50"], 0)


class HistogramTests(SynchronousTestCase):
    """
    Percentiles from the log-scale buckets, merged.
    """

    def test_percentiles(self):
        a, b = Histogram(), Histogram()
        for ms in range(1, 51):
            a.add(ms / 1000)
        for ms in range(51, 101):
            b.add(ms / 1000)
        a.merge(b)
        self.assertEqual(a.n, 100)
        self.assertLess(abs(a.percentile(50) - 0.050), 0.050 * 0.05)
        self.assertLess(abs(a.percentile(99) - 0.099), 0.099 * 0.05)
        self.assertEqual(a.max, 0.1)
        self.assertEqual(Histogram.from_json(json.loads(json.dumps(a.to_json()))).percentile(95), a.percentile(95))


class ConsoleScriptTests(SynchronousTestCase):
    """
    C{gamenet bench} is the C{gamenet} console script's subcommand.
    """

    def test_entry_point(self):
        import configparser

        config = configparser.ConfigParser()
        config.read(REPO / "setup.cfg")
        self.assertIn("gamenet = gamenet.cli:main", config["options.entry_points"]["console_scripts"])
        self.assertIn("matplotlib", config["options.extras_require"]["bench"])

    def test_no_command(self):
        from gamenet.cli import main

        self.assertEqual(main([]), 2)
