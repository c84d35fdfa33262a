"""
The cluster inside one test: forwarding, backend sessions, C{app.rpc},
routing, timeouts, dead nodes and node authentication, with L{MemoryCluster}.
"""

from __future__ import annotations

from twisted.cred.credentials import UsernamePassword
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.spread import pb
from twisted.spread.flavors import NoSuchMethod
from twisted.test import iosim
from twisted.trial.unittest import SynchronousTestCase

from gamenet import GamenetError, Handler, Refused, Remote, handler, remote
from gamenet.cluster import RemoteError, wire
from gamenet.cluster.link import NodeLink
from gamenet.cluster.node import MAX_RECORD
from gamenet.testing import MemoryCluster, backend, cluster_config, frontend


class Area(Handler):
    def where(self, msg, session):
        return {"server": self.app.server_id, "uid": session.uid, "rid": session.get("rid"), "msg": msg}

    async def login(self, msg, session):
        await session.bind(msg["uid"])
        session.set("rid", msg["rid"])
        await session.push("rid")
        return {"server": self.app.server_id}

    async def leave(self, msg, session):
        session.delete("rid")
        await session.push("rid")
        await session.unbind()
        return {}

    def boom(self, msg, session):
        raise ValueError("backend detail")

    def refuse(self, msg, session):
        raise GamenetError("full", 409)

    def hang(self, msg, session):
        return Deferred()

    async def shout(self, msg, session):
        return await self.app.rpc.area.areaRemote.echo(msg["to"], msg["text"])

    async def tell(self, msg, session):
        return await self.app.rpc.area.areaRemote.echo.to(msg["server"])(msg["text"])

    async def everyone(self, msg, session):
        results = await self.app.rpc.area.areaRemote.echo.broadcast("all")
        return sorted(results.items())

    async def fails(self, msg, session):
        try:
            await self.app.rpc.area.areaRemote.explode.to("area-2")()
        except RemoteError as e:
            return {"code": e.code, "type": e.type, "server": e.server_id, "message": e.message}

    async def kick(self, msg, session):
        await self.app.backend_sessions.kick_by_uid(session.frontend_id, msg["uid"], "kicked by area")
        return {}

    async def sessions(self, msg, session):
        service = self.app.backend_sessions
        fresh = await service.get(session.frontend_id, session.id)
        others = await service.get_by_uid(session.frontend_id, msg["uid"])
        await service.set(session.frontend_id, session.id, "level", 3)
        connected = await service.is_connected(session.frontend_id, session.id)
        sent = await service.send(session.frontend_id, session.id, "onNote", {"n": 1})
        count = await service.broadcast(session.frontend_id, "onAll", {"b": True})
        await service.delete(session.frontend_id, session.id, "rid")
        return {"fresh": fresh.uid, "others": [s.id for s in others], "connected": connected,
                "sent": sent, "count": count}


class AreaRemote(Remote):
    def echo(self, text):
        return f"{text} from {self.app.server_id}"

    def explode(self):
        raise KeyError("remote detail")


REGISTRATIONS = [handler(Area, "area"), remote(AreaRemote, "area")]


def make_cluster(configure=None, **options):
    return MemoryCluster(
        cluster_config(
            frontend("connector-1", "connector"),
            frontend("connector-2", "connector"),
            backend("area-1", "area"),
            backend("area-2", "area"),
            extra_routes=["onNote", "onAll"],
            **options,
        ),
        REGISTRATIONS,
        configure,
    )


