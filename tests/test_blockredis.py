"""
The block list of a real cluster of processes with C{discovery = redis}:
the master (C{twistd -n gamenet}) keeps it in the cluster's Redis set, not
in a file beside the cluster file, and every frontend loads it from there,
still after the whole cluster restarts.
"""

from __future__ import annotations

import os

from gamenet.storage.blocked import blocked_path
from gamenet.testing import RedisServer

from . import test_operations


class RedisBlockTests(test_operations.BlockTests):
    """
    L{test_operations.BlockTests} with C{discovery = redis} and C{storage = redis}, against a
    private C{redis-server}.
    """

    async def setUp(self) -> None:
        self.redis = RedisServer()
        self.redis.start()
        self.addCleanup(self.redis.stop)
        await super().setUp()

    def cluster_extra(self) -> str:
        return (f"discovery = redis\nstorage = redis\nstorage_timeout = 5\n"
                f"redis_host = 127.0.0.1\nredis_port = {self.redis.port}\n")

    def stored(self) -> bytes:
        return self.redis.command("SMEMBERS", "gamenet:operations:blocked")

    async def test_block(self) -> None:
        """
        The list is in Redis and never in a file: blocking, a frontend
        restart, a whole cluster restart and unblocking behave as with a
        file, and no block file is ever written beside the cluster file.
        """
        await super().test_block()
        self.assertFalse(os.path.exists(blocked_path(self.master.config)))
        self.assertEqual(self.stored(), b"*0\r\n")

    async def test_storedInRedis(self) -> None:
        """
        C{block} writes the canonical entries to the cluster's Redis set and
        no file; C{unblock} removes them.
        """
        self.assertEqual(await self.succeeds("block", "127.0.0.2", "198.51.100.0/24"),
                         "127.0.0.2/32\n198.51.100.0/24\n")
        self.assertEqual(sorted(self.stored().split(b"\r\n")[2:-1:2]), [b"127.0.0.2/32", b"198.51.100.0/24"])
        for frontend in ("gate-1", "connector-1", "connector-2"):
            self.assertTrue(await self.accepted(frontend), frontend)
        self.assertFalse(os.path.exists(blocked_path(self.master.config)))
        await self.succeeds("unblock", "127.0.0.2", "198.51.100.0/24")
        self.assertEqual(self.stored(), b"*0\r\n")
