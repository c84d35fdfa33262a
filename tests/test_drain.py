"""
Tests for the drain of a stopping server (C{drain_timeout}): it leaves routing
on every other server, a frontend serves its clients until they leave or the
timeout passes, a backend finishes what it serves; and with C{SIGTERM} on a
real process, no request fails.
"""

from __future__ import annotations

import os
import signal
import time

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from gamenet import Handler, handler
from gamenet.cluster import wire
from gamenet.cluster.control import ControlRemote
from gamenet.connector.frontend import ANSWER_GRACE
from gamenet.connector.tcp import TCPFactory
from gamenet.protocol import serializer
from gamenet.testing import MemoryCluster, backend, cluster_config, frontend

from ._processes import accepts
from .test_multiprocess import SERVERS, ClusterTestCase, EchoLoad, key_for


class Area(Handler):
    """
    C{area.area.*}: C{where} answers at once with the server's id; C{hold}
    answers when the test fires the Deferred it left in L{held}.
    """

    held: list[Deferred] = []

    def where(self, msg, session):
        return {"server": self.app.server_id}

    def hold(self, msg, session):
        d = Deferred()
        self.held.append(d)
        return d.addCallback(lambda _: {"server": self.app.server_id})


def first_available(route_param, servers):
    """
    Route every call to the first available server by id, so that a test
    knows where a call goes.
    """
    return servers[0]


def configure(app):
    app.route("area", first_available)


class DrainTestsMixin:
    drain_timeout = 5.0

    def setUp(self):
        Area.held = []
        self.cluster = MemoryCluster(
            cluster_config(frontend("connector-1", "connector"), backend("area-1", "area"), backend("area-2", "area"),
                           drain_timeout=self.drain_timeout, rpc_timeout=30),
            [handler(Area, "area")], configure,
        )
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.client = self.cluster.client("connector-1")

    def request(self, route, msg=None, client=None):
        d = (client or self.client).request(route, msg or {})
        self.cluster.flush()
        return d

    def state(self, server_id):
        d = ControlRemote(self.cluster.apps[server_id]).call("status", b"{}")
        self.cluster.flush()
        return serializer.loads(self.successResultOf(d))

    def stop(self, server_id):
        d = self.cluster.apps[server_id].stopService()
        self.cluster.flush()
        return d


class BackendDrainTests(DrainTestsMixin, SynchronousTestCase):
    """
    A draining backend gets no new calls, answers those it has, then stops;
    its peers route around it, and back once it returns.
    """

    def test_routesAround(self):
        """
        Once a backend drains, requests go to the next server of its type;
        the request it holds is answered, not failed; it stops once it has
        answered; and once it is back, requests go to it again.
        """
        held = self.request("area.area.hold")
        self.assertEqual(len(Area.held), 1)
        stopped = self.stop("area-1")
        self.assertEqual(self.state("area-1")["state"], "draining")
        self.assertEqual(self.state("connector-1")["links"], {"area-1": False, "area-2": True})
        self.assertEqual(self.successResultOf(self.request("area.area.where")), {"server": "area-2"})
        self.assertNoResult(stopped)
        Area.held[0].callback(None)
        self.cluster.flush()
        self.assertEqual(self.successResultOf(held), {"server": "area-1"})
        self.cluster.advance(0.2)
        self.successResultOf(stopped)
        self.cluster.start("area-1")
        self.assertEqual(self.state("connector-1")["links"], {"area-1": True, "area-2": True})
        self.assertEqual(self.successResultOf(self.request("area.area.where")), {"server": "area-1"})

    def test_timeoutBoundsTheWait(self):
        """
        A backend whose call is never answered stops once C{drain_timeout} has passed.
        """
        self.request("area.area.hold")
        stopped = self.stop("area-1")
        self.cluster.advance(self.drain_timeout - 0.5)
        self.assertNoResult(stopped)
        self.cluster.advance(3)
        self.successResultOf(stopped)

    def test_callQueuedBeforeDrain(self):
        """
        A request the frontend forwarded before it heard of the drain, but
        which reaches the backend after the drain was announced, is answered:
        the frontend answers the drain only once a ping sent behind that
        request has come back, so the backend knows it has the request.
        """
        link = self.cluster.apps["connector-1"].node.links["area-1"]
        perspective = link._perspective
        send = perspective.callRemote
        late = []
        # The connector's batches to area-1 are held, as on a slow connection.
        perspective.callRemote = lambda *args, **kw: late.append((args, kw)) or Deferred()
        answer = self.request("area.area.where")
        stopped = self.stop("area-1")
        self.assertEqual(len(late), 2, "the forward, then the ping of the drain")
        self.assertEqual(self.state("connector-1")["links"]["area-1"], False)
        self.assertNoResult(stopped)
        perspective.callRemote = send
        for args, kw in late:
            send(*args, **kw)
        self.cluster.flush()
        self.assertEqual(self.successResultOf(answer), {"server": "area-1"})
        self.cluster.advance(0.2)
        self.successResultOf(stopped)

    def test_drainWire(self):
        """
        The draining server sends L{wire.DRAIN} on each of its links; a peer
        marks it unavailable until its link goes down.
        """
        node = self.cluster.apps["area-2"].node
        self.assertTrue(node.link_available("area-1"))
        self.stop("area-1")
        self.assertFalse(node.link_available("area-1"))
        self.assertEqual([s.id for s in node.available("area")], ["area-2"])
        self.cluster.advance(1)
        self.cluster.start("area-1")
        self.assertTrue(node.link_available("area-1"))
        self.assertEqual(wire.DRAIN, 6)


