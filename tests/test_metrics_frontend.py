"""
L{gamenet.metrics}: what a frontend with low limits counts of the clients it
refuses, kicks or drops, of an error answer its connection makes, and what
its storage keeper counts while the storage is down, in a L{MemoryCluster}.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from gamenet import GamenetError, storage_handler
from gamenet.testing import MemoryCluster, backend, cluster_config, frontend

from .test_metrics import REGISTRATIONS, metered, value
from .test_storage import Flaky


def _validate(request: Any) -> None:
    if isinstance(request.user, dict) and request.user.get("name") == "mallory":
        raise GamenetError("banned", 403)


class FrontendLimitsTests(SynchronousTestCase):
    """
    What a frontend with low limits counts of the clients it refuses, kicks
    or drops: a refused handshake, a client over C{messages_per_second}, one
    that stops reading.
    """

    def setUp(self) -> None:
        server = frontend("connector-1", "connector", messages_per_second=10, max_outbound_queue=4096)
        self.cluster = MemoryCluster(
            cluster_config(metered(server, 9101), metered(backend("area-1", "area"), 9102), extra_routes=["onShout"]),
            REGISTRATIONS, lambda app: app.handshake(_validate),
        )
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.metrics = self.cluster.apps["connector-1"].metrics

    def test_handshakeRefused(self) -> None:
        """
        A handshake a validator refuses counts once; the connection is
        accepted, then closed.
        """
        refused = self.cluster.client("connector-1", refused=True, user={"name": "mallory"})
        self.assertEqual(refused.handshake["code"], 403)
        self.cluster.client("connector-1", user={"name": "alice"})
        self.assertEqual(value(self.metrics, "gamenet_client_handshakes_refused_total"), 1)
        self.assertEqual(value(self.metrics, "gamenet_client_connections_accepted_total"), 2)
        self.assertEqual(value(self.metrics, "gamenet_client_connections_open"), 1)
        self.assertEqual(self.metrics.summary()["kicks"], 0)

    def test_rateLimited(self) -> None:
        """
        A client sending more than C{messages_per_second} in a second is
        kicked: counted as rate limited and as a kick of that reason; the
        messages past the limit are not counted as requests.
        """
        client = self.cluster.client("connector-1")
        for n in range(15):
            client.notify("connector.connector.echo", {"n": n})
        self.cluster.flush()
        self.assertEqual(client.kick_reason, "rate limit exceeded")
        self.assertEqual(value(self.metrics, "gamenet_client_rate_limited_total"), 1)
        self.assertEqual(value(self.metrics, "gamenet_client_kicks_total", reason="rate limit exceeded"), 1)
        self.assertEqual(value(self.metrics, "gamenet_requests_total", route="connector.connector.echo",
                               kind="notify"), 10)
        self.assertEqual(value(self.metrics, "gamenet_client_connections_open"), 0)

    def test_slowConsumer(self) -> None:
        """
        Pushes to a client that stopped reading are queued bytes (a gauge)
        until they pass C{max_outbound_queue}; then the client is dropped
        and counted as a slow consumer, and the bytes are gone.
        """
        slow = self.cluster.client("connector-1")
        self.assertEqual(self.successResultOf(self.request(slow, "connector.connector.login", {"uid": "bob"})), {})
        (session,) = self.cluster.apps["connector-1"].sessions.get_by_uid("bob")
        session._link.pauseProducing()  # what the transport does when the client stops reading
        shouter = self.cluster.client("connector-1")
        shout = {"members": ["bob"], "text": "x" * 1000}
        self.assertEqual(self.successResultOf(self.request(shouter, "area.area.shout", shout)), {"missed": []})
        queued = value(self.metrics, "gamenet_client_outbound_queued_bytes")
        self.assertGreater(queued, 1000)
        self.assertEqual(queued, session._link.queued)
        for _ in range(4):
            self.successResultOf(self.request(shouter, "area.area.shout", shout))
        self.assertEqual(value(self.metrics, "gamenet_client_slow_consumers_total"), 1)
        self.assertEqual(value(self.metrics, "gamenet_client_outbound_queued_bytes"), 0)
        self.assertEqual(value(self.metrics, "gamenet_client_connections_open"), 1)

    def request(self, client: Any, route: str, msg: Any) -> Deferred[Any]:
        d = client.request(route, msg)
        self.cluster.flush()
        return d


class ConnectionAnswersTests(SynchronousTestCase):
    """
    An error answer the connection makes while writing counts as a client
    error answer, not as the route's (doc/observability.md says so).
    """

    def test_unwritable(self) -> None:
        """
        A handler's result that is not JSON-able is answered 500: the route
        counts a request served, the frontend an error answer.
        """
        cluster = MemoryCluster(cluster_config(metered(frontend("connector-1", "connector"), 9101)), REGISTRATIONS)
        cluster.start()
        self.addCleanup(cluster.stop)
        metrics = cluster.apps["connector-1"].metrics
        d = cluster.client("connector-1").request("connector.connector.unwritable", {})
        cluster.flush()
        self.assertEqual(self.successResultOf(d)["code"], 500)
        self.flushLoggedErrors(TypeError)
        route = "connector.connector.unwritable"
        self.assertEqual(value(metrics, "gamenet_requests_total", route=route, kind="request"), 1)
        self.assertEqual(value(metrics, "gamenet_error_answers_total", route=route, code_class="5xx"), 0)
        self.assertEqual(value(metrics, "gamenet_client_error_answers_total"), 1)
        self.assertEqual(metrics.summary()["errors"], 0)


class StorageMetricsTests(SynchronousTestCase):
    """
    The storage keeper's counters while its storage is down, then back.
    """

    def test_storageDown(self) -> None:
        """
        A bind while the storage fails counts an error, leaves the storage
        unhealthy and owes a query and a write; once it is back, the owed
        calls are paid.
        """
        storage = Flaky()
        config = attrs.evolve(cluster_config(metered(frontend("connector-1", "connector"), 9101)),
                              storage="flaky", storage_timeout=1.0)
        cluster = MemoryCluster(config, [*REGISTRATIONS, storage_handler(storage, "flaky")])
        cluster.start()
        self.addCleanup(cluster.stop)
        metrics = cluster.apps["connector-1"].metrics
        storage.mode = "fail"
        client = cluster.client("connector-1")
        d = client.request("connector.connector.login", {"uid": "ann"})
        cluster.flush()
        self.assertEqual(self.successResultOf(d), {})
        self.assertEqual(value(metrics, "gamenet_storage_errors_total"), 1)
        self.assertEqual(value(metrics, "gamenet_storage_healthy"), 0)
        self.assertEqual(value(metrics, "gamenet_storage_owed_calls"), 1)
        storage.mode = "work"
        cluster.advance(5.5)
        self.assertEqual(value(metrics, "gamenet_storage_owed_calls"), 0)
        self.assertEqual(value(metrics, "gamenet_storage_healthy"), 1)
        self.assertEqual(value(metrics, "gamenet_storage_calls_total", call="query"), 2)
        self.assertEqual(value(metrics, "gamenet_storage_calls_total", call="write"), 1)
        self.assertEqual(value(metrics, "gamenet_storage_errors_total"), 1)
