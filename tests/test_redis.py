"""
L{gamenet.redis}: the factory every Redis connection of a server is made by,
and L{RedisClient}, through which every call goes.
"""

from __future__ import annotations

import attrs
from twisted.internet import reactor
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from gamenet import redis
from gamenet.redis import RedisClient, RedisUnavailable
from gamenet.testing import RedisServer, cluster_config


class FactoryTests(SynchronousTestCase):
    """
    L{redis.factory} keeps a pool reconnecting when Redis goes away in the
    middle of a connection's set-up.
    """

    def connected(self, dbid: int) -> tuple[object, object, StringTransport]:
        reactor = MemoryReactorClock()
        made = redis.factory(cluster_config(), reactor, dbid=dbid)
        # Its retries are timed by the global reactor: stopped, none is left for later tests.
        self.addCleanup(made.disconnect)
        host, port, client, *_ = reactor.tcpClients[0]
        self.assertEqual((host, port), ("127.0.0.1", 6379))
        protocol = client.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return made, protocol, transport

    def test_lostDuringSelect(self):
        """
        A connection lost while its C{SELECT} is in flight leaves the pool
        trying, and nothing is left failed for the garbage collector to log.
        """
        made, protocol, transport = self.connected(dbid=2)
        self.assertIn(b"SELECT", transport.value())
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertFalse(made.stopped)
        self.assertTrue(all(slot.reconnect for slot in made.slots))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_refusedSelect(self):
        """
        A C{SELECT} Redis refuses on a live connection still stops the pool:
        retrying would be refused again.
        """
        made, protocol, transport = self.connected(dbid=99)
        protocol.dataReceived(b"-ERR DB index is out of range\r\n")
        self.assertTrue(made.stopped)


class ClientTests(SynchronousTestCase):
    """
    L{RedisClient} connects on its first call, bounds every call by
    C{storage_timeout}, and says why its last connection attempt failed.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.client = self.make()

    def make(self, **options):
        cluster = attrs.evolve(cluster_config(), storage_timeout=2.0, **options)
        client = RedisClient(cluster, self.reactor, "storage", reactor=self.reactor)
        self.addCleanup(client.close)
        return client

    def failure(self, d):
        return str(self.failureResultOf(d, RedisUnavailable).value)

    def test_lazyAndBounded(self):
        """
        Nothing connects before the first call; the pool is made once; a call
        Redis does not answer fails after C{storage_timeout}, not before,
        naming the client and what the call did.
        """
        self.assertEqual(self.reactor.tcpClients, [])
        first = self.client.call("get", "a", what="query")
        second = self.client.call("get", "b")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.reactor.advance(1.9)
        self.assertNoResult(first)
        self.reactor.advance(0.1)
        self.assertEqual(self.failure(first), "storage query: no answer from redis within 2s")
        self.assertEqual(self.failure(second), "storage get: no answer from redis within 2s")

    def test_refusedConnection(self):
        """
        A call failing while the connection is refused says so.
        """
        d = self.client.call("get", "a", what="query")
        self.reactor.tcpClients[0][2].clientConnectionFailed(None, Failure(ConnectionRefusedError()))
        self.reactor.advance(2)
        self.assertEqual(self.failure(d), "storage query: no answer from redis within 2s (the last connection "
                                          "attempt: could not connect: Connection was refused by other side.)")

    def test_refusedPassword(self):
        """
        A password Redis refuses: the call waiting fails within the timeout,
        later ones at once (the pool stops), both with Redis's refusal.
        """
        client = self.make(redis_password="wrong")
        d = client.call("set", "a", "1", what="write")
        protocol = self.reactor.tcpClients[0][2].buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        self.assertIn(b"AUTH", transport.value())
        protocol.dataReceived(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")
        self.reactor.advance(2)
        refusal = " (the last connection attempt: could not auth: WRONGPASS invalid username-password pair or " \
                  "user is disabled.)"
        self.assertEqual(self.failure(d), "storage write: no answer from redis within 2s" + refusal)
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.failure(client.call("get", "a", what="query")), "storage query: Not connected" + refusal)

    def test_closed(self):
        """
        Closed with a reason, calls fail at once saying it; closed without,
        the next call connects again.
        """
        self.client.call("get", "a").addErrback(lambda _: None)
        self.successResultOf(self.client.close("the service is closed"))
        self.assertEqual(self.failure(self.client.call("get", "a", what="query")),
                         "storage query: the service is closed")
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.client.close()
        self.client.call("get", "a").addErrback(lambda _: None)
        self.assertEqual(len(self.reactor.tcpClients), 2)


class ServerTests(TestCase):
    """
    L{RedisClient} against a private C{redis-server}.
    """

    PASSWORD = "s3cret pass"

    def start(self, *arguments):
        self.redis = RedisServer(arguments=arguments)
        self.redis.start()
        self.addCleanup(self.redis.stop)

    def make(self, **options):
        cluster = attrs.evolve(cluster_config(), redis_port=self.redis.port, storage_timeout=0.5)
        client = RedisClient(attrs.evolve(cluster, **options.pop("config", {})), reactor, "test", **options)
        self.addCleanup(client.close)
        return client

    async def test_answers(self):
        """
        Answers come back as Redis gives them, each reported to the observer
        as C{None}. An error Redis answers fails the call as itself, or, with
        C{every_failure}, as L{RedisUnavailable} saying it, reported too.
        """
        self.start()
        seen = []
        client = self.make(observer=seen.append)
        self.assertEqual(await client.call("set", "k", "v"), "OK")
        self.assertEqual(await client.call("get", "k", what="query"), "v")
        self.assertEqual(seen, [None, None])
        refuse = ("eval", "return redis.error_reply('OOM command not allowed')", [], [])
        with self.assertRaises(Exception) as caught:
            await client.call(*refuse)
        self.assertNotIsInstance(caught.exception, RedisUnavailable)
        strict = self.make(every_failure=True, observer=seen.append)
        with self.assertRaises(RedisUnavailable) as caught:
            await strict.call(*refuse, what="write")
        self.assertEqual(str(caught.exception), "test write: OOM command not allowed")
        self.assertEqual(seen[-1], "test write: OOM command not allowed")

    async def test_wrongPassword(self):
        """
        With a password Redis refuses, or none when it asks for one, calls
        fail with L{RedisUnavailable} saying Redis's refusal, not only that
        it did not answer.
        """
        self.start("--requirepass", self.PASSWORD)
        for password, refusal in (("wrong", "could not auth: WRONGPASS"), ("", "could not set dbid=0: NOAUTH")):
            client = self.make(config={"redis_password": password})
            for _ in range(2):
                with self.assertRaises(RedisUnavailable) as caught:
                    await client.call("get", "k", what="query")
                self.assertIn(f"(the last connection attempt: {refusal}", str(caught.exception))
        right = self.make(config={"redis_password": self.PASSWORD})
        self.assertIsNone(await right.call("get", "k"))
