"""
The load robot (C{gamenet bench}, L{gamenet.robot}) run as a user runs it,
in a subprocess, against gamenet servers started in the test: what it
reports completed matches what the server served, errors are counted by
kind, a run stops on time, remote targets are refused, the chat scenario
reports pushes, and the JSON and PNG reports are written.
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
    "target", "scenario", "seconds", "elapsed", "workers", "clients", "connect_ms", "completed", "abandoned",
    "requests_per_second", "latency_ms", "routes", "pushes", "errors", "error_count", "server", "robot",
    "timeline", "warnings",
}


class Counted(Handler):
    """
    C{connector.counted.*}: an echo that counts what it served, and a route that raises.
    """

    served = 0

    def echo(self, msg, session):
        Counted.served += 1
        return msg

    def boom(self, msg, session):
        Counted.served += 1
        raise GamenetError("boom", 500)


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


class EchoServerTests(TestCase):
    """
    The route scenario against one frontend in this process.
    """

    timeout = 60

    async def setUp(self):
        Counted.served = 0
        cluster = cluster_config(frontend("connector-1", "connector", messages_per_second=1000000))
        self.app = await start_server(cluster, "connector-1", [handler(Counted, "connector", name="counted")])
        self.addCleanup(self.app.stopService)
        self.port = client_port(self.app)

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
        self.assertEqual(report["completed"] + report["abandoned"], Counted.served)
        self.assertEqual(report["routes"]["connector.counted.echo"]["completed"], report["completed"])
        self.assertEqual(report["errors"], {})
        self.assertEqual(report["clients"]["connected"], 4)
        self.assertIsNotNone(report["server"]["cpu_us_per_request"])
        self.assertIn(str(os.getpid()), report["server"]["peak_rss_kib"])
        self.assertEqual(sum(t["completed"] for t in report["timeline"]), report["completed"])

    async def test_tcp(self):
        """
        The TCP transport too.
        """
        code, report, err, _ = await bench(
            "--port", self.port, "--transport", "tcp", "--route", "connector.counted.echo", "--clients", 2,
            "--workers", 1, "--seconds", 1, "--quiet")
        self.assertEqual(code, 0, err)
        self.assertEqual(report["completed"] + report["abandoned"], Counted.served)
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
        self.assertEqual(report["errors"]["error_response:500"] + report["abandoned"], Counted.served)
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
        drain and a little more, even with requests in flight.
        """
        code, report, err, taken = await bench(
            "--port", self.port, "--route", "connector.counted.echo", "--clients", 8, "--inflight", 5,
            "--workers", 2, "--seconds", 3, "--drain", 1, "--quiet")
        self.assertEqual(code, 0, err)
        self.assertLess(taken, 3 + 1 + 1 + 3.0)
        self.assertLess(report["elapsed"], 3 + 1 + 1.0)
        self.assertGreaterEqual(report["elapsed"], 3 - 0.1)

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
