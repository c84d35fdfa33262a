"""
Tests for the control channel (L{gamenet.cluster.control}, and
L{gamenet.cluster.master.MasterService.control}): the master's calls on its
servers over their master links.
"""

from __future__ import annotations

import os

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet import Application, Handler, handler
from gamenet.cluster import MasterService
from gamenet.cluster.control import ControlRemote
from gamenet.config import server_spec
from gamenet.errors import GamenetError, Timeout
from gamenet.protocol import serializer
from gamenet.testing import MemoryCluster, backend, cluster_config, free_ports, frontend

from ._processes import eventually


class Lobby(Handler):
    def login(self, msg, session):
        return session.bind(msg["uid"]).addCallback(lambda _: {"uid": msg["uid"]})


REGISTRATIONS = [handler(Lobby, "connector")]


class ControlRemoteTests(SynchronousTestCase):
    """
    L{ControlRemote} on the servers of a L{MemoryCluster}, called as the
    master link calls it.
    """

    def setUp(self):
        self.cluster = MemoryCluster(
            cluster_config(frontend("connector-1", "connector"), backend("chat-1", "chat"), extra_routes=["onNews"]),
            REGISTRATIONS,
        )
        self.cluster.start()
        self.addCleanup(self.cluster.stop)

    def control(self, server_id, name, **kwargs):
        d = ControlRemote(self.cluster.apps[server_id]).call(name, serializer.dumps(kwargs))
        self.cluster.flush()
        return serializer.loads(self.successResultOf(d))

    def controlError(self, server_id, name, args=b"{}"):
        d = ControlRemote(self.cluster.apps[server_id]).call(name, args)
        self.cluster.flush()
        return self.failureResultOf(d, GamenetError).value

    def login(self, uid):
        client = self.cluster.client("connector-1")
        d = client.request("connector.lobby.login", {"uid": uid})
        self.cluster.flush()
        self.successResultOf(d)
        return client

    def test_statusFrontend(self):
        """
        A frontend's status names it, counts its clients and bound sessions,
        tells which peers it routes to, and gives the process's pid, CPU and memory.
        """
        self.login("ann")
        self.cluster.client("connector-1")
        status = self.control("connector-1", "status")
        self.assertEqual(
            {key: status[key] for key in ("id", "type", "pid", "state", "frontend", "clients", "sessions", "links",
                                          "host")},
            {"id": "connector-1", "type": "connector", "pid": os.getpid(), "state": "up", "frontend": True,
             "clients": 2, "sessions": 1, "links": {"chat-1": True}, "host": "127.0.0.1"},
        )
        self.assertEqual(set(status["ports"]), {"node", "client", "tcp", "ws", "web", "http", "metrics"})
        self.assertGreater(status["cpu_seconds"], 0)
        self.assertGreater(status["rss"], 1 << 20)
        self.assertIsInstance(status["started"], float)
        self.assertIsInstance(status["metrics"], dict)

    def test_statusBackend(self):
        """
        A backend has no clients; its links name every other server.
        """
        status = self.control("chat-1", "status")
        self.assertEqual((status["frontend"], status["clients"], status["sessions"], status["links"]),
                         (False, 0, 0, {"connector-1": True}))

    def test_statusLinkDown(self):
        """
        A peer whose link is down is reported unavailable.
        """
        self.cluster.kill("chat-1")
        self.assertEqual(self.control("connector-1", "status")["links"], {"chat-1": False})

    def test_unknownCall(self):
        """
        An unknown call fails with code 400, naming the calls there are.
        """
        error = self.controlError("chat-1", "reboot")
        self.assertEqual(error.code, 400)
        self.assertIn("no control call 'reboot'", error.message)
        self.assertIn("status", error.message)

    def test_badArguments(self):
        """
        Arguments that are not JSON, not an object, or do not fit the call
        fail with code 400 before the call runs.
        """
        for args, text in [(b"{", "not JSON"), (b"[1]", "not a JSON object"), (b'{"loud": true}', "loud")]:
            error = self.controlError("connector-1", "status", args)
            self.assertEqual(error.code, 400)
            self.assertIn(text, error.message)

    def test_kickUid(self):
        """
        C{kick(uid)} kicks every session of the uid with the reason given
        and says how many; a backend kicks none.
        """
        client = self.login("ann")
        other = self.login("bob")
        self.assertEqual(self.control("connector-1", "kick", uid="ann", reason="bye"), {"kicked": 1})
        self.assertEqual(client.kick_reason, "bye")
        self.assertIsNone(other.kick_reason)
        self.assertEqual(self.control("connector-1", "kick", uid="nobody"), {"kicked": 0})
        self.assertEqual(self.control("chat-1", "kick", uid="bob"), {"kicked": 0})

    def test_kickSession(self):
        """
        C{kick(session)} kicks one session by id, with C{"kicked by admin"}
        unless told otherwise.
        """
        client = self.login("ann")
        session_id = next(iter(self.cluster.apps["connector-1"].sessions)).id
        self.assertEqual(self.control("connector-1", "kick", session=session_id), {"kicked": 1})
        self.assertEqual(client.kick_reason, "kicked by admin")

    def test_sessions(self):
        """
        C{sessions} lists a frontend's sessions by id (those of a uid, when
        given; the first C{limit}) with their uid, address, transport and
        age, and counts them all; a backend has none.
        """
        self.login("ann")
        self.cluster.client("connector-1")
        self.login("bob")
        self.cluster.advance(5)
        listed = self.control("connector-1", "sessions")
        self.assertEqual(listed["total"], 3)
        self.assertEqual([(s["uid"], s["transport"], s["seconds"]) for s in listed["sessions"]],
                         [("ann", "tcp", 5.0), (None, "tcp", 5.0), ("bob", "tcp", 5.0)])
        ids = [s["id"] for s in listed["sessions"]]
        self.assertEqual(ids, sorted(ids))
        self.assertTrue(all(isinstance(s["address"], str) for s in listed["sessions"]))
        self.assertEqual(self.control("connector-1", "sessions", limit=2),
                         {"total": 3, "sessions": listed["sessions"][:2]})
        self.assertEqual(self.control("connector-1", "sessions", uid="bob"),
                         {"total": 1, "sessions": listed["sessions"][2:]})
        self.assertEqual(self.control("chat-1", "sessions"), {"total": 0, "sessions": []})
        for args in (b'{"limit": 0}', b'{"limit": true}', b'{"uid": 5}'):
            self.assertEqual(self.controlError("connector-1", "sessions", args).code, 400, args)

    def test_kickNeedsOneTarget(self):
        """
        C{kick} needs exactly one of uid and session.
        """
        for args in [b"{}", b'{"uid": "a", "session": 1}']:
            self.assertEqual(self.controlError("connector-1", "kick", args).code, 400)

    def test_broadcast(self):
        """
        C{broadcast} pushes to every client of a frontend and counts them; a
        backend reaches none.
        """
        clients = [self.login("ann"), self.cluster.client("connector-1")]
        got = []
        for client in clients:
            client.on("onNews", got.append)
        self.assertEqual(self.control("connector-1", "broadcast", route="onNews", msg={"n": 1}), {"sessions": 2})
        self.assertEqual(got, [{"n": 1}, {"n": 1}])
        self.assertEqual(self.control("chat-1", "broadcast", route="onNews", msg={}), {"sessions": 0})

    def test_addAndRemoveServers(self):
        """
        C{add_servers} adds servers from their specs (and links to them);
        C{remove_servers} removes them; a bad spec fails with code 400.
        """
        app = self.cluster.apps["connector-1"]
        spec = server_spec(backend("chat-9", "chat", node_port=7009))
        self.assertIsNone(self.control("connector-1", "add_servers", specs=[spec]))
        self.assertEqual(app.server_by_id("chat-9").node_port, 7009)
        self.assertIn("chat-9", app.node.links)
        self.assertIsNone(self.control("connector-1", "remove_servers", ids=["chat-9"]))
        self.assertIsNone(app.server_by_id("chat-9"))
        error = self.controlError("connector-1", "add_servers", serializer.dumps({"specs": [{"id": "x"}]}))
        self.assertEqual(error.code, 400)
        self.assertIn("type", error.message)


