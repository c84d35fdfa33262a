"""
Tests for the block list: the pure L{Blocklist}, its stores
(L{gamenet.storage.blocked}: a file, or a real C{redis-server}), and
frontends refusing blocked peers at connect over real sockets.
"""

from __future__ import annotations

import json
import os

import attrs
from twisted.internet import reactor
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet import Handler, handler
from gamenet.client import Client
from gamenet.cluster.control import ControlRemote
from gamenet.connector.blocklist import Blocklist, parse_network
from gamenet.connector.listener import client_factory
from gamenet.errors import GamenetError
from gamenet.protocol import serializer
from gamenet.storage.blocked import FileBlockStore, RedisBlockStore, block_store, blocked_path
from gamenet.testing import (
    MemoryCluster, RedisServer, backend, client_port, cluster_config, free_ports, frontend, start_server,
)

from .test_tls import write_certificate


class BlocklistTests(SynchronousTestCase):
    """
    L{Blocklist} matches peer addresses against addresses and networks.
    """

    def test_empty(self):
        """
        An empty block list blocks nothing.
        """
        self.assertFalse(Blocklist().blocks("203.0.113.7"))
        self.assertEqual(len(Blocklist()), 0)

    def test_ipv4(self):
        """
        A plain IPv4 address is that address alone; a network is all of it.
        """
        blocklist = Blocklist(["203.0.113.7", "198.51.100.0/24"])
        self.assertTrue(blocklist.blocks("203.0.113.7"))
        self.assertFalse(blocklist.blocks("203.0.113.8"))
        self.assertTrue(blocklist.blocks("198.51.100.0"))
        self.assertTrue(blocklist.blocks("198.51.100.255"))
        self.assertFalse(blocklist.blocks("198.51.101.0"))

    def test_ipv6(self):
        """
        The same for IPv6, in any spelling of the address.
        """
        blocklist = Blocklist(["2001:db8::1", "2001:db8:1::/48"])
        self.assertTrue(blocklist.blocks("2001:0db8:0000::0001"))
        self.assertFalse(blocklist.blocks("2001:db8::2"))
        self.assertTrue(blocklist.blocks("2001:db8:1:ffff::9"))
        self.assertFalse(blocklist.blocks("2001:db8:2::1"))
        self.assertFalse(blocklist.blocks("203.0.113.7"))

    def test_ipv4Mapped(self):
        """
        An IPv4-mapped IPv6 peer (a dual-stack socket's IPv4 client) is
        matched as its IPv4 address.
        """
        blocklist = Blocklist(["203.0.113.0/24"])
        self.assertTrue(blocklist.blocks("::ffff:203.0.113.7"))
        self.assertFalse(blocklist.blocks("::ffff:198.51.100.7"))

    def test_scopedAddress(self):
        """
        A link-local peer with a zone (C{fe80::1%eth0}) is matched by its address.
        """
        self.assertTrue(Blocklist(["fe80::/64"]).blocks("fe80::1%eth0"))

    def test_notAnAddress(self):
        """
        A host that is not an IP address (a UNIX socket's, an empty one) is not blocked.
        """
        blocklist = Blocklist(["0.0.0.0/0", "::/0"])
        for host in ("", "localhost", "/tmp/socket"):
            self.assertFalse(blocklist.blocks(host), host)
        self.assertTrue(blocklist.blocks("192.0.2.1"))

    def test_canonical(self):
        """
        The entries come back canonical and sorted, IPv4 first, without duplicates.
        """
        blocklist = Blocklist(["2001:db8::1", " 10.0.0.0/8 ", "192.0.2.1", "192.0.2.1/32"])
        self.assertEqual(list(blocklist), ["10.0.0.0/8", "192.0.2.1/32", "2001:db8::1/128"])
        self.assertEqual(len(blocklist), 3)

    def test_badEntries(self):
        """
        An entry that is not an address or a network is a C{ValueError}
        whose message is a sentence naming it.
        """
        cases = {
            "nonsense": "'nonsense' is not an IPv4 or IPv6 address or network",
            "10.0.0.1/33": "'10.0.0.1/33' is not an IPv4 or IPv6 address or network",
            "300.1.1.1": "'300.1.1.1' is not an IPv4 or IPv6 address or network",
            "": "'' is not an IPv4 or IPv6 address or network",
            "10.0.0.5/24": "'10.0.0.5/24' has host bits set: the network is 10.0.0.0/24",
        }
        for entry, text in cases.items():
            with self.assertRaises(ValueError) as caught:
                Blocklist(["192.0.2.1", entry])
            self.assertIn(text, str(caught.exception))
        with self.assertRaises(ValueError) as caught:
            parse_network(7)
        self.assertIn("7 is not an address or a network", str(caught.exception))


