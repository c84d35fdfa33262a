"""
mqant's gate options in gamenet: separate TCP and WebSocket listeners
(C{tcp_port}, C{ws_port}) beside the client port, the send queue bounded in
messages (C{max_outbound_messages}) as well as bytes, and per-connection
counts of messages received and sent and the connection time, on the session.
"""

from __future__ import annotations

import os

import attrs
from twisted.internet import reactor
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet import Handler, handler
from gamenet.app import Application
from gamenet.client import Client, ClientError
from gamenet.connector import ListenError
from gamenet.protocol import message
from gamenet.testing import MemoryCluster, cluster_config, frontend, free_ports, start_server

from .test_config import ConfigTestCase
from .test_connection import ConnectionTestsMixin, CountingTransport, TCPLinkMixin, data
from .test_limits import LimitsBase
from .test_tls import write_certificate

GATE = """
[cluster]
name = gate
secret = s

[server:connector-1]
type = connector
host = 127.0.0.1
node_port = 4150
frontend = true
client_port = 3150
"""


class ConfigTests(ConfigTestCase):
    """
    C{tcp_port}, C{ws_port} and C{max_outbound_messages} in the cluster file.
    """

    def test_ports(self) -> None:
        """
        A frontend's C{tcp_port} and C{ws_port} are read; both are 0 when absent.
        """
        cluster = self.load(GATE + "tcp_port = 3151\nws_port = 3152\n")
        server = cluster.server("connector-1")
        self.assertEqual((server.client_port, server.tcp_port, server.ws_port), (3150, 3151, 3152))
        self.assertEqual(self.load(GATE).server("connector-1").tcp_port, 0)

    def test_badPort(self) -> None:
        """
        A C{ws_port} that is not a port is one line naming the key.
        """
        self.assertProblem(GATE + "ws_port = web\n", "[server:connector-1] ws_port", "not a port number: 'web'")

    def test_backend(self) -> None:
        """
        Only frontends take C{tcp_port} and C{ws_port}.
        """
        text = GATE + "\n[server:chat-1]\ntype = chat\nhost = 127.0.0.1\nnode_port = 4160\ntcp_port = 3160\n"
        self.assertProblem(text, "[server:chat-1] tcp_port", "only frontends take this key")

    def test_clash(self) -> None:
        """
        A C{tcp_port} that another port of the host has is reported.
        """
        self.assertProblem(GATE + "tcp_port = 3150\n", "[server:connector-1] tcp_port",
                           "port 3150 is also [server:connector-1] client_port")

    def test_messages(self) -> None:
        """
        C{max_outbound_messages} is on by default (1024) and may be set in
        C{[frontend]} or a server's section; it is a whole number from 1.
        """
        self.assertEqual(self.load(GATE).server("connector-1").options.max_outbound_messages, 1024)
        cluster = self.load(GATE.replace("[server:", "[frontend]\nmax_outbound_messages = 50\n\n[server:", 1))
        self.assertEqual(cluster.server("connector-1").options.max_outbound_messages, 50)
        self.assertProblem(GATE + "max_outbound_messages = 0\n", "[server:connector-1] max_outbound_messages",
                           "must be at least 1, not 0")


class Echo(Handler):
    def echo(self, msg, session):
        return {"msg": msg, "transport": session.transport}