class MasterLinkTests(TestCase):
    """
    Servers run under a master log in to it, and the master makes control
    calls on them (real sockets on 127.0.0.1).
    """

    async def start(self, **changes):
        ports = free_ports(4)
        self.cluster = attrs.evolve(
            cluster_config(frontend("connector-1", "connector", client_port=ports[0], node_port=ports[1]),
                           backend("chat-1", "chat", node_port=ports[2])),
            master_host="localhost", master_port=ports[3], **changes,
        )
        # The master listens on "localhost", the name of this machine in
        # hosts; the servers are on 127.0.0.1, which hosts lacks, so the
        # master starts no process of its own.
        self.master = MasterService(self.cluster, reactor=reactor, hosts={"localhost"})
        self.events = []
        self.master.member_listeners.append(lambda server_id, up: self.events.append((server_id, up)))
        self.master.privilegedStartService()
        self.master.startService()
        self.addCleanup(self.master.stopService)
        self.apps = {}
        for server_id in ("connector-1", "chat-1"):
            app = self.apps[server_id] = Application(self.cluster, server_id, REGISTRATIONS, reactor=reactor,
                                                     use_master=True)
            app.privilegedStartService()
            await app.startService()
            self.addCleanup(app.stopService)
        await self.until(lambda: set(self.master.up) == {"connector-1", "chat-1"}, "both servers logged in")

    async def until(self, condition, what):
        async def attempt():
            return condition()

        await eventually(attempt, 20, what, self.fail, 0.05)

    async def test_status(self):
        """
        The master gets a server's status; the listeners heard both logins.
        """
        await self.start()
        status = await self.master.control("connector-1", "status")
        self.assertEqual((status["id"], status["state"], status["pid"]), ("connector-1", "up", os.getpid()))
        self.assertEqual(sorted(self.events), [("chat-1", True), ("connector-1", True)])

    async def test_notLoggedIn(self):
        """
        A call on a server that is not logged in fails at once with code 404.
        """
        await self.start()
        with self.assertRaises(GamenetError) as caught:
            await self.master.control("chat-7", "status")
        self.assertEqual(caught.exception.code, 404)

    async def test_errorCrosses(self):
        """
        An error of the call on the server reaches the master with its code
        and message.
        """
        await self.start()
        with self.assertRaises(GamenetError) as caught:
            await self.master.control("chat-1", "reboot", now=True)
        self.assertEqual(caught.exception.code, 400)
        self.assertIn("no control call 'reboot'", caught.exception.message)

    async def test_logout(self):
        """
        A server that stops leaves C{up}, and the listeners hear it.
        """
        await self.start()
        await self.apps["chat-1"].stopService()
        await self.until(lambda: "chat-1" not in self.master.up, "chat-1 logged out")
        self.assertIn(("chat-1", False), self.events)

    async def test_redisDiscovery(self):
        """
        With Redis discovery a server still logs in to the master for its
        control calls, but takes no membership from it.
        """
        cluster = attrs.evolve(cluster_config(backend("chat-1", "chat")), master_port=1, discovery="redis")
        node = Application(cluster, "chat-1", reactor=Clock(), use_master=True).node
        self.assertTrue(node.use_master)
        self.assertFalse(node._master_membership)


class ControlTimeoutTests(SynchronousTestCase):
    """
    The master's calls are bounded by the cluster's C{rpc_timeout}.
    """

    def test_timeout(self):
        """
        A server that does not answer fails the call with L{Timeout} after C{rpc_timeout}.
        """
        clock = Clock()
        master = MasterService(cluster_config(backend("chat-1", "chat"), rpc_timeout=3), reactor=clock, hosts=set())

        class Mind:
            def callRemote(self, *args):
                return Deferred()

        class Avatar:
            mind = Mind()

        master.up["chat-1"] = Avatar()
        d = master.control("chat-1", "status")
        clock.advance(2.9)
        self.assertNoResult(d)
        clock.advance(0.2)
        self.assertIn("timed out after 3s", self.failureResultOf(d, Timeout).value.message)

    def test_killTime(self):
        """
        The supervisor gives a stopping server its drain_timeout and 10 s more
        before it kills it.
        """
        master = MasterService(cluster_config(backend("chat-1", "chat"), drain_timeout=7), reactor=Clock(),
                               hosts=set())
        self.assertEqual(master.supervisor.killTime, 17)
