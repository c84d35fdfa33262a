"""
Node links: Perspective Broker between the servers of a cluster.

Every server listens on its node port behind a cred L{Portal}: a peer logs in
with its server id and the cluster secret, and only then gets a perspective
with one method, C{calls}. Each server opens one L{NodeLink} to every other
server; calls from it go out batched (all the calls of one reactor turn in one
C{callRemote}), and results come back batched through the peer's mind, so that
a slow call never holds up a fast one.

This module holds what both halves share (the batch limits, L{post} and
L{take}, how errors travel) and the listening half, L{NodeServer}; the
calling half, L{NodeLink}, is in L{gamenet.cluster.link}. Tested in
C{tests/test_cluster.py}.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernameHashedPassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import ssl
from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb
from zope.interface import implementer

from ..connector.tcp import gathered, no_delay
from ..connector.tls import certificate_problem
from ..errors import GamenetError
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


def take(batch: bytes, what: str, peer_id: str, handle: Callable[[list[tuple[int, int, bytes]]], None]) -> None:
    """
    Hand the records of a batch from C{peer_id} to C{handle}, their writes
    to clients gathered (see L{gathered}); a batch that does not parse is
    logged as a bad C{what} and dropped.
    """
    try:
        records = list(wire.unpack(batch))
    except wire.WireError as e:
        log.warn("bad {what} from {peer_id}: {error}", what=what, peer_id=peer_id, error=e)
        return
    gathered(handle, records)


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
        take(batch, "batch", self.peer_id, self._receive)

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
