"""
The cluster's Redis connection, through txredisapi, with every call bounded.

txredisapi with C{reconnect=True} queues commands while Redis is away and
never fails them, so every call here goes through L{bounded}, which fails it
with L{RedisUnavailable} after the cluster's C{storage_timeout}. Numbers are
left as the strings Redis returns (C{convertNumbers=False}).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, TimeoutError
from twisted.python.failure import Failure

from .config import ClusterConfig


class RedisUnavailable(Exception):
    """
    Redis did not answer within the timeout, or the connection is gone.
    """


def connect(cluster: ClusterConfig, poolsize: int = 4) -> Any:
    """
    A lazy, reconnecting connection pool to the cluster's Redis.
    """
    import txredisapi

    return txredisapi.lazyConnectionPool(
        host=cluster.redis_host,
        port=cluster.redis_port,
        dbid=cluster.redis_db,
        poolsize=poolsize,
        reconnect=True,
        password=cluster.redis_password or None,
        convertNumbers=False,
        connectTimeout=cluster.storage_timeout,
    )


def bounded(d: Deferred[Any], timeout: float, clock: Any, what: str = "redis call") -> Deferred[Any]:
    """
    C{d}, failing with L{RedisUnavailable} if it has not fired within C{timeout}.
    """

    def failed(failure: Failure) -> Failure:
        if failure.check(TimeoutError):
            raise RedisUnavailable(f"{what}: no answer from redis within {timeout:g}s")
        if failure.check(ConnectionError) or "onnection" in type(failure.value).__name__:
            raise RedisUnavailable(f"{what}: {failure.getErrorMessage()}")
        return failure

    return d.addTimeout(timeout, clock).addErrback(failed)


def key(cluster: ClusterConfig, *parts: str) -> str:
    """
    A key in the cluster's namespace: C{gamenet:<cluster name>:<parts...>}.
    """
    return ":".join(("gamenet", cluster.name, *parts))