class FrontendBlockTests(SynchronousTestCase):
    """
    L{Frontend.admit} refuses blocked peers; L{Frontend.set_blocked}
    replaces the list, or keeps it when an entry is bad.
    """

    def setUp(self):
        self.cluster = MemoryCluster(cluster_config(frontend("connector-1", "connector"), backend("chat-1", "chat")))
        self.cluster.start()
        self.addCleanup(self.cluster.stop)
        self.frontend = self.cluster.apps["connector-1"].frontend

    def test_admit(self):
        """
        A blocked peer is refused, logged with its address and counted;
        others are admitted.
        """
        self.frontend.set_blocked(["192.0.2.0/24", "2001:db8::/32"])
        with capturedLogs() as events:
            self.assertFalse(self.frontend.admit(IPv4Address("TCP", "192.0.2.9", 4000)))
            self.assertFalse(self.frontend.admit(IPv6Address("TCP", "2001:db8::5", 4000)))
        self.assertTrue(self.frontend.admit(IPv4Address("TCP", "198.51.100.1", 4000)))
        self.assertTrue(self.frontend.admit(None))
        self.assertEqual(self.frontend.metrics["connections_blocked"], 2)
        self.assertIn("192.0.2.9", [event.get("host") for event in events])

    def test_badListKept(self):
        """
        A bad entry raises C{ValueError} and leaves the list as it was.
        """
        self.frontend.set_blocked(["192.0.2.0/24"])
        self.assertRaises(ValueError, self.frontend.set_blocked, ["192.0.2.0/24", "nope"])
        self.assertEqual(list(self.frontend.blocklist), ["192.0.2.0/24"])

    def test_tlsFactory(self):
        """
        The TLS wrapper refuses what the transport's factory refuses.
        """
        cert, key = self.mktemp(), self.mktemp()
        write_certificate(cert, key)
        self.frontend.options = attrs.evolve(self.frontend.options, tls_cert=cert, tls_key=key)
        self.frontend.set_blocked(["192.0.2.9"])
        factory = client_factory(self.frontend)
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 4000)))
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "192.0.2.10", 4000)))

    def test_control(self):
        """
        The master's C{set_blocked} applies on a frontend, fails with code
        400 for a bad entry, and is ignored by a backend.
        """

        def call(server_id, networks):
            d = ControlRemote(self.cluster.apps[server_id]).call("set_blocked",
                                                                 serializer.dumps({"networks": networks}))
            self.cluster.flush()
            return d

        self.assertEqual(self.successResultOf(call("connector-1", ["192.0.2.1"])), b"null")
        self.assertEqual(list(self.frontend.blocklist), ["192.0.2.1/32"])
        error = self.failureResultOf(call("connector-1", ["192.0.2.1/99"]), GamenetError).value
        self.assertEqual(error.code, 400)
        self.assertIn("192.0.2.1/99", error.message)
        self.assertEqual(self.successResultOf(call("chat-1", ["192.0.2.1"])), b"null")


class FileStoreTests(SynchronousTestCase):
    """
    L{FileBlockStore}: a JSON list next to the cluster file.
    """

    def test_path(self):
        """
        The file is named after the cluster file.
        """
        self.assertEqual(blocked_path("/srv/game/etc/cluster.ini"), "/srv/game/etc/cluster.blocked.json")

    def test_chosen(self):
        """
        Static discovery keeps the list in the file; Redis discovery in Redis.
        """
        cluster = attrs.evolve(cluster_config(backend("chat-1", "chat")), path="/srv/etc/game.ini")
        self.assertEqual(block_store(cluster, Clock()), FileBlockStore("/srv/etc/game.blocked.json"))
        store = block_store(attrs.evolve(cluster, discovery="redis"), Clock())
        self.assertIsInstance(store, RedisBlockStore)
        self.assertEqual(store.key, "gamenet:test:blocked")

    def test_missing(self):
        """
        No file is an empty list.
        """
        self.assertEqual(self.successResultOf(FileBlockStore(self.mktemp()).load()), [])

    def test_roundTrip(self):
        """
        What is saved is loaded back, sorted; a save replaces the list.
        """
        store = FileBlockStore(self.mktemp())
        self.successResultOf(store.save(["2001:db8::/32", "192.0.2.1"]))
        self.assertEqual(self.successResultOf(store.load()), ["192.0.2.1", "2001:db8::/32"])
        self.successResultOf(store.save([]))
        self.assertEqual(self.successResultOf(store.load()), [])
        self.assertFalse(os.path.exists(store.path + ".new"))

    def test_corrupt(self):
        """
        A file that is not a JSON list of strings fails the load with a
        C{ValueError} naming the file.
        """
        path = self.mktemp()
        for text in ("{not json", '{"a": 1}', "[1, 2]"):
            with open(path, "w") as f:
                f.write(text)
            error = self.failureResultOf(FileBlockStore(path).load(), ValueError).value
            self.assertIn(f"{path} does not hold a JSON list", str(error))


