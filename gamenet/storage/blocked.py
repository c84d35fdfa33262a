"""
The cluster's block list, kept across restarts: the client addresses and
networks every frontend refuses (see L{gamenet.connector.blocklist}).

With static discovery it is a JSON file next to the cluster file
(C{etc/cluster.ini} keeps it in C{etc/cluster.blocked.json}); with
C{discovery = redis}, the Redis set C{gamenet:<cluster name>:blocked}, so
that every machine's frontends read the same list. Frontends load it when
they start, before they accept; the master writes it on every change and
pushes the new list to every frontend (C{set_blocked}).
"""

from __future__ import annotations

import json
import os
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, fail, succeed

from .. import redis
from ..config import ClusterConfig


class BlockStore(Protocol):
    """
    Where a cluster's block list is kept.
    """

    def load(self) -> Deferred[list[str]]:
        """
        @return: a Deferred firing with the entries, sorted (empty when
            nothing is stored); it fails with C{ValueError} when what is
            stored is not a list of strings, C{OSError} or
            L{gamenet.redis.RedisUnavailable} when it cannot be read.
        """

    def save(self, networks: list[str]) -> Deferred[None]:
        """
        Replace the stored list with C{networks}, at once for every reader.
        """

    def close(self) -> Deferred[None]:
        """
        Let go of any connection.
        """


def blocked_path(cluster_path: str) -> str:
    """
    The block list file of a cluster file: C{etc/cluster.ini} ->
    C{etc/cluster.blocked.json}.
    """
    return os.path.splitext(cluster_path)[0] + ".blocked.json"


@attrs.define
class FileBlockStore:
    """
    The block list as a JSON list of strings in a file.

    @ivar path: the file; none there means an empty list.
    """

    path: str

    def load(self) -> Deferred[list[str]]:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return succeed([])
        except OSError as e:
            return fail(e)
        try:
            entries = json.loads(text)
        except ValueError:
            entries = None
        if not isinstance(entries, list) or not all(isinstance(entry, str) for entry in entries):
            return fail(ValueError(f"{self.path} does not hold a JSON list of addresses and networks"))
        return succeed(sorted(entries))

    def save(self, networks: list[str]) -> Deferred[None]:
        # Written beside, then renamed over: a reader sees the old list or the new one.
        partial = self.path + ".new"
        try:
            with open(partial, "w", encoding="utf-8") as f:
                json.dump(sorted(networks), f, indent=1)
                f.write("\n")
            os.replace(partial, self.path)
        except OSError as e:
            return fail(e)
        return succeed(None)

    def close(self) -> Deferred[None]:
        return succeed(None)


@attrs.define
class RedisBlockStore:
    """
    The block list as a Redis set, every call bounded by the cluster's
    C{storage_timeout} (failing with L{gamenet.redis.RedisUnavailable}).

    @ivar redis: its Redis client (one connection, made on the first call).
    """

    cluster: ClusterConfig
    clock: Any
    redis: redis.RedisClient = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.redis = redis.RedisClient(self.cluster, self.clock, "block list")

    @property
    def key(self) -> str:
        """
        C{gamenet:<cluster name>:blocked}.
        """
        return redis.key(self.cluster, "blocked")

    def load(self) -> Deferred[list[str]]:
        return self.redis.call("smembers", self.key, what="load").addCallback(
            lambda members: sorted(m.decode("utf-8") if isinstance(m, bytes) else str(m) for m in members or ())
        )

    def save(self, networks: list[str]) -> Deferred[None]:
        if not networks:
            return self.redis.call("delete", self.key, what="save").addCallback(lambda _: None)
        # Filled beside, then renamed over the set: readers never see it half made.
        partial = self.key + ":new"
        d = self.redis.call("delete", partial, what="save")
        d.addCallback(lambda _: self.redis.call("sadd", partial, sorted(networks), what="save"))
        d.addCallback(lambda _: self.redis.call("rename", partial, self.key, what="save"))
        return d.addCallback(lambda _: None)

    def close(self) -> Deferred[None]:
        return self.redis.close()


def block_store(cluster: ClusterConfig, clock: Any) -> BlockStore:
    """
    The block list store of C{cluster}: Redis with C{discovery = redis},
    else the file next to the cluster file.
    """
    if cluster.discovery == "redis":
        return RedisBlockStore(cluster, clock)
    return FileBlockStore(blocked_path(cluster.path))
