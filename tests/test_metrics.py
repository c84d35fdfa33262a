"""
L{gamenet.metrics}: what the servers of a L{MemoryCluster} count, as their
registries export it and as the summary the master polls gives it. What is
exported over HTTP, and the list in doc/observability.md, are in
L{tests.test_metrics_export}.
"""

from __future__ import annotations

from typing import Any

import attrs
from prometheus_client import REGISTRY
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from gamenet import GamenetError, Handler, Remote, dispatch, handler, remote
from gamenet.config import ServerConfig
from gamenet.metrics import BUCKETS, Metrics
from gamenet.protocol import package
from gamenet.testing import MemoryCluster, backend, cluster_config, frontend


class Connector(Handler):
    def echo(self, msg: Any, session: Any) -> Any:
        return msg

    def refuse(self, msg: Any, session: Any) -> Any:
        raise GamenetError("no", 409)

    def unwritable(self, msg: Any, session: Any) -> Any:
        return {"not JSON": object()}

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

    def later(self, msg: Any, session: Any) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.app.reactor.callLater(0.02, d.callback, msg)
        return d

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

    def bucket(self, metrics: Metrics, name: str, route: str, le: str) -> float:
        return value(metrics, f"{name}_bucket", route=route, le=le)

    def test_latency(self) -> None:
        """
        The histogram holds the time from dispatch to answer: a handler
        answering 4 ms later falls in the bucket of 2.5 to 5 ms. (The
        dispatcher's clock is the cluster's here, so that the time is known.)
        """
        self.patch(dispatch, "perf_counter", self.cluster.reactor.seconds)
        d = self.client.request("connector.connector.later", {"x": 1})
        self.cluster.flush()
        self.assertNoResult(d)
        self.cluster.reactor.advance(0.004)
        self.cluster.flush()
        self.assertEqual(self.successResultOf(d), {"x": 1})
        route, name = "connector.connector.later", "gamenet_handler_duration_seconds"
        self.assertEqual([self.bucket(self.connector, name, route, le) for le in ("0.0025", "0.005", "+Inf")],
                         [0, 1, 1])
        self.assertAlmostEqual(value(self.connector, f"{name}_sum", route=route), 0.004)
        latency = self.connector.summary()["routes"][route]["latency"]
        self.assertEqual(latency["buckets"], list(BUCKETS))
        under = BUCKETS.index(0.005)  # the buckets under 5 ms
        self.assertEqual(latency["counts"], [0] * under + [1] * (len(BUCKETS) + 1 - under))
        self.assertAlmostEqual(latency["sum"], 0.004)

    def test_forwardedLatency(self) -> None:
        """
        A forwarded request's latency on its frontend is the round trip: a
        backend handler answering 20 ms later falls in the bucket of 10 to
        25 ms on both sides.
        """
        self.patch(dispatch, "perf_counter", self.cluster.reactor.seconds)
        d = self.client.request("area.area.later", {"x": 2})
        self.cluster.flush()
        self.cluster.reactor.advance(0.02)
        self.cluster.flush()
        self.assertEqual(self.successResultOf(d), {"x": 2})
        route = "area.area.later"
        self.assertEqual([self.bucket(self.connector, "gamenet_forward_duration_seconds", route, le)
                          for le in ("0.01", "0.025")], [0, 1])
        backends = [app.metrics for app in self.cluster.apps.values() if app.server_type == "area"]
        self.assertEqual([sum(self.bucket(m, "gamenet_handler_duration_seconds", route, le) for m in backends)
                          for le in ("0.01", "0.025")], [0, 1])

    def test_batches(self) -> None:
        """
        Six requests forwarded in one reactor turn go to their backend as
        one batch of six calls.
        """
        name = "gamenet_node_batch_calls_bucket"
        before = [value(self.connector, name, le=le) for le in ("4", "8")]
        answers = [self.client.request("area.area.where") for _ in range(6)]
        self.cluster.flush()
        self.assertEqual(len({self.successResultOf(d)["server"] for d in answers}), 1)
        after = [value(self.connector, name, le=le) for le in ("4", "8")]
        self.assertEqual([b - a for a, b in zip(before, after)], [0, 1])
        self.assertEqual(value(self.connector, "gamenet_forwarded_requests_total", route="area.area.where",
                               kind="request"), 6)

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
        backends = [app.metrics for app in self.cluster.apps.values() if app.server_type == "area"]
        self.assertEqual(sum(value(m, "gamenet_requests_total", route="unknown", kind="request")
                             for m in backends), 50)
        self.assertEqual(sum(value(m, "gamenet_error_answers_total", route="unknown", code_class="4xx")
                             for m in backends), 50)
        self.assertEqual({route for m in backends for route in m.summary()["routes"]}, {"unknown"})

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