class ListenerTests(TestCase):
    """
    The two one-transport ports, over real sockets.
    """

    async def start(self, **ports: int):
        client_port, = free_ports(1)
        server = frontend("connector-1", "connector", client_port)
        cluster = cluster_config(attrs.evolve(server, **ports))
        app = await start_server(cluster, "connector-1", [handler(Echo, "connector")])
        self.addCleanup(app.stopService)
        return app

    async def client(self, port: int, transport: str) -> Client:
        client = await Client.connect(reactor, "127.0.0.1", port, transport)
        self.addCleanup(client.close)
        return client

    async def test_twoPorts(self) -> None:
        """
        A TCP client on C{tcp_port} and a WebSocket client on C{ws_port} are
        served by the same frontend as the client port's; each session
        counts its messages and knows when it connected.
        """
        tcp_port, ws_port = free_ports(2)
        started = reactor.seconds()
        app = await self.start(tcp_port=tcp_port, ws_port=ws_port)
        tcp = await self.client(tcp_port, "tcp")
        ws = await self.client(ws_port, "websocket")
        self.assertEqual(await tcp.request("connector.echo.echo", {"n": 1}), {"msg": {"n": 1}, "transport": "tcp"})
        self.assertEqual(await ws.request("connector.echo.echo", {"n": 2}),
                         {"msg": {"n": 2}, "transport": "websocket"})
        hybrid = await self.client(app.server.client_port, "tcp")
        self.assertEqual((await hybrid.request("connector.echo.echo", 3))["msg"], 3)
        self.assertEqual(len(app.sessions), 3)
        await tcp.request("connector.echo.echo", 4)
        counts = sorted((session.transport, session.messages_received, session.messages_sent)
                        for session in app.sessions)
        self.assertEqual(counts, [("tcp", 1, 1), ("tcp", 2, 2), ("websocket", 1, 1)])
        self.assertTrue(all(started <= session.connected_at <= reactor.seconds() for session in app.sessions))

    async def test_tls(self) -> None:
        """
        With C{tls_cert} and C{tls_key} (mqant's C{TLS}, C{CertFile} and
        C{KeyFile}), the two ports speak TLS too; a plain client gets no answer.
        """
        directory = self.mktemp()
        os.makedirs(directory)
        cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        write_certificate(cert, key)
        tcp_port, ws_port = free_ports(2)
        client_port, = free_ports(1)
        server = attrs.evolve(frontend("connector-1", "connector", client_port, tls_cert=cert, tls_key=key),
                              tcp_port=tcp_port, ws_port=ws_port)
        app = await start_server(cluster_config(server), "connector-1", [handler(Echo, "connector")])
        self.addCleanup(app.stopService)
        for port, transport in ((tcp_port, "tcp"), (ws_port, "websocket")):
            client = await Client.connect(reactor, "127.0.0.1", port, transport, tls=True, timeout=5)
            self.addCleanup(client.close)
            self.assertEqual((await client.request("connector.echo.echo", port))["transport"], f"{transport}+tls")
            with self.assertRaises(ClientError):
                await Client.connect(reactor, "127.0.0.1", port, transport, timeout=2)

    async def test_oneTransportEach(self) -> None:
        """
        Each port speaks its one transport: a WebSocket client on the
        C{tcp_port} gets no handshake answer.
        """
        tcp_port, = free_ports(1)
        await self.start(tcp_port=tcp_port)
        with self.assertRaises(ClientError):
            await Client.connect(reactor, "127.0.0.1", tcp_port, "websocket", timeout=2)

    async def test_stopClosesAll(self) -> None:
        """
        Stopping the frontend closes the extra ports too.
        """
        tcp_port, ws_port = free_ports(2)
        app = await self.start(tcp_port=tcp_port, ws_port=ws_port)
        listener = app.getServiceNamed("clients")
        self.assertEqual(sorted(listener.extra_ports), ["tcp", "websocket"])
        await app.stopService()
        self.assertEqual(listener.extra_ports, {})
        with self.assertRaises(ConnectionRefusedError):
            await Client.connect(reactor, "127.0.0.1", tcp_port, "tcp", timeout=2)

    async def test_portInUse(self) -> None:
        """
        A C{ws_port} in use stops the start with a L{ListenError} naming it,
        and the ports opened before it are closed again.
        """
        taken = await self.start()
        client_port, tcp_port = free_ports(2)
        server = attrs.evolve(frontend("connector-1", "connector", client_port), tcp_port=tcp_port,
                              ws_port=taken.server.client_port)
        app = Application(cluster_config(server), "connector-1", reactor=reactor)
        self.addCleanup(app.node.stopService)
        with self.assertRaises(ListenError) as caught:
            app.privilegedStartService()
        self.assertIn(f"[server:connector-1] ws_port: cannot listen for websocket clients on 127.0.0.1:{taken.server.client_port}",
                      str(caught.exception))
        listener = app.getServiceNamed("clients")
        self.assertEqual((listener.port, listener.extra_ports), (None, {}))
        await deferLater(reactor, 0.01, lambda: None)
        with self.assertRaises(ConnectionRefusedError):
            await Client.connect(reactor, "127.0.0.1", tcp_port, "tcp", timeout=2)


