"""
How links write: L{write_now} (straight to the socket when Twisted holds
nothing unsent) and L{gathered} (the writes of one node-link batch, one per
link).
"""

from __future__ import annotations

import socket

from twisted.internet import tcp
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from gamenet.connector.tcp import GatheredWrites, gathered, write_now
from gamenet.plugins import discover
from gamenet.testing import MemoryCluster, backend, cluster_config, frontend

from .test_connection import CountingTransport


def received(sock: socket.socket) -> bytes:
    """
    Everything the socket has to read now.
    """
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


class WriteNowTests(SynchronousTestCase):
    """
    L{write_now} on a plain TCP transport over a real socket pair.
    """

    def setUp(self) -> None:
        ours, self.peer = socket.socketpair()
        ours.setblocking(False)
        self.peer.setblocking(False)
        self.addCleanup(self.peer.close)
        self.addCleanup(ours.close)
        self.reactor = MemoryReactor()
        self.transport = tcp.Server(ours, Protocol(), ("127.0.0.1", 1), None, 1, self.reactor)

    def test_straight(self) -> None:
        """
        With nothing buffered the bytes are on the socket at once, and the
        transport is not registered for writing.
        """
        write_now(self.transport, b"hello")
        self.assertEqual(received(self.peer), b"hello")
        self.assertEqual(self.reactor.getWriters(), [])

    def test_behindBuffered(self) -> None:
        """
        Behind bytes Twisted holds, they wait in its buffer, in order.
        """
        self.transport.write(b"first ")
        write_now(self.transport, b"second")
        self.assertEqual(received(self.peer), b"")
        self.transport.doWrite()
        self.assertEqual(received(self.peer), b"first second")

    def test_partial(self) -> None:
        """
        What the socket does not take goes to Twisted's buffer, and follows
        in order once the peer reads.
        """
        data = bytes(range(256)) * 8192  # 2 MiB, more than a socket pair buffers
        write_now(self.transport, data)
        self.assertEqual(self.reactor.getWriters(), [self.transport])
        got = received(self.peer)
        self.assertLess(len(got), len(data))
        while self.reactor.getWriters():
            self.transport.doWrite()
            got += received(self.peer)
        self.assertEqual(got, data)

    def test_error(self) -> None:
        """
        A socket that fails takes nothing: the bytes go to Twisted's buffer,
        whose next write meets the error and loses the connection as usual.
        """
        self.peer.close()
        write_now(self.transport, b"lost")
        self.assertEqual(self.transport._tempDataBuffer, [b"lost"])
        self.assertNotEqual(self.transport.doWrite(), None)

    def test_closing(self) -> None:
        """
        A transport closing writes through Twisted, which sends what it
        holds before it closes.
        """
        self.transport.loseConnection()
        write_now(self.transport, b"last")
        self.assertEqual(self.transport._tempDataBuffer, [b"last"])

    def test_otherTransport(self) -> None:
        """
        Any other transport (in memory, TLS) is written with C{write}.
        """
        transport = StringTransport()
        write_now(transport, b"hello")
        self.assertEqual(transport.value(), b"hello")


class Link(GatheredWrites):
    def __init__(self) -> None:
        self.transport = CountingTransport()


class GatheredTests(SynchronousTestCase):
    """
    L{gathered} holds what links write while it runs, and writes it once per link.
    """

    def test_oneWritePerLink(self) -> None:
        """
        Two links written several times during a batch are each written once,
        at its end, in order; nothing before.
        """
        a, b = Link(), Link()

        def batch() -> str:
            a._write(b"1")
            b._write(b"x")
            a._write(b"2")
            self.assertEqual((a.transport.writes, b.transport.writes), ([], []))
            return "done"

        self.assertEqual(gathered(batch), "done")
        self.assertEqual((a.transport.writes, b.transport.writes), ([b"12"], [b"x"]))
        a._write(b"3")
        self.assertEqual(a.transport.writes, [b"12", b"3"])

    def test_nested(self) -> None:
        """
        A batch inside a batch leaves the writing to the outer one.
        """
        a = Link()

        def inner() -> None:
            a._write(b"2")

        def outer() -> None:
            a._write(b"1")
            gathered(inner)
            self.assertEqual(a.transport.writes, [])

        gathered(outer)
        self.assertEqual(a.transport.writes, [b"12"])

    def test_error(self) -> None:
        """
        What was held is written even when the batch raises.
        """
        a = Link()

        def batch() -> None:
            a._write(b"1")
            raise ValueError("boom")

        self.assertRaises(ValueError, gathered, batch)
        self.assertEqual(a.transport.writes, [b"1"])
        a._write(b"2")
        self.assertEqual(a.transport.writes, [b"1", b"2"])

    def test_readWhileHeld(self) -> None:
        """
        A link's own read handled while its writes are held adds to them.
        """
        a = Link()

        def batch() -> None:
            a._write(b"1")
            a._gather(lambda data: a._write(data), b"2")
            self.assertEqual(a.transport.writes, [])

        gathered(batch)
        self.assertEqual(a.transport.writes, [b"12"])

    def test_flush(self) -> None:
        """
        A close during a batch (which flushes first) sends what was held so
        far at once, the rest at the end.
        """
        a = Link()

        def batch() -> None:
            a._write(b"1")
            a._flush()
            a._write(b"2")

        gathered(batch)
        self.assertEqual(a.transport.writes, [b"1", b"2"])


class BatchTests(SynchronousTestCase):
    """
    On a connector, the pushes and answers of one node-link batch leave each
    client's connection in one write.
    """

    def test_chat(self) -> None:
        """
        Two chat messages read together are forwarded in one batch; their
        pushes reach each member of the room in one write, and their
        answers the sender in one write.
        """
        cluster = MemoryCluster(cluster_config(frontend("connector-1", "connector", 3050), backend("chat-1", "chat"),
                                               extra_routes=["onChat"]), discover(["examples.chat.plugins"]))
        cluster.start()
        self.addCleanup(cluster.stop)
        clients = []
        for name in ("alice", "bob"):
            client = cluster.client("connector-1")
            client.request("connector.entryHandler.enter", {"username": name, "rid": "lobby"})
            cluster.flush()
            clients.append(client)
        writes: dict[str, list[bytes]] = {}
        for connection in cluster.apps["connector-1"].frontend.connections:
            transport = connection.link.transport
            log = writes.setdefault(connection.session.uid, [])
            transport.write = lambda data, write=transport.write, log=log: log.append(data) or write(data)
        pushes: list[object] = []
        clients[1].on("onChat", pushes.append)
        answers = [clients[0].request("chat.chatHandler.send", {"content": text, "target": "*"})
                   for text in ("one", "two")]
        cluster.flush()
        for d in answers:
            self.assertEqual(self.successResultOf(d), {})
        self.assertEqual([push["msg"] for push in pushes], ["one", "two"])  # type: ignore[index]
        # bob: both pushes at once; alice: both pushes at once, both answers at once.
        self.assertEqual(len(writes["bob*lobby"]), 1)
        self.assertEqual(len(writes["alice*lobby"]), 2)
