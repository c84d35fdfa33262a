"""
L{gamenet.metrics}: what a server exports. A server with metrics off, the
series of the registry against doc/observability.md's list, C{/metrics}
over HTTP, its port, and the default cluster file's metrics ports.
"""

from __future__ import annotations

import os
import re

import treq
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.protocol import Factory
from twisted.web.client import HTTPConnectionPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet.config import load
from gamenet.connector.connection import KICK_REASONS
from gamenet.connector.listener import ListenError
from gamenet.metrics import Metrics, MetricsListener, metrics_resource
from gamenet.testing import MemoryCluster, backend, cluster_config, free_ports, frontend, start_server

from ._processes import REPO
from .test_metrics import REGISTRATIONS, metered
from .test_twistd import DEFAULT_CLUSTER

OBSERVABILITY = os.path.join(REPO, "doc", "observability.md")
# The labels every series has, and the histograms' bucket label.
_EVERYWHERE = {"server_id", "server_type", "le"}


class OffTests(SynchronousTestCase):
    """
    With C{metrics_port} 0, nothing is counted and nothing listens.
    """

    def test_off(self) -> None:
        cluster = MemoryCluster(cluster_config(frontend("connector-1", "connector")), REGISTRATIONS)
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        d = client.request("connector.connector.echo", {})
        cluster.flush()
        self.successResultOf(d)
        app = cluster.apps["connector-1"]
        self.assertFalse(app.metrics.enabled)
        self.assertFalse([service for service in app if isinstance(service, MetricsListener)])
        summary = app.metrics.summary()
        self.assertEqual((summary["requests"], summary["routes"], summary["latency"]["count"]), (0, {}, 0))
        self.assertFalse([family for family in app.metrics.registry.collect() if family.name.startswith("gamenet_")])


class ResourceTests(TestCase):
    """
    C{/metrics} through a real HTTP client and server in memory.
    """

    def setUp(self) -> None:
        self.metrics = Metrics("chat-1", "chat", True, routes=lambda: ["chat.chatHandler.send"])
        stats = self.metrics.route_stats("chat.chatHandler.send", False)
        assert stats is not None
        stats.served(1, 0.002)
        self.http = StubTreq(metrics_resource(self.metrics.registry))

    async def test_exposition(self) -> None:
        """
        GET /metrics answers the text exposition format.
        """
        response = await self.http.get("http://127.0.0.1/metrics")
        self.assertEqual(response.code, 200)
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("text/plain"))
        text = await response.text()
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        key = ("gamenet_requests_total", (("kind", "request"), ("route", "chat.chatHandler.send"),
                                          ("server_id", "chat-1"), ("server_type", "chat")))
        self.assertEqual(samples[key], 1.0)

    async def test_openMetrics(self) -> None:
        """
        A scraper asking for OpenMetrics gets it.
        """
        response = await self.http.get("http://127.0.0.1/metrics",
                                        headers={"Accept": "application/openmetrics-text; version=1.0.0"})
        self.assertTrue(response.headers.getRawHeaders("content-type")[0].startswith("application/openmetrics-text"))
        self.assertTrue((await response.text()).rstrip().endswith("# EOF"))

    async def test_otherPaths(self) -> None:
        """
        Every other path is a 404.
        """
        response = await self.http.get("http://127.0.0.1/")
        self.assertEqual(response.code, 404)


