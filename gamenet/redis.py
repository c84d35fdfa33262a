"""
The cluster's Redis connections, through txredisapi, with every call bounded.

txredisapi with C{reconnect=True} queues commands while Redis is away and
never fails them, so every call goes through L{RedisClient.call}, which fails
it with L{RedisUnavailable} after the cluster's C{storage_timeout}. Numbers
are left as the strings Redis returns (C{convertNumbers=False}). Tested in
C{tests/test_redis.py}.

Every connection is made by L{factory}: txredisapi stops a whole pool from
reconnecting when C{SELECT} or C{AUTH} fails, which it also does when Redis
goes away while they are in flight; a connection lost then is retried like
any other. The factory remembers why its last attempt to connect failed (a
refused connection, a refused C{AUTH} or C{SELECT}), so that a call failing
meanwhile says it.
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import endpoints
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .config import ClusterConfig

__all__ = ["RedisClient", "RedisUnavailable", "bounded", "endpoint", "factory", "key"]

log = Logger()


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


class _Noted:
    """
    An endpoint noting on C{factory.failure} why its last attempt failed.
    """

    def __init__(self, wrapped: Any, factory: Any) -> None:
        self.wrapped = wrapped
        self.factory = factory

    def connect(self, protocol_factory: Any) -> Deferred[Any]:
        def failed(failure: Failure) -> Failure:
            if not failure.check(CancelledError):
                self.factory.failure = f"could not connect: {failure.getErrorMessage()}"
            return failure

        return self.wrapped.connect(protocol_factory).addErrback(failed)


def factory(cluster: ClusterConfig, reactor: Any, poolsize: int = 1, dbid: int | None = None,
            protocol: Any = None, max_delay: float | None = None) -> Any:
    """
    A lazy, reconnecting txredisapi factory of C{poolsize} connections to the
    cluster's Redis, connecting now; its C{handler} takes commands.

    A connection lost while its C{AUTH} or C{SELECT} was in flight does not
    stop the pool (txredisapi's own factory stops every connection of it for
    good then, and leaves a failed Deferred nobody waits on); a refused
    C{AUTH} or C{SELECT} on a live connection still does.

    Its C{failure} is why the last attempt to connect failed (C{None} once a
    connection is up).

    @param max_delay: the cap of the reconnection backoff, when lower than
        txredisapi's (10 s); the first retry waits at most half of it.
    """
    import txredisapi

    class Factory(txredisapi.RedisFactory):  # type: ignore[misc]
        losing = 0
        failure: str | None = None

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

        def addConnection(self, conn: Any) -> None:
            if conn.connected:
                self.failure = None
            super().addConnection(conn)

        def stopTrying(self) -> Any:
            return succeed(None) if self.losing else super().stopTrying()

        def connectionError(self, why: str) -> None:
            if not self.losing:
                self.failure = why.removeprefix("Redis error: ")
                super().connectionError(why)

    made = Factory(f"{cluster.redis_host}:{cluster.redis_port}", dbid, poolsize, isLazy=True,
                   password=cluster.redis_password or None, convertNumbers=False)
    if protocol is not None:
        made.protocol = protocol
    if max_delay is not None:
        made.maxDelay = min(made.maxDelay, max_delay)
        made.initialDelay = min(made.initialDelay, max_delay / 2)
    # Nothing waits on a lazy factory's Deferred: a failure it reports is
    # already logged by txredisapi.
    made.deferred.addErrback(lambda _: None)
    made.startConnecting(_Noted(endpoint(reactor, cluster.redis_host, cluster.redis_port, cluster.storage_timeout),
                                made))
    return made


def bounded(d: Deferred[Any], timeout: float, clock: Any, what: str = "redis call",
            cause: Callable[[], str | None] = lambda: None) -> Deferred[Any]:
    """
    C{d}, failing with L{RedisUnavailable} if it has not fired within
    C{timeout}, or fails for want of a connection.

    @param cause: called when C{d} fails so, for why the connection is
        missing (C{None} when unknown); the error says it.
    """

    def failed(failure: Failure) -> Failure:
        if failure.check(TimeoutError):
            reason = f"no answer from redis within {timeout:g}s"
        elif failure.check(ConnectionError) or "onnection" in type(failure.value).__name__:
            reason = failure.getErrorMessage()
        else:
            return failure
        why = cause()
        raise RedisUnavailable(f"{what}: {reason}" + (f" (the last connection attempt: {why})" if why else ""))

    return d.addTimeout(timeout, clock).addErrback(failed)


class RedisClient:
    """
    One lazy connection pool to the cluster's Redis, every call bounded by
    C{storage_timeout} and failing with L{RedisUnavailable} when Redis does
    not answer, the connection is gone, or the client is closed.

    Commands issued on a pool of one connection reach Redis in the order
    they were issued.

    @ivar name: what every error it raises starts with (C{"storage"},
        C{"discovery"}, ...).
    @ivar closed: why calls fail at once (given to L{close}), else C{None}.
    """

    def __init__(self, cluster: ClusterConfig, clock: Any, name: str, *, poolsize: int = 1,
                 reactor: Any = None, select: bool = True, protocol: Any = None, max_delay: float | None = None,
                 every_failure: bool = False, observer: Callable[[str | None], object] | None = None,
                 closed: str | None = None) -> None:
        """
        @param clock: where the timeouts are scheduled.
        @param reactor: where the connections are made (the global reactor
            by default).
        @param select: whether connections C{SELECT} C{redis_db} (a pub/sub
            subscriber's need not: channels are not per database).
        @param protocol: the txredisapi protocol of the connections, when
            not the command protocol.
        @param max_delay: see L{factory}.
        @param every_failure: whether every failure of a call, an error
            Redis answers included (C{OOM}, C{READONLY}...), is turned into
            L{RedisUnavailable}; by default only missing answers are.
        @param observer: called after each call made (not one refused by a
            closed client), with C{None} when Redis answered, else with the
            text of its error.
        """
        self.cluster = cluster
        self.clock = clock
        self.name = name
        self.poolsize = poolsize
        self.reactor = reactor
        self.select = select
        self.protocol = protocol
        self.max_delay = max_delay
        self.every_failure = every_failure
        self.observer = observer
        self.closed = closed
        self.factory: Any = None
        self._closing: Deferred[None] = succeed(None)

    def __repr__(self) -> str:
        return f"<RedisClient {self.name} {self.cluster.redis_host}:{self.cluster.redis_port}>"

    @property
    def timeout(self) -> float:
        """
        The bound of every call: the cluster's C{storage_timeout}.
        """
        return self.cluster.storage_timeout

    def connect(self) -> Any:
        """
        Make the pool now unless it is made (also after L{close}).

        @return: the txredisapi factory of the pool.
        """
        self.closed = None
        if self.factory is None:
            reactor = self.reactor
            if reactor is None:
                from twisted.internet import reactor
            self.factory = factory(self.cluster, reactor, self.poolsize,
                                   self.cluster.redis_db if self.select else None, self.protocol, self.max_delay)
        return self.factory

    def call(self, command: str, *args: Any, what: str | None = None, **kwargs: Any) -> Deferred[Any]:
        """
        Redis's answer to C{command} (a txredisapi method: C{"get"},
        C{"eval"}...), connecting first unless connected.

        @param what: what the call does, for its error (the command by
            default): C{"<name> <what>: no answer from redis within 2s"}.
        """
        label = f"{self.name} {what or command}"
        if self.closed is not None:
            return fail(RedisUnavailable(f"{label}: {self.closed}"))
        try:
            d = getattr(self.connect().handler, command)(*args, **kwargs)
        except Exception:
            d = fail()
        return self._observed(self.bound(d, what or command, label=label))

    def bound(self, d: Deferred[Any], what: str, timeout: float | None = None, *, label: str | None = None
              ) -> Deferred[Any]:
        """
        C{d}, something of this client's connections, bounded as a call is
        (by C{timeout} when given), its error saying C{what}.
        """
        label = label or f"{self.name} {what}"
        d = bounded(d, self.timeout if timeout is None else timeout, self.clock, label, self._cause)
        if self.every_failure:
            d.addErrback(self._unavailable, label)
        return d

    def ready(self, timeout: float) -> Deferred[None]:
        """
        Fires once a connection of the pool is up (at once if one is);
        fails with L{RedisUnavailable} after C{timeout}.
        """
        if self.closed is not None:
            return fail(RedisUnavailable(f"{self.name} connection: {self.closed}"))
        made = self.connect()
        if made.size:
            return succeed(None)
        return self.bound(made.getConnection(peek=True), "connection", timeout).addCallback(lambda _: None)

    def close(self, why: str | None = None) -> Deferred[None]:
        """
        Close the pool, if one is made. Later calls connect again, unless
        C{why} is given: then they fail at once with L{RedisUnavailable}
        saying it.

        @return: a Deferred firing once every connection is closed (also
            those of an earlier close still closing).
        """
        self.closed = why
        made, self.factory = self.factory, None
        if made is not None:
            self._closing = made.disconnect().addErrback(
                lambda f: log.warn("{client!r}: closing the connections: {error}", client=self, error=f.value))
        done: Deferred[None] = Deferred()

        def fire(result: Any) -> Any:
            done.callback(None)
            return result

        self._closing.addBoth(fire)
        return done

    def _cause(self) -> str | None:
        return getattr(self.factory, "failure", None)

    def _unavailable(self, failure: Failure, label: str) -> None:
        if failure.check(RedisUnavailable):
            failure.raiseException()
        raise RedisUnavailable(f"{label}: {failure.getErrorMessage() or failure.type.__name__}")

    def _observed(self, d: Deferred[Any]) -> Deferred[Any]:
        if self.observer is None:
            return d

        def answered(result: Any) -> Any:
            self.observer(None)  # type: ignore[misc]
            return result

        def failed(failure: Failure) -> Failure:
            self.observer(failure.getErrorMessage())  # type: ignore[misc]
            return failure

        return d.addCallbacks(answered, failed)


def key(cluster: ClusterConfig, *parts: str) -> str:
    """
    A key in the cluster's namespace: C{gamenet:<cluster name>:<parts...>}.
    """
    return ":".join(("gamenet", cluster.name, *parts))
