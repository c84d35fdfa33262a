"""
One server over real loopback sockets, driven by L{gamenet.client.Client}.
"""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from gamenet import GamenetError, Handler, Refused, handler, route_handler
from gamenet.client import Client
from gamenet.testing import client_port, cluster_config, frontend, start_server


class Game(Handler):
    def echo(self, msg, session):
        return msg

    async def later(self, msg, session):
        d = Deferred()
        reactor.callLater(0, d.callback, {"later": msg})
        return await d

    def boom(self, msg, session):
        raise RuntimeError("secret detail")

    def forbidden(self, msg, session):
        raise GamenetError("not yours", 403)

    def login(self, msg, session):
        d = session.bind(msg["uid"])
        d.addCallback(lambda _: {"uid": session.uid})
        return d

    def pushme(self, msg, session):
        session.send("onPush", {"n": msg["n"]})
        return {}

    def kickme(self, msg, session):
        reactor.callLater(0, session.kick, "bye")
        return {}


def registrations():
    return [handler(Game, "connector"), route_handler("connector.single.fn", lambda msg, session: "fn")]


class ServerTests(TestCase):
    transport = "websocket"

    async def setUp(self):
        cluster = cluster_config(frontend("connector-1", "connector", heartbeat=1), extra_routes=["onPush"])

        def configure(app):
            app.before(lambda request: self.seen.append(request.route), "connector.game.echo")

            def refuse(request):
                if request.msg == {"refuse": True}:
                    raise Refused("no")

            app.before(refuse)

        self.seen = []
        self.app = await start_server(cluster, "connector-1", registrations(), configure=configure)
        self.addCleanup(self.app.stopService)
        self.client = await Client.connect(reactor, "127.0.0.1", client_port(self.app), self.transport)
        self.addCleanup(self.client.close)

    async def test_noDelay(self):
        """
        The server turned Nagle's algorithm off on the client's socket, so
        small answers are not held for a delayed ACK.
        """
        [connection] = self.app.frontend.connections
        self.assertTrue(connection.link.transport.getTcpNoDelay())

    async def test_echo(self):
        self.assertEqual(await self.client.request("connector.game.echo", {"a": [1, "é"]}), {"a": [1, "é"]})
        self.assertEqual(self.seen, ["connector.game.echo"])

    async def test_async(self):
        self.assertEqual(await self.client.request("connector.game.later", 5), {"later": 5})

    async def test_function(self):
        self.assertEqual(await self.client.request("connector.single.fn", {}), "fn")

    async def test_errors(self):
        self.assertEqual(
            await self.client.request("connector.game.nothing", {}),
            {"code": 404, "message": "no handler for connector.game.nothing"},
        )
        self.assertEqual(
            await self.client.request("connector.game.boom", {}),
            {"code": 500, "message": "internal server error"},
        )
        self.flushLoggedErrors(RuntimeError)
        self.assertEqual(await self.client.request("connector.game.forbidden", {}), {"code": 403, "message": "not yours"})
        self.assertEqual(await self.client.request("connector.game.echo", {"refuse": True}), {"code": 403, "message": "no"})
        self.assertEqual(await self.client.request("connector.game.echo", 1), 1)

    async def test_bindPushKick(self):
        self.assertEqual(await self.client.request("connector.game.login", {"uid": "u1"}), {"uid": "u1"})
        self.assertEqual(len(self.app.sessions.get_by_uid("u1")), 1)
        pushes = []
        self.client.on("onPush", pushes.append)
        await self.client.request("connector.game.pushme", {"n": 7})
        self.assertEqual(pushes, [{"n": 7}])
        await self.client.request("connector.game.kickme", {})
        reason = await self.client.closed
        self.assertEqual(reason, "bye")
        self.assertEqual(self.app.sessions.get_by_uid("u1"), [])


class TCPServerTests(ServerTests):
    transport = "tcp"
