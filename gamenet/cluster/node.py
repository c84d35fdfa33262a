"""
Node links: Perspective Broker between the servers of a cluster.

Every server listens on its node port behind a cred L{Portal}: a peer logs in
with its server id and the cluster secret, and only then gets a perspective
with one method, C{calls}. Each server opens one L{NodeLink} to every other
server; calls from it go out batched (all the calls of one reactor turn in one
C{callRemote}), and results come back batched through the peer's mind, so that
a slow call never holds up a fast one.
"""

from __future__ import annotations

import itertools
import random
from typing import Any, Callable, Protocol

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernameHashedPassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.internet import ssl
from twisted.spread import pb
from zope.interface import implementer

from ..connector.tcp import gathered, no_delay
from ..connector.tls import certificate_problem
from ..errors import GamenetError, Timeout, Unavailable
from ..protocol import serializer
from . import wire

log = Logger()

MAX_BATCH = 512 * 1024  # under banana's 640 KiB string limit
MAX_RECORD = MAX_BATCH - wire.HEAD_SIZE


def node_tls_options(cluster: Any) -> ssl.CertificateOptions:
    """
    Mutual TLS for node links: every node presents the cluster certificate
    and trusts only it.

    @raise ValueError: a file cannot be read, or the files do not hold a
        matching certificate and key; the message names the cluster file and key.
    """
    try:
        with open(cluster.node_tls_cert, "rb") as f:
            cert_pem = f.read()
        with open(cluster.node_tls_key, "rb") as f:
            key_pem = f.read()
    except OSError as e:
        raise ValueError(f"{cluster.path} " + certificate_problem(
            e, "[cluster]", "node_tls_cert", "node_tls_key", cluster.node_tls_key)) from None
    try:
        certificate = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)
    except Exception as e:
        raise ValueError(f"{cluster.path} [cluster] node_tls_cert: {cluster.node_tls_cert} and {cluster.node_tls_key} "
                         f"do not hold a usable certificate and key: {e}") from None
    return ssl.CertificateOptions(
        privateKey=certificate.privateKey.original,
        certificate=certificate.original,
        verify=True,
        caCerts=[certificate.original],
        requireCertificate=True,
    )


class RemoteError(GamenetError):
    """
    A call failed on the server that ran it.

    @ivar type: the exception class name on that server.
    @ivar server_id: the server that ran the call.
    """

    def __init__(self, message: str, code: int = 500, type: str = "", server_id: str = "") -> None:
        super().__init__(message, code)
        self.type = type
        self.server_id = server_id


def error_payload(error: BaseException) -> bytes:
    """
    How an exception travels back: its code and message (no traceback).
    """
    if isinstance(error, GamenetError):
        return serializer.dumps({"code": error.code, "message": error.message, "type": type(error).__name__})
    return serializer.dumps({"code": 500, "message": "internal server error", "type": type(error).__name__})


def post(reference: Any, method: str, batch: bytes) -> None:
    """
    Call C{method} with a batch on the peer, asking PB for no answer: the
    batches' methods return nothing, results come back as batches of their
    own, and a link that goes down fails the calls waiting on it. PB's answer
    would be a message each way more per batch (serialized, parsed and
    matched to a Deferred), as much work as the batch itself for one call.

    @raise pb.DeadReferenceError: the connection is gone.
    """
    reference.callRemote(method, batch, pbanswer=False)


class Inbox(Protocol):
    """
    What a server does with the calls that reach it.
    """

    def receive(self, peer_id: str, kind: int, payload: bytes) -> Deferred[bytes] | None:
        """
        Run one call; the Deferred fires with the result payload, or fails.
        C{None} for a call that has no result (a notify).
        """


def remote_error(payload: bytes, server_id: str) -> RemoteError:
    """
    The exception an L{error_payload} from C{server_id} stands for.
    """
    try:
        info = serializer.loads(payload)
        return RemoteError(info["message"], info["code"], info.get("type", ""), server_id)
    except (ValueError, KeyError, TypeError):
        return RemoteError("bad error result", 500, "", server_id)


class CallFailed(pb.Error):
    """
    A call made through PB itself (not in a batch) failed: its message is
    the L{error_payload} as text. A C{pb.Error}, so PB sends it back without
    logging a traceback.
    """


class NodeRefused(UnauthorizedLogin, pb.Error):
    """
    A node login refused: a C{pb.Error}, so PB sends it back without logging
    a traceback; the checker logs the refusal itself.
    """


@implementer(ICredentialsChecker)
class SecretChecker:
    """
    Lets in a node that knows the cluster secret and names a server of the cluster.
    """

    credentialInterfaces = (IUsernameHashedPassword,)

    def __init__(self, secret: str, known: Callable[[str], bool]) -> None:
        self._secret = secret.encode("utf-8")
        self._known = known

    def requestAvatarId(self, credentials: Any) -> Deferred[str]:
        name = credentials.username
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        if not self._known(name):
            log.warn("node link refused: {name!r} is not a server of this cluster", name=name)
            return fail(NodeRefused("unknown server"))
        if not credentials.checkPassword(self._secret):
            log.warn("node link refused: wrong cluster secret from {name!r}", name=name)
            return fail(NodeRefused("wrong secret"))
        return succeed(name)