class FrontendDrainTests(DrainTestsMixin, SynchronousTestCase):
    """
    A draining frontend stops accepting, serves its clients until they leave
    or C{drain_timeout} passes, then answers what is in flight and kicks.
    """

    def test_refusesNewConnections(self):
        """
        From the start of the drain the client port is closed and no new
        connection is admitted; the status says draining.
        """
        app = self.cluster.apps["connector-1"]
        self.stop("connector-1")
        self.assertIsNone(app.getServiceNamed("clients").port)
        self.assertIsNone(TCPFactory(app.frontend).buildProtocol(None))
        self.assertEqual(self.state("connector-1")["state"], "draining")

    def test_servesUntilTimeout(self):
        """
        Connected clients are served during the drain; after
        C{drain_timeout} they are kicked C{"server shutting down"}.
        """
        stopped = self.stop("connector-1")
        self.cluster.advance(self.drain_timeout - 0.5)
        self.assertEqual(self.successResultOf(self.request("area.area.where")), {"server": "area-1"})
        self.assertIsNone(self.client.kick_reason)
        self.assertNoResult(stopped)
        self.cluster.advance(1)
        self.assertEqual(self.client.kick_reason, "server shutting down")
        self.cluster.advance(1)
        self.successResultOf(stopped)

    def test_stopsWhenClientsLeave(self):
        """
        The drain ends as soon as the last client has left.
        """
        stopped = self.stop("connector-1")
        self.cluster.advance(1)
        self.assertNoResult(stopped)
        self.client.close()
        self.cluster.advance(0.5)
        self.successResultOf(stopped)

    def test_broadcastReachesDrainingClients(self):
        """
        A draining frontend takes no new work, but a backend's broadcast to
        every client of its type still reaches the clients it serves.
        """
        pushes = []
        self.client.on("onNotice", pushes.append)
        self.stop("connector-1")
        self.cluster.advance(1)
        self.assertEqual(self.cluster.apps["area-1"].node.available("connector"), [])
        sent = self.cluster.apps["area-1"].channels.broadcast("connector", "onNotice", {"n": 1})
        self.cluster.flush()
        self.assertEqual(self.successResultOf(sent), 1)
        self.assertEqual(pushes, [{"n": 1}])

    def test_answersInFlight(self):
        """
        A request in flight when the drain times out is answered before the
        kick; one still unanswered after L{ANSWER_GRACE} does not hold the kick.
        """
        other = self.cluster.client("connector-1")
        stopped = self.stop("connector-1")
        self.cluster.advance(self.drain_timeout - 0.5)
        answered = self.request("area.area.hold")
        never = self.request("area.area.hold", client=other)
        self.cluster.advance(1)
        self.assertIsNone(self.client.kick_reason)
        Area.held[0].callback(None)
        self.cluster.flush()
        self.assertEqual(self.successResultOf(answered), {"server": "area-1"})
        self.cluster.advance(0.2)
        self.assertEqual(self.client.kick_reason, "server shutting down")
        self.assertIsNone(other.kick_reason)
        self.cluster.advance(ANSWER_GRACE)
        self.assertEqual(other.kick_reason, "server shutting down")
        self.failureResultOf(never)
        self.cluster.advance(3)
        self.successResultOf(stopped)