class MessageQueueTests(TCPLinkMixin, SynchronousTestCase):
    """
    The send queue bounded in messages: C{max_outbound_messages}.
    """

    options = {"max_outbound_messages": 3}
    transport_class = CountingTransport

    def test_overflowInMessages(self) -> None:
        """
        A fourth message queued while the client is not reading, far under
        the byte limit, disconnects it as a slow consumer; three do not.
        """
        session = self.open()
        self.connection.pauseProducing()
        for n in range(3):
            self.assertTrue(session.send("onPush", n))
        self.assertFalse(self.transport.disconnected)
        self.assertFalse(session.send("onPush", 3))
        self.assertTrue(self.transport.disconnected)
        self.assertEqual(self.frontend.metrics["slow_consumers"], 1)
        self.link.connectionLost(None)
        self.assertEqual(session.close_reason, "slow consumer")

    def test_drainedInTime(self) -> None:
        """
        A queue that drains before the limit leaves room for as many again.
        """
        session = self.open()
        for _ in range(3):
            self.connection.pauseProducing()
            for n in range(3):
                self.assertTrue(session.send("onPush", n))
            self.connection.resumeProducing()
        self.assertFalse(self.transport.disconnected)


class MessageQueueSocketTests(LimitsBase, TestCase):
    """
    C{max_outbound_messages} over a real socket.
    """

    server_transport = "tcp"
    client_transport = "tcp"

    async def test_slowConsumer(self) -> None:
        """
        A client that stops reading while small messages are pushed to it is
        dropped as a slow consumer once more than C{max_outbound_messages}
        wait for it, though all of them together (64 MB) are under the byte
        bound; another client is served all along.
        """
        await self.serve(max_outbound_messages=16, max_outbound_queue=256 * 1024 * 1024)
        await self.flooded_until_slow(512, 64)


class CountTests(ConnectionTestsMixin, SynchronousTestCase):
    """
    Counts of messages received and sent, and the connection time, on the session.
    """

    def setUp(self) -> None:
        self.start = 1000.0
        super().setUp()

    def connect(self):
        self.clock.advance(self.start)
        return super().connect()

    def test_counts(self) -> None:
        """
        Requests and notifies count as received; answers and pushes as sent,
        the handshake, heartbeats and kicks not.
        """
        session = self.open()
        self.assertEqual((session.messages_received, session.messages_sent), (0, 0))
        self.feed(data(message.REQUEST, 1, "connector.game.echo", {"a": 1}),
                  data(message.NOTIFY, 0, "connector.game.note", {}))
        self.assertEqual((session.messages_received, session.messages_sent), (2, 1))
        session.send("onPush", {"p": 1})
        self.sessions.push_to([session], "onPush", {"p": 2})
        self.assertEqual(session.messages_sent, 3)
        self.feed(b"\x03\x00\x00\x00")  # a heartbeat, answered with one
        self.assertEqual((session.messages_received, session.messages_sent), (2, 3))

    def test_connectedAt(self) -> None:
        """
        The connection time is when the connection was made, not the handshake.
        """
        self.clock.advance(5)
        session = self.open()
        self.assertEqual(session.connected_at, self.start)

    def test_memoryCluster(self) -> None:
        """
        The counts are the session's on a whole frontend too.
        """
        cluster = MemoryCluster(cluster_config(frontend("connector-1", "connector")), [handler(Echo, "connector")])
        cluster.start()
        self.addCleanup(cluster.stop)
        client = cluster.client("connector-1")
        answers: list[object] = []
        for n in range(4):
            client.request("connector.echo.echo", n).addCallback(answers.append)
        cluster.flush()
        self.assertEqual(len(answers), 4)
        session, = cluster.apps["connector-1"].sessions
        self.assertEqual((session.messages_received, session.messages_sent), (4, 4))