class _Avatar(pb.Avatar):
    def __init__(self, server: NodeServer, peer_id: str, mind: Any) -> None:
        self.server = server
        self.peer_id = peer_id
        self.mind = mind
        self._results: list[tuple[int, int, bytes]] = []
        self._size = 0
        self._flush_call: Any = None
        self.gone = False

    def perspective_calls(self, batch: bytes) -> None:
        try:
            records = list(wire.unpack(batch))
        except wire.WireError as e:
            log.warn("bad batch from {peer_id}: {error}", peer_id=self.peer_id, error=e)
            return
        gathered(self._receive, records)

    def _receive(self, records: list[tuple[int, int, bytes]]) -> None:
        for id, kind, payload in records:
            try:
                d = self.server.inbox.receive(self.peer_id, kind, payload)
            except Exception as e:
                d = fail(e)
            if d is not None:
                self.server.in_flight += 1
                d.addCallbacks(self._result, self._error, callbackArgs=(id,), errbackArgs=(id, kind))

    def _result(self, payload: bytes, id: int) -> None:
        self.server.in_flight -= 1
        if len(payload) > MAX_RECORD:
            self._add(id, wire.ERROR, error_payload(GamenetError(f"result of {len(payload)} bytes is too large")))
        else:
            self._add(id, wire.OK, payload)

    def _error(self, failure: Failure, id: int, kind: int) -> None:
        self.server.in_flight -= 1
        if not isinstance(failure.value, GamenetError):
            log.failure("call from {peer_id} failed on {server_id}", failure, peer_id=self.peer_id,
                        server_id=self.server.server_id)
        self._add(id, wire.ERROR, error_payload(failure.value))

    def _add(self, id: int, status: int, payload: bytes) -> None:
        if self.gone:
            return
        if self._size + len(payload) + wire.HEAD_SIZE > MAX_BATCH:
            self._flush()
        self._results.append((id, status, payload))
        self._size += len(payload) + wire.HEAD_SIZE
        if self._flush_call is None:
            self._flush_call = self.server.clock.callLater(0, self._flush)

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        results, self._results, self._size = self._results, [], 0
        if results and not self.gone and self.mind is not None:
            try:
                post(self.mind, "results", wire.pack(results))
            except pb.DeadReferenceError:
                pass  # the link is going: its caller fails what it waits for

    def logout(self) -> None:
        self.gone = True
        self.server.peers.discard(self)


@implementer(IRealm)
class _Realm:
    def __init__(self, server: NodeServer) -> None:
        self.server = server

    def requestAvatar(self, avatar_id: str, mind: Any, *interfaces: Any) -> tuple[Any, _Avatar, Callable[[], None]]:
        if pb.IPerspective not in interfaces:
            raise NotImplementedError("only PB perspectives")
        avatar = _Avatar(self.server, avatar_id, mind)
        # Batches are small and latency matters: no Nagle on node links.
        if mind is not None:
            no_delay(mind.broker.transport)
        self.server.peers.add(avatar)
        log.info("{server_id}: node link from {peer_id}", server_id=self.server.server_id, peer_id=avatar_id)
        for listener in self.server.login_listeners:
            listener(avatar_id)
        return pb.IPerspective, avatar, avatar.logout


class NodeServer:
    """
    The listening half: the PB factory for a server's node port.

    @ivar in_flight: the calls from peers being served now.
    @ivar login_listeners: called with a peer's id each time it logs in.
    """

    def __init__(self, server_id: str, secret: str, known: Callable[[str], bool], inbox: Inbox, clock: Any) -> None:
        self.server_id = server_id
        self.inbox = inbox
        self.clock = clock
        self.peers: set[_Avatar] = set()
        self.in_flight = 0
        self.login_listeners: list[Callable[[str], Any]] = []
        portal = Portal(_Realm(self), [SecretChecker(secret, known)])
        self.factory = pb.PBServerFactory(portal)
        self.factory.protocol = wire.NodeBroker
        self.factory.noisy = False


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
            except pb.DeadReferenceError:
                self._send_failed(Failure())

    def _send_failed(self, failure: Failure) -> None:
        # PB may fail a call with a Failure whose value is another Failure, or
        # a PBConnectionLost holding the Failure of the lost connection.
        while True:
            value = failure.value
            if isinstance(value, pb.PBConnectionLost) and value.args and isinstance(value.args[0], Failure):
                value = value.args[0]
            if not isinstance(value, Failure):
                break
            failure = value
        log.info("{local_id}: a batch to {peer_id} was not delivered: {reason}", local_id=self.local_id,
                 peer_id=self.peer_id, reason=failure.getErrorMessage())

    def _results(self, batch: bytes) -> None:
        try:
            records = list(wire.unpack(batch))
        except wire.WireError as e:
            log.warn("bad results from {peer_id}: {error}", peer_id=self.peer_id, error=e)
            return
        gathered(self._fire, records)

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
