"""
L{gamenet.redis}: the factory every Redis connection of a server is made by.
"""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.internet.error import ConnectionLost

from gamenet import redis
from gamenet.testing import cluster_config


class FactoryTests(SynchronousTestCase):
    """
    L{redis.factory} keeps a pool reconnecting when Redis goes away in the
    middle of a connection's set-up.
    """

    def connected(self, dbid: int) -> tuple[object, object, StringTransport]:
        reactor = MemoryReactorClock()
        made = redis.factory(cluster_config(), reactor, dbid=dbid)
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