class ForwardingTests(SynchronousTestCase):
    """
    A frontend forwards routes of other server types and relays the answers.
    """

    def setUp(self):
        self.cluster = make_cluster(rpc_timeout=2)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def request(self, client, route, msg=None):
        d = client.request(route, msg or {})
        self.cluster.flush()
        return self.successResultOf(d)

    def test_forwarded(self):
        """
        A backend route is answered by a backend; a guest is routed by its
        session id, the same backend each time.
        """
        client = self.cluster.client("connector-1")
        first = self.request(client, "area.area.where", {"x": 1})
        self.assertIn(first["server"], ("area-1", "area-2"))
        self.assertEqual((first["uid"], first["msg"]), (None, {"x": 1}))
        self.assertEqual(self.request(client, "area.area.where")["server"], first["server"])

    def test_bindAndPush(self):
        """
        A backend binds the session and pushes a setting: the frontend's real
        session has them, and the next forwarded request carries them, routed
        by the uid from then on.
        """
        client = self.cluster.client("connector-2")
        self.request(client, "area.area.login", {"uid": "bob", "rid": "r1"})
        session = self.cluster.apps["connector-2"].sessions.get_by_uid("bob")[0]
        self.assertEqual(session.settings, {"rid": "r1"})
        by_uid = self.cluster.apps["connector-2"].node.pick("area", session).id
        self.assertEqual(self.request(client, "area.area.where"),
                         {"server": by_uid, "uid": "bob", "rid": "r1", "msg": {}})
        self.request(client, "area.area.leave")
        self.assertEqual((session.uid, session.settings), (None, {}))

    def test_routeFunction(self):
        """
        C{app.route} picks the backend for forwarded requests.
        """
        cluster = make_cluster(lambda app: app.route("area", lambda param, servers: servers[-1]))
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        for _ in range(3):
            d = client.request("area.area.where", {})
            cluster.flush()
            self.assertEqual(self.successResultOf(d)["server"], "area-2")

    def test_errors(self):
        """
        Errors on the backend reach the client as error responses: a handler
        that raises answers 500 without its detail, a L{GamenetError} its own
        code, an unknown route 404.
        """
        client = self.cluster.client("connector-1")
        self.assertEqual(self.request(client, "area.area.boom"), {"code": 500, "message": "internal server error"})
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(self.request(client, "area.area.refuse"), {"code": 409, "message": "full"})
        self.assertEqual(self.request(client, "area.area.nothing")["code"], 404)
        self.assertEqual(self.request(client, "area.area.where")["msg"], {})

    def test_noRemotesOrSys(self):
        """
        Clients reach handlers only: remotes and sys calls answer 404.
        """
        client = self.cluster.client("connector-1")
        self.assertEqual(self.request(client, "area.areaRemote.echo", ["x"])["code"], 404)
        self.assertEqual(self.request(client, "sys.sys.kick_uid", ["bob", "x"])["code"], 404)
        self.assertEqual(self.request(client, "nowhere.h.m")["code"], 404)

    def test_typeGone(self):
        """
        A type of the cluster file with no server registered any more (all
        gone from Redis discovery) answers 503, whether its route was used
        before or not; a type the cluster does not have stays 404.
        """
        client = self.cluster.client("connector-1")
        self.assertEqual(self.request(client, "area.area.where")["msg"], {})
        app = self.cluster.apps["connector-1"]
        app.registry.remove(["area-1", "area-2"])
        for route in ("area.area.where", "area.area.never"):
            self.assertEqual(self.request(client, route), {"code": 503, "message": "no area server is available"})
        self.assertEqual(self.request(client, "nowhere.h.m")["code"], 404)

    def test_timeout(self):
        """
        A backend that never answers: the client gets 504 after the call timeout.
        """
        client = self.cluster.client("connector-1")
        d = client.request("area.area.hang", {})
        self.cluster.advance(1.5)
        self.assertNoResult(d)
        self.cluster.advance(1.5)
        self.assertEqual(self.successResultOf(d)["code"], 504)

    def test_globalFilter(self):
        """
        A global filter on the frontend runs before forwarding and may refuse.
        """
        seen = []

        def refuse(request):
            seen.append(request.msg)
            if request.msg.get("no"):
                raise Refused("not here")

        cluster = make_cluster(lambda app: app.global_before(refuse) if app.is_frontend else None)
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        d = client.request("area.area.where", {"no": True})
        cluster.flush()
        self.assertEqual(self.successResultOf(d), {"code": 403, "message": "not here"})
        d = client.request("area.area.where", {"ok": True})
        cluster.flush()
        self.assertEqual(self.successResultOf(d)["msg"], {"ok": True})
        self.assertEqual(seen, [{"no": True}, {"ok": True}])

    def test_notify(self):
        """
        A notify is forwarded and runs the backend handler; nothing comes back.
        """
        calls = []
        cluster = make_cluster(lambda app: app.before(lambda r: calls.append((app.server_id, r.msg))))
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        client.notify("area.area.where", {"n": 1})
        cluster.flush()
        self.assertEqual([msg for _, msg in calls], [{"n": 1}])
        self.assertIn(calls[0][0], ("area-1", "area-2"))

    def test_batching(self):
        """
        Requests forwarded to one backend in one reactor turn cross in one node call.
        """
        client = self.cluster.client("connector-1")
        batches = []
        for app in self.cluster.apps.values():
            for avatar in app.node.node_server.peers:
                original = avatar.perspective_calls
                avatar.perspective_calls = lambda batch, original=original: (batches.append(batch), original(batch))
        ds = [client.request("area.area.where", {"i": i}) for i in range(20)]
        self.cluster.flush()
        self.assertEqual(sorted(self.successResultOf(d)["msg"]["i"] for d in ds), list(range(20)))
        self.assertEqual(len(batches), 1)


