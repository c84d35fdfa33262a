"""
L{gamenet.metrics}: what a server counts, the series its registry exports,
the summary the master polls, and C{/metrics} over HTTP.
"""

from __future__ import annotations

from typing import Any

import attrs
import treq
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory
from twisted.web.client import HTTPConnectionPool
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet import GamenetError, Handler, Remote, handler, remote
from gamenet.config import ServerConfig
from gamenet.connector.listener import ListenError
from gamenet.metrics import BUCKETS, Metrics, MetricsListener, metrics_resource
from gamenet.protocol import package
from gamenet.testing import MemoryCluster, backend, cluster_config, free_ports, frontend, start_server


class Connector(Handler):
    def echo(self, msg: Any, session: Any) -> Any:
        return msg

    def refuse(self, msg: Any, session: Any) -> Any:
        raise GamenetError("no", 409)

    def later(self, msg: Any, session: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.app.reactor.callLater(0.004, d.callback, msg)
        return d

    async def login(self, msg: Any, session: Any) -> Any:
        await session.bind(msg["uid"])
        return {}


class Area(Handler):
    def where(self, msg: Any, session: Any) -> Any:
        return {"server": self.app.server_id}

    def boom(self, msg: Any, session: Any) -> Any:
        raise ValueError("backend detail")

    async def call(self, msg: Any, session: Any) -> Any:
        return await self.app.rpc.area.areaRemote.echo.to(msg["to"])(msg["text"])

    async def hangs(self, msg: Any, session: Any) -> None:
        try:
            other = "area-2" if self.app.server_id == "area-1" else "area-1"
            await self.app.rpc.area.areaRemote.hang.to(other)()
        except GamenetError:
            pass

    async def shout(self, msg: Any, session: Any) -> Any:
        channel = self.app.channels.create_channel("room")
        for uid in msg["members"]:
            channel.add(uid, session.frontend_id)
        missed = await channel.push_message("onShout", {"text": msg["text"]})
        return {"missed": missed}

    async def kick(self, msg: Any, session: Any) -> Any:
        await self.app.backend_sessions.kick_by_uid(session.frontend_id, msg["uid"], msg["reason"])
        return {}


class AreaRemote(Remote):
    def echo(self, text: str) -> str:
        return text

    def hang(self) -> Deferred[None]:
        return Deferred()


REGISTRATIONS = [handler(Connector, "connector"), handler(Area, "area"), remote(AreaRemote, "area")]


def metered(server: ServerConfig, port: int = 9100) -> ServerConfig:
    return attrs.evolve(server, metrics_port=port)


def value(metrics: Metrics, name: str, **labels: str) -> float:
    """
    One sample of C{metrics}' registry (0 when absent), under its constant labels.
    """
    labels = {"server_id": metrics.server_id, "server_type": metrics.server_type, **labels}
    found = metrics.registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def series(metrics: Metrics) -> int:
    return sum(len(family.samples) for family in metrics.registry.collect())


class ClusterMetricsTests(SynchronousTestCase):
    """
    Counters moved by known numbers of requests through a L{MemoryCluster}.
    """

    def setUp(self) -> None:
        self.cluster = MemoryCluster(
            cluster_config(metered(frontend("connector-1", "connector", messages_per_second=5000), 9101),
                           metered(backend("area-1", "area"), 9102), metered(backend("area-2", "area"), 9103),
                           extra_routes=["onShout"], rpc_timeout=2),
            REGISTRATIONS,
        )
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.connector = self.cluster.apps["connector-1"].metrics
        self.area = self.cluster.apps["area-1"].metrics
        self.client = self.cluster.client("connector-1")

    def request(self, route: str, msg: Any = None, client: Any = None) -> Any:
        d = (client or self.client).request(route, msg or {})
        self.cluster.flush()
        return self.successResultOf(d)

    def code(self, route: str, msg: Any = None) -> int:
        """
        The error code C{route} answers.
        """
        return int(self.request(route, msg)["code"])

    def test_localRequests(self) -> None:
        """
        Requests and notifies served on the frontend count per route with
        their kind, and each once in the latency histogram.
        """
        for n in range(3):
            self.assertEqual(self.request("connector.connector.echo", {"n": n}), {"n": n})
        self.client.notify("connector.connector.echo", {})
        self.cluster.flush()
        route = "connector.connector.echo"
        self.assertEqual(value(self.connector, "gamenet_requests_total", route=route, kind="request"), 3)
        self.assertEqual(value(self.connector, "gamenet_requests_total", route=route, kind="notify"), 1)
        self.assertEqual(value(self.connector, "gamenet_handler_duration_seconds_count", route=route), 4)
        self.assertEqual(value(self.connector, "gamenet_handler_duration_seconds_bucket", route=route, le="+Inf"), 4)
        self.assertEqual(value(self.connector, "gamenet_client_messages_total"), 4)
        summary = self.connector.summary()
        self.assertEqual((summary["requests"], summary["errors"], summary["forwarded"]), (4, 0, 0))
        self.assertEqual(summary["routes"][route]["requests"], 4)
        self.assertEqual(summary["latency"]["count"], 4)

    def test_latency(self) -> None:
        """
        The histogram holds the time from dispatch to answer: a handler
        answering 4 ms later (by the cluster's clock, not the wall clock
        measured) falls in a bucket over 1 ms.
        """
        d = self.client.request("connector.connector.later", {"x": 1})
        self.cluster.flush()
        self.cluster.advance(0.01)
        self.assertEqual(self.successResultOf(d), {"x": 1})
        latency = self.connector.summary()["routes"]["connector.connector.later"]["latency"]
        self.assertEqual(latency["buckets"], list(BUCKETS))
        self.assertEqual(len(latency["counts"]), len(BUCKETS) + 1)
        self.assertEqual(latency["counts"][-1], 1)
        self.assertGreaterEqual(latency["sum"], 0.0)

    def test_errors(self) -> None:
        """
        Answers with an error code count by route and code class, on the
        frontend for its own routes and for forwarded ones, and on the
        backend that failed.
        """
        self.assertEqual(self.code("connector.connector.refuse"), 409)
        self.assertEqual(self.code("connector.connector.refuse"), 409)
        self.assertEqual(self.code("area.area.boom"), 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(value(self.connector, "gamenet_error_answers_total", route="connector.connector.refuse",
                               code_class="4xx"), 2)
        self.assertEqual(value(self.connector, "gamenet_error_answers_total", route="area.area.boom",
                               code_class="5xx"), 1)
        self.assertEqual(value(self.connector, "gamenet_client_error_answers_total"), 3)
        backends = [app.metrics for app in self.cluster.apps.values() if app.server_type == "area"]
        self.assertEqual(sum(value(m, "gamenet_error_answers_total", route="area.area.boom", code_class="5xx")
                             for m in backends), 1)
        self.assertEqual(self.connector.summary()["errors"], 3)

    def test_forwarded(self) -> None:
        """
        Forwarded requests count on the frontend as forwarded, with their
        round trip, and on the backend that served them as served there.
        """
        for _ in range(5):
            self.request("area.area.where")
        route = "area.area.where"
        self.assertEqual(value(self.connector, "gamenet_forwarded_requests_total", route=route, kind="request"), 5)
        self.assertEqual(value(self.connector, "gamenet_forward_duration_seconds_count", route=route), 5)
        self.assertEqual(value(self.connector, "gamenet_requests_total", route=route, kind="request"), 0)
        backends = [app.metrics for app in self.cluster.apps.values() if app.server_type == "area"]
        self.assertEqual(sum(value(m, "gamenet_requests_total", route=route, kind="request") for m in backends), 5)
        summary = self.connector.summary()
        self.assertEqual((summary["requests"], summary["forwarded"]), (5, 5))
        self.assertGreaterEqual(value(self.connector, "gamenet_node_batch_calls_count"), 1)

    def test_unknownRouteFlood(self) -> None:
        """
        Routes the cluster does not serve count under C{route="unknown"}: a
        flood of 2,000 distinct ones adds no series past the first.
        """
        self.assertEqual(self.code("connector.nothing.first"), 404)
        before = series(self.connector)
        answers = [self.client.request(f"connector.nothing.m{n}", {}) for n in range(1000)]
        answers += [self.client.request(f"nowhere.x.m{n}", {}) for n in range(1000)]
        self.cluster.flush()
        for d in answers:
            self.assertEqual(self.successResultOf(d)["code"], 404)
        self.assertEqual(series(self.connector), before)
        self.assertEqual(value(self.connector, "gamenet_requests_total", route="unknown", kind="request"), 2001)
        self.assertEqual(value(self.connector, "gamenet_error_answers_total", route="unknown", code_class="4xx"),
                         2001)
        self.assertEqual(set(self.connector.summary()["routes"]), {"unknown"})

    def test_unknownForwardedRoutes(self) -> None:
        """
        Unknown routes of a server type of the cluster are forwarded, and
        count under C{"unknown"} on both sides.
        """
        for n in range(50):
            self.assertEqual(self.code(f"area.area.m{n}"), 404)
        self.assertEqual(value(self.connector, "gamenet_forwarded_requests_total", route="unknown", kind="request"),
                         50)
        self.assertEqual(set(self.connector.summary()["routes"]), {"unknown"})

    def test_rpc(self) -> None:
        """
        C{app.rpc} calls count per remote method, with errors and timeouts apart.
        """
        self.request("area.area.call", {"to": "area-2", "text": "hi"})
        self.client.notify("area.area.hangs", {})
        self.cluster.flush()
        self.cluster.advance(3)
        backends = [app.metrics for app in self.cluster.apps.values() if app.server_type == "area"]

        def total(name: str, method: str) -> float:
            return sum(value(m, name, method=method) for m in backends)

        self.assertEqual(total("gamenet_rpc_calls_total", "area.areaRemote.echo"), 1)
        self.assertEqual(total("gamenet_rpc_errors_total", "area.areaRemote.echo"), 0)
        self.assertEqual(total("gamenet_rpc_calls_total", "area.areaRemote.hang"), 1)
        self.assertEqual(total("gamenet_rpc_errors_total", "area.areaRemote.hang"), 1)
        self.assertEqual(total("gamenet_rpc_timeouts_total", "area.areaRemote.hang"), 1)

    def test_channelPushes(self) -> None:
        """
        A channel push counts once, with the members it reached and those it missed.
        """
        self.request("connector.connector.login", {"uid": "u1"})
        other = self.cluster.client("connector-1")
        self.request("connector.connector.login", {"uid": "u2"}, other)
        answer = self.request("area.area.shout", {"members": ["u1", "u2", "ghost"], "text": "hey"})
        self.assertEqual(answer, {"missed": ["ghost"]})
        backends = [app.metrics for app in self.cluster.apps.values() if app.server_type == "area"]
        self.assertEqual(sum(value(m, "gamenet_channel_pushes_total") for m in backends), 1)
        self.assertEqual(sum(value(m, "gamenet_channel_push_members_total") for m in backends), 2)
        self.assertEqual(sum(value(m, "gamenet_channel_push_missed_total") for m in backends), 1)
        self.assertEqual(sum(m.summary()["pushes"] for m in backends), 1)

    def test_kicks(self) -> None:
        """
        Kicks count by gamenet's reason; a game's own reason counts as
        C{other} and a protocol error as C{protocol error}, whatever its text.
        """
        kicked = self.cluster.client("connector-1")
        self.request("connector.connector.login", {"uid": "u1"}, kicked)
        self.request("area.area.kick", {"uid": "u1", "reason": "cheater #1234"})
        self.assertEqual(kicked.kick_reason, "cheater #1234")
        bad = self.cluster.client("connector-1")
        bad.send_raw(package.encode(package.HANDSHAKE, b"{}"))
        self.cluster.flush()
        self.assertEqual(value(self.connector, "gamenet_client_kicks_total", reason="other"), 1)
        self.assertEqual(value(self.connector, "gamenet_client_kicks_total", reason="protocol error"), 1)
        self.assertEqual(value(self.connector, "gamenet_client_protocol_errors_total"), 1)
        self.assertEqual(value(self.connector, "gamenet_client_kicks_total", reason="heartbeat timeout"), 0)
        self.assertEqual(self.connector.summary()["kicks"], 2)

    def test_connections(self) -> None:
        """
        Connections open are a gauge; accepted ones a counter.
        """
        second = self.cluster.client("connector-1")
        self.assertEqual(value(self.connector, "gamenet_client_connections_open"), 2)
        self.assertEqual(value(self.connector, "gamenet_client_connections_accepted_total"), 2)
        self.assertEqual(value(self.connector, "gamenet_client_outbound_queued_bytes"), 0)
        second.close()
        self.cluster.flush()
        self.assertEqual(value(self.connector, "gamenet_client_connections_open"), 1)
        self.assertEqual(value(self.connector, "gamenet_client_connections_accepted_total"), 2)

    def test_storage(self) -> None:
        """
        The storage keeper's counters are exported: a bind queries the
        storage, then writes the merged settings.
        """
        self.request("connector.connector.login", {"uid": "u1"})
        self.cluster.flush()
        self.assertEqual(value(self.connector, "gamenet_storage_calls_total", call="query"), 1)
        self.assertEqual(value(self.connector, "gamenet_storage_calls_total", call="write"), 1)
        self.assertEqual(value(self.connector, "gamenet_storage_errors_total"), 0)
        self.assertEqual(value(self.connector, "gamenet_storage_owed_calls"), 0)
        self.assertEqual(value(self.connector, "gamenet_storage_healthy"), 1)

    def test_constantLabels(self) -> None:
        """
        Every series has the server's id and type, the process's too.
        """
        families = list(self.connector.registry.collect())
        self.assertIn("process_cpu_seconds", {family.name for family in families})
        self.assertIn("python_info", {family.name for family in families})
        for family in families:
            for sample in family.samples:
                self.assertEqual((sample.labels["server_id"], sample.labels["server_type"]),
                                 ("connector-1", "connector"), sample)

    def test_ownRegistries(self) -> None:
        """
        Each application has its own registry, not prometheus_client's global one.
        """
        self.assertIsNot(self.connector.registry, self.area.registry)
        self.assertIsNone(REGISTRY.get_sample_value("gamenet_channel_pushes_total",
                                                    {"server_id": "area-1", "server_type": "area"}))
        self.assertEqual(value(self.area, "gamenet_client_connections_open"), 0)


class FilteredTests(SynchronousTestCase):
    """
    A route with filters (served through the dispatcher's slow path) counts
    the same: once per request, with its error answers.
    """

    def test_filtered(self) -> None:
        seen: list[str] = []

        def configure(app: Any) -> None:
            app.before(lambda request: seen.append(request.route))

        cluster = MemoryCluster(cluster_config(metered(frontend("connector-1", "connector"))), REGISTRATIONS,
                                configure)
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        answers = [client.request("connector.connector.echo", {"n": 1}), client.request("connector.connector.refuse")]
        client.notify("connector.connector.echo", {})
        cluster.flush()
        self.assertEqual([self.successResultOf(d) for d in answers], [{"n": 1}, {"code": 409, "message": "no"}])
        self.assertEqual(len(seen), 3)
        metrics = cluster.apps["connector-1"].metrics
        self.assertEqual(value(metrics, "gamenet_requests_total", route="connector.connector.echo", kind="request"), 1)
        self.assertEqual(value(metrics, "gamenet_requests_total", route="connector.connector.echo", kind="notify"), 1)
        self.assertEqual(value(metrics, "gamenet_handler_duration_seconds_count", route="connector.connector.refuse"),
                         1)
        self.assertEqual(value(metrics, "gamenet_error_answers_total", route="connector.connector.refuse",
                               code_class="4xx"), 1)


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