class NoDrainTests(SynchronousTestCase):
    """
    C{drain_timeout = 0}: a stopping frontend kicks at once, as before.
    """

    def test_kicksAtOnce(self):
        """
        The clients are kicked C{"server shutting down"} as the stop begins.
        """
        cluster = MemoryCluster(cluster_config(frontend("connector-1", "connector")))
        cluster.start()
        client = cluster.client("connector-1")
        d = cluster.apps["connector-1"].stopService()
        cluster.flush()
        self.assertEqual(client.kick_reason, "server shutting down")
        cluster.advance(3)
        self.successResultOf(d)


class SigtermDrainTests(ClusterTestCase):
    """
    A real cluster (see L{tests.test_multiprocess}) with C{drain_timeout = 5}.
    """

    drain_timeout = 5.0

    async def test_backendSigterm(self) -> None:
        """
        With clients sending requests, one backend gets SIGTERM: it drains
        (the other backend takes the new requests, it answers those it has)
        and exits; the master starts it again and it serves again. No
        request fails.
        """
        before = await self.wait_until(lambda: len(self.master.children()) == len(SERVERS) and self.master.children(),
                                       5, "the master's children")
        clients = {}
        for name, frontend_id, transport, uid in [
            ("a", "connector-1", "websocket", key_for("area-1", "a")),
            ("b", "connector-2", "tcp", key_for("area-1", "b")),
            ("c", "connector-1", "tcp", key_for("area-2", "c")),
        ]:
            clients[name] = client = await self.connect(frontend_id, transport)
            await self.request(client, "connector.sessionHandler.bind", {"uid": uid})
        load = EchoLoad(self, clients, 0.01)
        served = load.served
        try:
            await self.wait_until(lambda: len(served("area-1")) >= 10 and len(served("area-2")) >= 5, 10,
                                  "the load to reach both backends")
            stopped_at = time.monotonic()
            os.kill(before["area-1"], signal.SIGTERM)
            await self.wait_until(lambda: "area-1 draining" in self.master.log(), 10, "area-1 to drain")
            await self.wait_until(lambda: len(served("area-2", stopped_at)) >= 20, 10,
                                  "area-2 to take area-1's requests")
            await self.wait_until(lambda: "server area-1 died" in self.master.log(), 15, "area-1 to exit")
            await self.wait_until(
                lambda: self.master.children().get("area-1") not in (None, before["area-1"]), 10,
                "area-1 to be restarted",
            )
            back_at = time.monotonic()
            await self.wait_until(lambda: len(served("area-1", back_at)) >= 10, 20, "area-1 to serve again")
        finally:
            await load.stop()

        self.assertEqual({name: load.errors(name) for name in clients}, {name: [] for name in clients})
        self.assertIn("area-1 stopped", self.master.log())

    async def test_frontendSigterm(self) -> None:
        """
        SIGTERM to a connector: it refuses new connections at once, keeps
        serving its connected client until C{drain_timeout}, then kicks it
        C{"server shutting down"}; a client of the other connector sees no
        failure.
        """
        before = await self.wait_until(lambda: len(self.master.children()) == len(SERVERS) and self.master.children(),
                                       5, "the master's children")
        staying = await self.connect("connector-1", "tcp")
        other = await self.connect("connector-2", "websocket")
        load = EchoLoad(self, {"staying": staying, "other": other}, 0.02)
        records = load.records
        try:
            await self.wait_until(lambda: records["staying"] and records["other"], 10, "the load to be served")
            stopped_at = time.monotonic()
            os.kill(before["connector-1"], signal.SIGTERM)
            await self.wait_until(lambda: "connector-1 stopped accepting clients" in self.master.log(), 10,
                                  "connector-1 to stop accepting")
            self.assertFalse(accepts(self.port("connector-1")))
            served_during_drain = len(records["staying"])
            reason = await staying.closed.addTimeout(self.drain_timeout + 10, reactor)
            kicked_at = time.monotonic()
        finally:
            await load.stop()
        self.assertEqual(reason, "server shutting down")
        self.assertGreaterEqual(kicked_at - stopped_at, self.drain_timeout - 0.5)
        self.assertGreater(len([r for r in records["staying"][served_during_drain:] if isinstance(r[2], dict)]), 10)
        self.assertEqual(load.errors("other"), [])
        # A request the client sent as the kick was on its way is not in
        # flight on the server: it fails with the kick, and only it.
        failed = load.errors("staying")
        self.assertIn(failed, ([], records["staying"][-1:]))
        self.assertTrue(all("server shutting down" in str(r[2]) for r in failed), failed)