class BackendSessionServiceTests(SynchronousTestCase):
    """
    A backend acts on sessions of any frontend through L{app.backend_sessions}.
    """

    def test_calls(self):
        """
        get, get_by_uid, set, is_connected, send, broadcast and delete act on
        the real session and its client.
        """
        cluster = make_cluster()
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        bystander = cluster.client("connector-1")
        notes, broadcasts = [], []
        client.on("onNote", notes.append)
        bystander.on("onAll", broadcasts.append)
        d = client.request("area.area.login", {"uid": "ann", "rid": "r9"})
        cluster.flush()
        self.successResultOf(d)
        d = client.request("area.area.sessions", {"uid": "ann"})
        cluster.flush()
        session = cluster.apps["connector-1"].sessions.get_by_uid("ann")[0]
        self.assertEqual(self.successResultOf(d), {"fresh": "ann", "others": [session.id], "connected": True,
                                                   "sent": True, "count": 2})
        self.assertEqual((notes, broadcasts), ([{"n": 1}], [{"b": True}]))
        self.assertEqual(session.settings, {"level": 3})

    def test_kickByUid(self):
        """
        A backend kicks a user on its frontend: the client gets the reason and is closed.
        """
        cluster = make_cluster()
        cluster.start()
        self.addCleanup(cluster.stop)
        victim = cluster.client("connector-2")
        d = victim.request("area.area.login", {"uid": "eve", "rid": "r1"})
        cluster.flush()
        self.successResultOf(d)
        admin = cluster.client("connector-2")
        d = admin.request("area.area.kick", {"uid": "eve"})
        cluster.advance(0.5)
        self.assertEqual(self.successResultOf(d), {})
        self.assertEqual(self.successResultOf(victim.closed), "kicked by area")
        self.assertEqual(cluster.apps["connector-2"].sessions.get_by_uid("eve"), [])


