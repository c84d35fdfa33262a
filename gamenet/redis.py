"""
The cluster's Redis connection, through txredisapi, with every call bounded.

txredisapi with C{reconnect=True} queues commands while Redis is away and
never fails them, so every call here goes through L{bounded}, which fails it
with L{RedisUnavailable} after the cluster's C{storage_timeout}. Numbers are
left as the strings Redis returns (C{convertNumbers=False}).

Every connection is made by L{factory}: txredisapi stops a whole pool from
reconnecting when C{SELECT} or C{AUTH} fails, which it also does when Redis
goes away while they are in flight; a connection lost then is retried like
any other.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import endpoints
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, TimeoutError, succeed
from twisted.python.failure import Failure

from .config import ClusterConfig


class RedisUnavailable(Exception):
    """
    Redis did not answer within the timeout, or the connection is gone.
    """


def endpoint(reactor: Any, host: str, port: int, timeout: float) -> Any:
    """
    The client endpoint of C{host}:C{port}: an IPv4 or IPv6 address, or a
    host name.
    """
    if isIPAddress(host):
        return endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
    if isIPv6Address(host):
        return endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
    return endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)


def factory(cluster: ClusterConfig, reactor: Any, poolsize: int = 1, dbid: int | None = None,
            protocol: Any = None) -> Any:
    """
    A lazy, reconnecting txredisapi factory of C{poolsize} connections to the
    cluster's Redis, connecting now; its C{handler} takes commands.

    A connection lost while its C{AUTH} or C{SELECT} was in flight does not
    stop the pool (txredisapi's own factory stops every connection of it for
    good then, and leaves a failed Deferred nobody waits on); a refused
    C{AUTH} or C{SELECT} on a live connection still does.
    """
    import txredisapi

    class Factory(txredisapi.RedisFactory):  # type: ignore[misc]
        losing = 0

        def buildProtocol(self, addr: Any) -> Any:
            built = super().buildProtocol(addr)
            lost = built.connectionLost

            def connectionLost(reason: Any) -> Any:
                self.losing += 1
                try:
                    return lost(reason)
                finally:
                    self.losing -= 1

            built.connectionLost = connectionLost
            return built

        def stopTrying(self) -> Any:
            return succeed(None) if self.losing else super().stopTrying()

        def connectionError(self, why: str) -> None:
            if not self.losing:
                super().connectionError(why)

    made = Factory(f"{cluster.redis_host}:{cluster.redis_port}", dbid, poolsize, isLazy=True,
                   password=cluster.redis_password or None, convertNumbers=False)
    if protocol is not None:
        made.protocol = protocol
    # Nothing waits on a lazy factory's Deferred: a failure it reports is
    # already logged by txredisapi.
    made.deferred.addErrback(lambda _: None)
    made.startConnecting(endpoint(reactor, cluster.redis_host, cluster.redis_port, cluster.storage_timeout))
    return made


def connect(cluster: ClusterConfig, poolsize: int = 4, reactor: Any = None) -> Any:
    """
    A lazy, reconnecting connection pool to the cluster's Redis (see
    L{factory}).
    """
    if reactor is None:
        from twisted.internet import reactor
    return factory(cluster, reactor, poolsize, dbid=cluster.redis_db).handler


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