class RedisStoreTests(TestCase):
    """
    L{RedisBlockStore} against a private C{redis-server}.
    """

    def setUp(self):
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.stop)
        self.cluster = attrs.evolve(cluster_config(backend("chat-1", "chat")), discovery="redis",
                                    redis_port=self.redis.port)
        self.store = RedisBlockStore(self.cluster, reactor)
        self.addCleanup(self.store.close)

    async def test_roundTrip(self):
        """
        The list is the set C{gamenet:<cluster>:blocked}; a save replaces it
        whole, an empty save removes it.
        """
        self.assertEqual(await self.store.load(), [])
        await self.store.save(["192.0.2.1", "2001:db8::/32"])
        self.assertEqual(await self.store.load(), ["192.0.2.1", "2001:db8::/32"])
        self.assertIn(b"192.0.2.1", self.redis.command("SMEMBERS", "gamenet:test:blocked"))
        await self.store.save(["198.51.100.0/24"])
        self.assertEqual(await self.store.load(), ["198.51.100.0/24"])
        await self.store.save([])
        self.assertEqual(await self.store.load(), [])
        self.assertEqual(self.redis.command("EXISTS", "gamenet:test:blocked"), b":0\r\n")


class Lobby(Handler):
    def hello(self, msg, session):
        return {"hello": True}


class _Watch(Protocol):
    def __init__(self):
        self.data = b""
        self.lost: Deferred[bytes] = Deferred()

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason=None):
        self.lost.callback(self.data)


class RefusalTests(TestCase):
    """
    Frontends of every transport close a blocked peer's connection at once,
    before any byte of the protocol (real sockets on 127.0.0.1).
    """

    async def start(self, transport, blocked=None):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        cluster = attrs.evolve(
            cluster_config(frontend("connector-1", "connector", transport=transport)),
            path=os.path.join(directory, "cluster.ini"),
        )
        if blocked is not None:
            with open(os.path.join(directory, "cluster.blocked.json"), "w") as f:
                json.dump(blocked, f)
        self.app = await start_server(cluster, "connector-1", [handler(Lobby, "connector")])
        self.addCleanup(self.app.stopService)
        return self.app

    async def assertRefused(self):
        protocol = _Watch()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", client_port(self.app)), protocol)
        # A refused socket is closed by the server at accept; a client that
        # sends nothing is otherwise kept until its handshake times out.
        data = await protocol.lost.addTimeout(5, reactor)
        self.assertEqual(data, b"")

    async def assertServed(self, transport):
        client = await Client.connect(reactor, "127.0.0.1", client_port(self.app),
                                      transport="websocket" if transport == "websocket" else "tcp", timeout=5)
        self.addCleanup(client.close)
        self.assertEqual(await client.request("connector.lobby.hello", {}).addTimeout(5, reactor), {"hello": True})

    async def check(self, transport):
        app = await self.start(transport)
        await self.assertServed(transport)
        with capturedLogs() as events:
            app.frontend.set_blocked(["127.0.0.0/8"])
            await self.assertRefused()
        self.assertEqual(app.frontend.metrics["connections_blocked"], 1)
        self.assertTrue(any(event.get("host") == "127.0.0.1" and event.get("log_level") == LogLevel.info
                            for event in events))
        app.frontend.set_blocked([])
        await self.assertServed(transport)

    async def test_tcp(self):
        """
        Over raw TCP: served, refused and counted once blocked, served again once unblocked.
        """
        await self.check("tcp")

    async def test_websocket(self):
        """
        Over WebSocket: served, refused and counted once blocked, served again once unblocked.
        """
        await self.check("websocket")

    async def test_hybrid(self):
        """
        Over the hybrid connector: served, refused and counted once blocked, served again once unblocked.
        """
        await self.check("hybrid")

    async def test_kicksConnected(self):
        """
        Blocking an address kicks its connected clients C{"address blocked"}.
        """
        app = await self.start("tcp")
        client = await Client.connect(reactor, "127.0.0.1", client_port(app), transport="tcp", timeout=5)
        app.frontend.set_blocked(["127.0.0.1"])
        self.assertEqual(await client.closed.addTimeout(5, reactor), "address blocked")

    async def test_loadedAtStart(self):
        """
        The list stored next to the cluster file is in force from the first connection.
        """
        app = await self.start("tcp", blocked=["127.0.0.1"])
        self.assertEqual(list(app.frontend.blocklist), ["127.0.0.1/32"])
        await self.assertRefused()

    async def test_loadedFromRedis(self):
        """
        With C{discovery = redis}, the list in the cluster's Redis set is in
        force from the first connection.
        """
        redis = RedisServer()
        redis.start()
        self.addCleanup(redis.stop)
        redis.command("SADD", "gamenet:test:blocked", "127.0.0.1", "2001:db8::/32")
        node_port, port = free_ports(2)
        cluster = attrs.evolve(
            cluster_config(frontend("connector-1", "connector", client_port=port, node_port=node_port,
                                    transport="tcp")),
            discovery="redis", redis_port=redis.port,
        )
        self.app = await start_server(cluster, "connector-1", [handler(Lobby, "connector")])
        self.addCleanup(self.app.stopService)
        # Connections wait in the port's backlog until the list is loaded.
        await self.assertRefused()
        self.assertEqual(list(self.app.frontend.blocklist), ["127.0.0.1/32", "2001:db8::/32"])

    async def test_badStoredList(self):
        """
        A stored list with a bad entry is logged and not used; clients are served.
        """
        with capturedLogs() as events:
            await self.start("tcp", blocked=["127.0.0.1", "bogus"])
        self.assertTrue(any("bogus" in str(event.get("error", "")) for event in events))
        await self.assertServed("tcp")