class RpcTests(SynchronousTestCase):
    """
    C{app.rpc} between servers.
    """

    def setUp(self):
        self.cluster = make_cluster()
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.client = self.cluster.client("connector-1")

    def request(self, route, msg):
        d = self.client.request(route, msg)
        self.cluster.flush()
        return self.successResultOf(d)

    def test_routeParam(self):
        """
        The route parameter picks the server, the same one for the same
        parameter, and is not passed to the remote.
        """
        first = self.request("area.area.shout", {"to": "room-7", "text": "hi"})
        self.assertIn(first, ("hi from area-1", "hi from area-2"))
        self.assertEqual(self.request("area.area.shout", {"to": "room-7", "text": "hi"}), first)

    def test_to(self):
        """
        C{.to(id)} calls one server, this one included.
        """
        self.assertEqual(self.request("area.area.tell", {"server": "area-1", "text": "a"}), "a from area-1")
        self.assertEqual(self.request("area.area.tell", {"server": "area-2", "text": "b"}), "b from area-2")

    def test_broadcast(self):
        """
        C{.broadcast} calls every server of the type.
        """
        self.assertEqual(self.request("area.area.everyone", {}),
                         [["area-1", "all from area-1"], ["area-2", "all from area-2"]])

    def test_remoteRaises(self):
        """
        A remote that raises gives the caller a L{RemoteError} naming the
        server and the exception type, without its message.
        """
        self.assertEqual(self.request("area.area.fails", {}),
                         {"code": 500, "type": "KeyError", "server": "area-2", "message": "internal server error"})
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_filters(self):
        """
        RPC before and after filters see each call; a before filter may change
        the arguments.
        """
        seen = []

        def before(call):
            seen.append(("before", call.server_id, call.route, list(call.args)))
            call.args = [a.upper() for a in call.args]

        def configure(app):
            app.rpc_before(before, "area.areaRemote.*")
            app.rpc_after(lambda call: seen.append(("after", call.result, call.error)))

        cluster = make_cluster(configure)
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        d = client.request("area.area.tell", {"server": "area-2", "text": "x"})
        cluster.flush()
        self.assertEqual(self.successResultOf(d), "X from area-2")
        self.assertEqual(seen, [("before", "area-2", "area.areaRemote.echo", ["x"]),
                                ("after", "X from area-2", None)])


class FailureTests(SynchronousTestCase):
    """
    Dead servers fail calls fast and are routed around; links come back.
    """

    def test_deadBackend(self):
        """
        With one backend dead, its calls fail at once with 503 and routing
        uses the other; after it restarts, it serves again.
        """
        cluster = make_cluster()
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        removed = []
        cluster.apps["connector-1"].on("remove_servers", removed.append)
        cluster.kill("area-1")
        self.assertEqual(removed, [["area-1"]])
        d = client.request("area.area.tell", {"server": "area-1", "text": "x"})
        cluster.flush()
        answer = self.successResultOf(d)
        self.assertEqual(answer["code"], 503)
        for i in range(5):
            d = client.request("area.area.where", {"i": i})
            cluster.flush()
            self.assertEqual(self.successResultOf(d)["server"], "area-2")
        cluster.start("area-1")
        d = client.request("area.area.tell", {"server": "area-1", "text": "back"})
        cluster.flush()
        self.assertEqual(self.successResultOf(d), "back from area-1")

    def test_hungBackend(self):
        """
        A backend that hangs without dying: calls to it answer 504 after the
        timeout, then the frontend routes around it (503 at once for calls
        that can only go there); once it answers again it serves again.
        """
        cluster = make_cluster(rpc_timeout=2)
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        cluster.freeze("area-1")
        d = client.request("area.area.tell", {"server": "area-1", "text": "x"})
        cluster.advance(1.5)
        self.assertNoResult(d)
        cluster.advance(1.5)
        self.assertEqual(self.successResultOf(d)["code"], 504)
        self.assertEqual([s.id for s in cluster.apps["connector-1"].node.available("area")], ["area-2"])
        for i in range(3):
            d = client.request("area.area.where", {"i": i})
            cluster.flush()
            self.assertEqual(self.successResultOf(d)["server"], "area-2")
        cluster.thaw("area-1")
        cluster.advance(1.5)
        self.assertEqual([s.id for s in cluster.apps["connector-1"].node.available("area")], ["area-1", "area-2"])
        d = client.request("area.area.tell", {"server": "area-1", "text": "back"})
        cluster.flush()
        self.assertEqual(self.successResultOf(d), "back from area-1")

    def test_allDead(self):
        """
        With every backend of a type dead, its routes answer 503 at once.
        """
        cluster = make_cluster()
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        cluster.kill("area-1")
        cluster.kill("area-2")
        d = client.request("area.area.where", {})
        cluster.flush()
        self.assertEqual(self.successResultOf(d), {"code": 503, "message": "no area server is available"})