class ListenerTests(TestCase):
    """
    A server serves C{/metrics} on its C{metrics_port}, on its host.
    """

    async def test_realPort(self) -> None:
        node, metrics_port = free_ports(2)
        cluster = cluster_config(metered(backend("chat-1", "chat", node), metrics_port))
        app = await start_server(cluster, "chat-1")
        self.addCleanup(app.stopService)
        pool = HTTPConnectionPool(reactor, persistent=False)
        response = await treq.get(f"http://127.0.0.1:{metrics_port}/metrics", pool=pool)
        self.assertEqual(response.code, 200)
        text = await response.text()
        self.assertIn('gamenet_channel_pushes_total{server_id="chat-1",server_type="chat"} 0.0', text)
        self.assertIn("process_resident_memory_bytes", text)

    def test_portInUse(self) -> None:
        """
        A metrics port in use stops the server before it starts, naming it.
        """
        listener = MetricsListener("chat-1", Metrics("chat-1", "chat", True).registry, "127.0.0.1", 1, reactor)
        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        listener.port_number = port.getHost().port
        error = self.assertRaises(ListenError, listener.privilegedStartService)
        self.assertIn("[server:chat-1] metrics_port: cannot serve metrics on 127.0.0.1:", str(error))



def _documented() -> dict[str, tuple[str, set[str]]]:
    """
    The metrics in the tables of doc/observability.md: name to type and labels.
    """
    with open(OBSERVABILITY, encoding="utf-8") as f:
        text = f.read()
    return {name: (kind, set(re.findall(r"`(\w+)`", labels)))
            for name, kind, labels in re.findall(r"^\| `(\w+)` \| (\w+) \|([^|]*)\|", text, re.M)}


class DocTests(SynchronousTestCase):
    """
    doc/observability.md lists what the registries export.
    """

    def test_everyMetric(self) -> None:
        """
        Its tables name every C{gamenet_} series of a frontend and two
        backends (a frontend exports every kind: its own, a backend's and its
        storage keeper's), with its type and labels, and no other; its text
        names the process collector's.
        """
        cluster = MemoryCluster(
            cluster_config(metered(frontend("connector-1", "connector"), 9101),
                           metered(backend("area-1", "area"), 9102), metered(backend("area-2", "area"), 9103)),
            REGISTRATIONS,
        )
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        # A request of each kind, so that every labelled series has a sample to show its labels.
        answers = [client.request(route, msg) for route, msg in (
            ("connector.connector.echo", {}), ("connector.connector.refuse", {}), ("area.area.where", {}),
            ("area.area.call", {"to": "area-1", "text": "hi"}), ("area.area.call", {"to": "area-2", "text": "hi"}))]
        cluster.flush()
        for d in answers:
            self.successResultOf(d)
        exported: dict[str, tuple[str, set[str]]] = {}
        for app in cluster.apps.values():
            for family in app.metrics.registry.collect():
                name = family.name + "_total" if family.type == "counter" else family.name
                kind, labels = exported.get(name, (family.type, set()))
                exported[name] = (kind, labels | {n for sample in family.samples for n in sample.labels})
        with open(OBSERVABILITY, encoding="utf-8") as f:
            text = f.read()
        for name, (_, labels) in exported.items():
            self.assertTrue(labels, f"{name} has no sample")
            if not name.startswith("gamenet_"):
                self.assertIn(f"`{name}`", text)
        ours = {name: (kind, labels - _EVERYWHERE) for name, (kind, labels) in exported.items()
                if name.startswith("gamenet_")}
        self.assertEqual(ours, _documented())


    def test_kickReasons(self) -> None:
        """
        The C{reason} label's values it lists are gamenet's kick reasons.
        """
        with open(OBSERVABILITY, encoding="utf-8") as f:
            text = f.read()
        listed = text[text.index("- `reason`:"):text.index("- `call`:")]
        self.assertEqual(set(re.findall(r"`([a-z ]+)`", listed)) - {"reason", "single_session", "unique_session"},
                         KICK_REASONS)


class DefaultClusterTests(SynchronousTestCase):
    """
    The default cluster file turns metrics on for every server.
    """

    def test_metricsPorts(self) -> None:
        """
        C{metrics_port_base = 9100} gives each server 9100 plus its place in
        the file, as doc/observability.md says.
        """
        cluster = load(DEFAULT_CLUSTER, {})
        self.assertEqual({server.id: server.metrics_port for server in cluster.servers},
                         {"gate-1": 9100, "connector-1": 9101, "connector-2": 9102, "chat-1": 9103, "chat-2": 9104})
