"""
The calling half of a node link: L{NodeLink}, one server's link to one peer,
and L{_Receiver}, the mind through which the peer sends back results,
membership and the master's control calls. What both halves share, and the
listening half, are in L{gamenet.cluster.node}. Tested in
C{tests/test_cluster.py}.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Callable

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb

from ..connector.tcp import no_delay
from ..errors import GamenetError, Timeout, Unavailable
from . import wire
from .node import MAX_BATCH, MAX_RECORD, CallFailed, error_payload, post, remote_error, take

log = Logger()


class _Receiver(pb.Referenceable):
    def __init__(self, link: NodeLink) -> None:
        self.link = link

    def remote_results(self, batch: bytes) -> None:
        self.link._results(batch)

    def remote_membership(self, ids: list[str]) -> None:
        for listener in self.link.membership_listeners:
            listener([str(i) for i in ids])

    def remote_control(self, name: str, args: bytes) -> Deferred[bytes]:
        control = self.link.control
        if control is None or not isinstance(name, str) or not isinstance(args, bytes):
            return fail(CallFailed(error_payload(GamenetError("this link takes no control calls", 400)).decode()))
        return control(name, args).addErrback(self._control_failed, name)

    def _control_failed(self, failure: Failure, name: str) -> None:
        if not isinstance(failure.value, GamenetError):
            log.failure("control call {name} failed on {server_id}", failure, name=name,
                        server_id=self.link.local_id)
        raise CallFailed(error_payload(failure.value).decode())


class NodeLink:
    """
    The calling half: one server's link to one peer, reconnecting with backoff.

    @ivar up: whether the link is logged in now.
    @ivar healthy: whether the peer answers: a call that times out makes it
        unhealthy (a hung process keeps its connections open), any result
        makes it healthy again. The link pings the peer every sweep, so a
        hung peer is noticed within about one timeout even when idle.
    @ivar listeners: called with C{(peer_id, available)} whenever the link
        becomes available (up and healthy) or stops being so.
    @ivar membership_listeners: called with the ids of the servers up, when
        the peer is the master and announces them.
    @ivar control: runs the master's control calls, C{control(name, args)}
        with JSON bytes in and out, when the peer is the master (see
        L{gamenet.cluster.control}); C{None} refuses them.
    @ivar batch_sizes: told C{observe(calls)} of each batch sent, when set
        (a L{gamenet.metrics.Distribution}).
    """

    def __init__(
        self,
        local_id: str,
        peer_id: str,
        secret: str,
        connect: Callable[[pb.PBClientFactory], Deferred[Any]],
        clock: Any,
        timeout: float = 10.0,
        ping: bool = True,
    ) -> None:
        """
        @param ping: check the peer's health with a ping every sweep; off for
            the master link, which carries membership only.
        """
        self.local_id = local_id
        self.peer_id = peer_id
        self.clock = clock
        self.timeout = timeout
        self.up = False
        self.healthy = True
        self.listeners: list[Callable[[str, bool], Any]] = []
        self.membership_listeners: list[Callable[[list[str]], Any]] = []
        self.control: Callable[[str, bytes], Deferred[bytes]] | None = None
        self._secret = secret
        self._connect = connect
        self._perspective: Any = None
        self._receiver = _Receiver(self)
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Deferred[bytes], float, str]] = {}
        self._queue: list[tuple[int, int, bytes]] = []
        self._size = 0
        self._flush_call: Any = None
        self._ping: Deferred[bytes] | None = None
        self._pings = ping
        self._connecting: Deferred[Any] | None = None
        self._broker: Any = None
        self._closing: list[Deferred[None]] = []
        self._retry_call: Any = None
        self._delay = 0.0
        self._stopped = True
        self.batch_sizes: Any = None
        self._sweeper = LoopingCall(self._expire)
        self._sweeper.clock = clock

    def __repr__(self) -> str:
        return f"<NodeLink {self.local_id}->{self.peer_id} {'up' if self.up else 'down'}>"

    def start(self) -> None:
        """
        Connect, and keep reconnecting until stopped.
        """
        self._stopped = False
        self._sweeper.start(min(1.0, self.timeout / 4), now=False)
        self._attempt()

    def stop(self) -> Deferred[None]:
        """
        Disconnect and fail what is pending.

        @return: a Deferred firing once the connection is closed.
        """
        self._stopped = True
        if self._sweeper.running:
            self._sweeper.stop()
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
        if self._connecting is not None and not self._connecting.called:
            self._connecting.cancel()
        self._perspective = None
        self._down(Unavailable(f"link to {self.peer_id} stopped"))
        broker = self._broker
        if broker is None:
            return succeed(None)
        closed: Deferred[None] = Deferred()
        self._closing.append(closed)
        broker.transport.loseConnection()
        abort = self.clock.callLater(1.0, broker.transport.abortConnection)
        closed.addBoth(lambda result: abort.cancel() if abort.active() else None)
        return closed

    def _attempt(self) -> None:
        self._retry_call = None
        if self._stopped:
            return
        factory = pb.PBClientFactory()
        factory.protocol = wire.NodeBroker
        factory.noisy = False
        self._connecting = d = self._connect(factory)
        d.addCallback(self._connected, factory)
        d.addCallbacks(self._logged_in, self._failed)

    def _connected(self, broker: Any, factory: pb.PBClientFactory) -> Deferred[Any]:
        self._broker = broker
        no_delay(broker.transport)
        broker.notifyOnDisconnect(self._disconnected)
        return factory.login(UsernamePassword(self.local_id.encode(), self._secret.encode()), client=self._receiver)

    def _disconnected(self) -> None:
        self._broker = None
        closing, self._closing = self._closing, []
        for d in closing:
            d.callback(None)

    def _logged_in(self, perspective: Any) -> None:
        if self._stopped:
            perspective.broker.transport.loseConnection()
            return
        self._perspective = perspective
        self._delay = 0.0
        self.up = True
        self.healthy = True
        perspective.notifyOnDisconnect(self._lost)
        log.info("{local_id}: node link to {peer_id} up", local_id=self.local_id, peer_id=self.peer_id)
        self._tell(True)

    def _failed(self, failure: Failure) -> None:
        if self._broker is not None:
            self._broker.transport.loseConnection()
        if failure.check(UnauthorizedLogin):
            log.error("{local_id}: {peer_id} refused our node link: {reason}", local_id=self.local_id,
                      peer_id=self.peer_id, reason=failure.getErrorMessage())
        self._retry()

    def _lost(self, perspective: Any) -> None:
        if perspective is not self._perspective:
            return
        self._perspective = None
        log.info("{local_id}: node link to {peer_id} lost", local_id=self.local_id, peer_id=self.peer_id)
        self._down(Unavailable(f"server {self.peer_id} went away"))
        self._retry()

    def _retry(self) -> None:
        if self._stopped:
            return
        self._delay = min(5.0, max(0.25, self._delay * 2))
        self._retry_call = self.clock.callLater(self._delay * random.uniform(0.8, 1.2), self._attempt)

    def retry_now(self) -> None:
        """
        Connect at once when the link is waiting to retry (the peer is known
        to be back: it has just linked to this server), instead of after
        the backoff.
        """
        if self._retry_call is not None and self._retry_call.active():
            self._retry_call.cancel()
            self._attempt()

    def when_up(self, timeout: float) -> Deferred[None]:
        """
        Wait for the link to be up.

        @return: a Deferred firing at once when it is up, else when it comes
            up; failing with L{Unavailable} when it has not within
            C{timeout} seconds.
        """
        if self.up:
            return succeed(None)
        d: Deferred[None] = Deferred()

        def changed(peer_id: str, available: bool) -> None:
            if self.up:
                finish()
                d.callback(None)

        def expired() -> None:
            finish()
            d.errback(Unavailable(f"server {self.peer_id} is not reachable"))

        def finish() -> None:
            self.listeners.remove(changed)
            if deadline.active():
                deadline.cancel()

        self.listeners.append(changed)
        deadline = self.clock.callLater(timeout, expired)
        return d

    @property
    def busy(self) -> bool:
        """
        Whether calls are queued or waiting for results (pings aside).
        """
        return bool(self._queue) or len(self._pending) > (self._ping is not None)

    @property
    def available(self) -> bool:
        """
        Whether calls should be routed to the peer: up and healthy.
        """
        return self.up and self.healthy

    def _down(self, error: GamenetError) -> None:
        was_available = self.available
        self.up = False
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        self._queue, self._size = [], 0
        pending, self._pending = self._pending, {}
        for d, _, _ in pending.values():
            d.errback(error)
        if was_available:
            self._tell(False)

    def _tell(self, up: bool) -> None:
        for listener in self.listeners:
            try:
                listener(self.peer_id, up)
            except Exception:
                log.failure("node link listener failed")

    def call(self, kind: int, payload: bytes, what: str = "") -> Deferred[bytes]:
        """
        Send one call; fires with the result payload.

        Fails at once with L{Unavailable} when the link is down or the peer
        has stopped answering, with
        L{Timeout} when no result comes within the link's timeout, with
        L{RemoteError} when the call failed on the peer.
        """
        if not self.up:
            return fail(Unavailable(f"server {self.peer_id} is not reachable"))
        if not self.healthy and kind != wire.PING:
            return fail(Unavailable(f"server {self.peer_id} is not answering"))
        if len(payload) > MAX_RECORD:
            return fail(GamenetError(f"call of {len(payload)} bytes is too large"))
        id = next(self._ids)
        if id > 0xFFFFFFFF:
            self._ids = itertools.count(2)
            id = 1
        d: Deferred[bytes] = Deferred()
        self._pending[id] = (d, self.clock.seconds() + self.timeout, what)
        self._enqueue(id, kind, payload)
        return d

    def send(self, kind: int, payload: bytes) -> bool:
        """
        Send a call that has no result (a forwarded notify).

        @return: C{False} when the link is down.
        """
        if not self.up or len(payload) > MAX_RECORD:
            return False
        self._enqueue(0, kind, payload)
        return True

    def _enqueue(self, id: int, kind: int, payload: bytes) -> None:
        if self._size + len(payload) + wire.HEAD_SIZE > MAX_BATCH:
            self._flush()
        self._queue.append((id, kind, payload))
        self._size += len(payload) + wire.HEAD_SIZE
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        queue, self._queue, self._size = self._queue, [], 0
        if queue and self._perspective is not None:
            if self.batch_sizes is not None:
                self.batch_sizes.observe(len(queue))
            try:
                post(self._perspective, "calls", wire.pack(queue))
            except pb.DeadReferenceError as e:
                # The broker has gone before the link heard of it: the calls
                # fail when it does, in _lost.
                log.info("{local_id}: a batch to {peer_id} was not delivered: {reason}", local_id=self.local_id,
                         peer_id=self.peer_id, reason=e)

    def _results(self, batch: bytes) -> None:
        take(batch, "results", self.peer_id, self._fire)

    def _fire(self, records: list[tuple[int, int, bytes]]) -> None:
        if not self.healthy and self.up:
            self.healthy = True
            log.info("{local_id}: {peer_id} answers again", local_id=self.local_id, peer_id=self.peer_id)
            self._tell(True)
        for id, status, payload in records:
            entry = self._pending.pop(id, None)
            if entry is None:
                continue
            d = entry[0]
            if status == wire.OK:
                d.callback(payload)
            else:
                d.errback(remote_error(payload, self.peer_id))

    def _expire(self) -> None:
        # Every call of a link has the same timeout, so the oldest pending
        # calls come first: stop at the first one still in time.
        now = self.clock.seconds()
        expired = []
        for id, (_, deadline, _) in self._pending.items():
            if deadline > now:
                break
            expired.append(id)
        for id in expired:
            d, _, what = self._pending.pop(id)
            d.errback(Timeout(f"{what or 'call'} on {self.peer_id} timed out after {self.timeout:g}s"))
        if expired and self.available:
            self.healthy = False
            log.warn("{local_id}: {peer_id} is not answering; routing around it", local_id=self.local_id,
                     peer_id=self.peer_id)
            self._tell(False)
        if self._pings and self.up and self._ping is None:
            self._ping = self.call(wire.PING, b"", "ping")
            self._ping.addBoth(self._pinged)

    def _pinged(self, result: Any) -> None:
        self._ping = None