class RuntimeServersTests(SynchronousTestCase):
    """
    C{app.add_servers} and C{app.remove_servers} change the cluster while it runs.
    """

    def test_removeAndAdd(self):
        """
        A removed server is no longer linked or routed to and C{remove_servers}
        fires; added back, it is linked and routed to again.
        """
        cluster = make_cluster()
        cluster.start()
        self.addCleanup(cluster.stop)
        app = cluster.apps["connector-1"]
        events = []
        app.on("remove_servers", lambda ids: events.append(("removed", ids)))
        app.on("add_servers", lambda servers: events.append(("added", [s.id for s in servers])))
        area_2 = app.server_by_id("area-2")
        app.remove_servers(["area-2"])
        cluster.flush()
        self.assertNotIn("area-2", app.node.links)
        self.assertEqual([s.id for s in app.node.available("area")], ["area-1"])
        self.assertIsNone(app.server_by_id("area-2"))
        client = cluster.client("connector-1")
        for i in range(4):
            d = client.request("area.area.where", {"i": i})
            cluster.flush()
            self.assertEqual(self.successResultOf(d)["server"], "area-1")
        app.add_servers([area_2])
        cluster.settle()
        self.assertEqual([s.id for s in app.node.available("area")], ["area-1", "area-2"])
        self.assertEqual(events, [("removed", ["area-2"]), ("added", ["area-2"])])


class AvailabilityTests(SynchronousTestCase):
    """
    The servers a frontend routes to follow every change of availability,
    though they are kept between requests: links going down and coming up,
    a peer that stops and starts answering, and the registry changing.
    """

    def setUp(self):
        # The first available area server, so that which one serves says
        # which ones the frontend takes for available.
        self.cluster = make_cluster(lambda app: app.route("area", lambda param, servers: servers[0]), rpc_timeout=2)
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.app = self.cluster.apps["connector-1"]
        self.client = self.cluster.client("connector-1")
        self.assertServedBy("area-1")

    def assertServedBy(self, server_id):
        """
        A forwarded request is served by C{server_id}, and the frontend's
        available area servers start with it.
        """
        d = self.client.request("area.area.where", {})
        self.cluster.flush()
        self.assertEqual(self.successResultOf(d)["server"], server_id)
        self.assertEqual(self.app.node.available("area")[0].id, server_id)

    def test_linkDownAndUp(self):
        """
        A backend whose link goes down is routed around; once its link is up
        again, it is routed to again.
        """
        self.cluster.kill("area-1")
        self.assertServedBy("area-2")
        self.cluster.start("area-1")
        self.assertServedBy("area-1")

    def test_linkBackWhenPeerLinks(self):
        """
        A link waiting out its reconnection backoff connects at once when
        the peer links to this server: the peer is back, so it is routed to
        without waiting up to 5 s.
        """
        self.cluster.kill("area-1")
        self.cluster.advance(20)
        link = self.app.node.links["area-1"]
        self.assertFalse(link.up)
        app = self.cluster.apps["area-1"]
        app.privilegedStartService()
        app.startService()
        self.cluster.flush()
        self.assertTrue(link.up)
        self.assertServedBy("area-1")

    def test_health(self):
        """
        A backend that stops answering is routed around; once it answers
        again, it is routed to again.
        """
        self.cluster.freeze("area-1")
        self.cluster.advance(3)
        self.assertEqual([s.id for s in self.app.node.available("area")], ["area-2"])
        self.cluster.thaw("area-1")
        self.cluster.advance(1.5)
        self.assertServedBy("area-1")

    def test_registry(self):
        """
        A server removed from the registry is routed around at once; added
        back, it is routed to once its link is up.
        """
        area_1 = self.app.server_by_id("area-1")
        self.app.remove_servers(["area-1"])
        self.assertServedBy("area-2")
        self.app.add_servers([area_1])
        self.cluster.settle()
        self.assertServedBy("area-1")

    def test_replaced(self):
        """
        Replacing the registry's servers (what discovery does) changes the
        routing at once.
        """
        others = [s for s in self.app.servers.values() if s.id not in ("area-1", self.app.server_id)]
        self.app.replace_servers(others)
        self.assertServedBy("area-2")

    def test_registryWhileStopped(self):
        """
        The registry's changes are followed even while the node is not
        running (its links do not follow them then).
        """
        self.cluster.stop("connector-1")
        self.assertEqual(self.app.node.available("connector"), [self.app.server])
        self.app.remove_servers(["connector-1"])
        self.assertEqual(self.app.node.available("connector"), [])

    def test_freshList(self):
        """
        Each call returns a list of its own: changing it changes no later answer.
        """
        servers = self.app.node.available("area")
        servers.clear()
        self.assertEqual([s.id for s in self.app.node.available("area")], ["area-1", "area-2"])


class AuthenticationTests(SynchronousTestCase):
    """
    Node links need the cluster secret.
    """

    def connect(self):
        """
        A bare PB client factory connected in memory to area-1's node port,
        and the pump that moves its bytes.
        """
        cluster = make_cluster()
        cluster.start()
        self.addCleanup(cluster.stop)
        factory = pb.PBClientFactory()
        client = factory.buildProtocol(None)
        server = cluster.apps["area-1"].node.node_server.factory.buildProtocol(None)
        pump = iosim.connect(server, iosim.makeFakeServer(server), client, iosim.makeFakeClient(client),
                             greet=False, clock=cluster.reactor)
        return factory, pump

    def login(self, name, secret):
        factory, pump = self.connect()
        d = factory.login(UsernamePassword(name, secret))
        pump.flush()
        return d

    def test_wrongSecret(self):
        """
        A node with the wrong secret is refused, and the refusal is logged.
        """
        from twisted.cred.error import UnauthorizedLogin
        from twisted.logger import globalLogPublisher

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        self.failureResultOf(self.login(b"area-2", b"guess"), UnauthorizedLogin)
        self.assertTrue(any("wrong cluster secret" in str(e.get("log_format")) for e in events))

    def test_unknownServer(self):
        """
        A node naming no server of the cluster is refused, even with the secret.
        """
        from twisted.cred.error import UnauthorizedLogin

        self.failureResultOf(self.login(b"intruder", b"test-secret"), UnauthorizedLogin)

    def test_anonymous(self):
        """
        An anonymous PB connection gets nothing callable.
        """
        factory, pump = self.connect()
        d = factory.getRootObject()
        pump.flush()
        root = self.successResultOf(d)
        d = root.callRemote("calls", b"")
        pump.flush()
        self.failureResultOf(d)
        self.assertEqual(len(self.flushLoggedErrors(NoSuchMethod)), 1)

    def test_rightSecret(self):
        """
        The right secret and a known server id log in.
        """
        self.successResultOf(self.login(b"area-2", b"test-secret"))


class UndeliveredBatchTests(SynchronousTestCase):
    """
    A batch that PB refuses to send is logged with the reason in one line.
    """

    def test_staleBroker(self):
        """
        A batch flushed on a link whose connection is gone before the link
        has heard of it (here by another listener of the connection's loss)
        is logged with PB's reason in one line, and nothing is logged as an
        error: batches ask PB for no answer, so PB refuses them at once
        (C{DeadReferenceError}) or never fails them at all.
        """
        clock = Clock()
        link = NodeLink("connector-1", "gate-1", "secret", lambda factory: Deferred(), clock)
        link.start()
        self.addCleanup(link.stop)
        broker = wire.NodeBroker()
        broker.makeConnection(StringTransport())
        sent = []

        def send():
            # The second call does not fit the first one's batch: the first goes now.
            sent.append(link.send(wire.NOTIFY, b"{}"))
            sent.append(link.send(wire.NOTIFY, b"x" * MAX_RECORD))

        broker.notifyOnDisconnect(send)
        link._logged_in(pb.RemoteReference(None, broker, 0, 0))
        lines = []
        observer = lambda event: lines.append(formatEvent(event))  # noqa: E731
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        broker.connectionLost(Failure(ConnectionDone()))
        clock.advance(0)
        self.assertEqual(sent, [True, True])
        self.assertEqual(lines, ["connector-1: a batch to gate-1 was not delivered: Calling Stale Broker",
                                 "connector-1: node link to gate-1 lost"])
