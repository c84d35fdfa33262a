"""
One client connection, whatever carries it: the state machine behind every connector.

States (L{State}): C{HANDSHAKE} (waiting for the client's handshake),
C{VALIDATING} (the application's handshake validators are deciding, then the
session to resume is fetched when the client presents a resume token),
C{WAIT_ACK} (answer sent, waiting for the ack), C{WORKING}, C{CLOSED}; the
handshake phase is L{gamenet.connector.handshaking}. The transport-specific
part is a L{Link}: raw TCP or a WebSocket, with or without TLS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer
from twisted.internet.interfaces import IPushProducer

from ..dispatch import UNREAD
from ..errors import BadRequest, GamenetError
from ..protocol import message, package, serializer
from ..protocol.errors import ProtocolError
from ..protocol.protobuf import Codec, ProtobufError, Protos
from .handshaking import Handshaking, State

if TYPE_CHECKING:
    from ..session import Session
    from .frontend import Frontend

log = Logger()


# The states the data path compares with, as module constants: reading a
# member off the enum class is an attribute lookup on every package, answer
# and write. A connection's state is always one of the members, so they are
# compared by identity.
_HANDSHAKE = State.HANDSHAKE
_WAIT_ACK = State.WAIT_ACK
_WORKING = State.WORKING
_CLOSED = State.CLOSED
_DATA = package.DATA


class Link(Protocol):
    """
    The transport-specific half of a connection.
    """

    transport_name: str
    peer: tuple[str, int]

    def send(self, data: bytes) -> None:
        """
        Write encoded packages (one WebSocket message, or bytes on a stream).
        What is written while a read or a node-link batch is handled may be
        held until it ends, but never past a L{close} or an L{abort}.
        """

    def close(self) -> None:
        """
        Close after what was written has gone out.
        """

    def abort(self) -> None:
        """
        Close at once, dropping what is unsent.
        """


_GRACE = 2.0  # seconds a closing connection may take to flush before it is aborted
_UNDECODABLE = object()  # _from_protobuf's answer for a body that does not decode

# The kick reasons gamenet gives, counted as they are (C{Frontend.kicks});
# any other (a game's own, free text) is counted as "other", and a protocol
# error (whose text names what was wrong) as "protocol error".
KICK_REASONS = frozenset({
    "rate limit exceeded", "handshake timeout", "heartbeat timeout", "server shutting down", "kicked by admin",
    "address blocked", "replaced", "logged in elsewhere", "resumed elsewhere", "protocol error", "other",
})


@implementer(IPushProducer)
class Connection(Handshaking):
    """
    A client connection speaking the Pomelo protocol.

    @ivar session: the client's session, from the handshake ack on.
    @ivar pitaya: whether the client used Pitaya's handshake (and so gets the error bit).
    @ivar last_tick: the frontend tick when a package last arrived.
    @ivar in_flight: the requests dispatched and not answered yet.
    @ivar answer_codecs: the protobuf codec of each request in flight whose
        route has a server schema, by request id.
    @ivar opened_at: when the connection was made (the frontend's clock, Unix time).
    @ivar received: the requests and notifies received (mqant's C{RecvNum}).
    @ivar sent: the answers and pushes written or queued (mqant's C{SendNum}).
    """

    __slots__ = (
        "frontend", "link", "state", "session", "pitaya", "decoder", "opened_tick",
        "last_tick", "_window", "_count", "_paused", "_queue", "_queued", "_close_reason",
        "_closed", "_abort_call", "in_flight", "answer_codecs", "opened_at", "received", "_counted", "sent",
        "resumable", "__weakref__",
    )

    def __init__(self, frontend: Frontend, link: Link) -> None:
        self.frontend = frontend
        self.link = link
        self.state = State.HANDSHAKE
        self.session: Session | None = None
        self.pitaya = False
        self.decoder = package.PackageDecoder(frontend.options.max_body_size)
        self.opened_tick = self.last_tick = frontend.tick
        self._window = -1
        self._count = 0
        self._paused = False
        self._queue: list[bytes] = []
        self._queued = 0
        self._close_reason = ""
        self._closed: list[Deferred[None]] = []
        self._abort_call: Any = None
        self.in_flight = 0
        self.answer_codecs: dict[int, Codec] = {}
        self.opened_at = frontend.clock.seconds()
        self.received = self.sent = 0
        self._counted = 0  # the requests of received already in the frontend's count
        self.resumable = False
        frontend.opened(self)

    def __repr__(self) -> str:
        return f"<Connection {self.link.transport_name} {self.link.peer} {self.state.name}>"

    @property
    def queued(self) -> int:
        """
        The bytes queued while the client is not reading.
        """
        return self._queued

    @property
    def closing(self) -> bool:
        """
        Whether the connection is closing or closed.
        """
        return bool(self._close_reason) or self.state is _CLOSED

    # Incoming

    def data_received(self, data: bytes) -> None:
        """
        Bytes from the client, split anywhere.
        """
        if self._close_reason or self.state is _CLOSED:
            return
        frontend = self.frontend
        self.last_tick = tick = frontend.tick
        error = None
        try:
            packages = self.decoder.feed(data)
        except ProtocolError as e:
            packages, error = e.packages, e
        try:
            self._handle(packages, tick)
        finally:
            # The frontend's count of requests and notifies goes up once per
            # read: an item of its Counter costs more than a request's other
            # bookkeeping together.
            if self.received != self._counted:
                frontend.metrics["requests"] += self.received - self._counted
                self._counted = self.received
        if error is not None and not self._close_reason:
            self._protocol_error(str(error))

    def _handle(self, packages: list[tuple[int, bytes]], tick: int) -> None:
        frontend = self.frontend
        limit = frontend.options.messages_per_second
        for package_type, body in packages:
            if self._close_reason:
                return
            state = self.state
            if state is _WORKING:
                if self._window != tick:
                    self._window = tick
                    self._count = 0
                self._count += 1
                if self._count > limit:
                    frontend.metrics["rate_limited"] += 1
                    log.warn("{peer} exceeded {limit} messages per second", peer=self.link.peer, limit=limit)
                    self.kick("rate limit exceeded")
                    return
                if package_type == _DATA:
                    self._on_data(body)
                elif package_type == package.HEARTBEAT:
                    if frontend.options.heartbeat:
                        self.write(package.HEARTBEAT_PACKAGE)
                else:
                    self._protocol_error(f"unexpected {package.type_name(package_type)} package")
            elif state is _HANDSHAKE:
                if package_type != package.HANDSHAKE:
                    self._protocol_error(f"expected a handshake, got {package.type_name(package_type)}")
                    return
                self._on_handshake(body)
            elif state is _WAIT_ACK:
                if package_type == package.HANDSHAKE_ACK:
                    self._on_ack()
                elif package_type != package.HEARTBEAT:
                    self._protocol_error(f"expected a handshake ack, got {package.type_name(package_type)}")
            elif package_type != package.HEARTBEAT:
                self._protocol_error(f"unexpected {package.type_name(package_type)} package during the handshake")

    def _on_data(self, body: bytes) -> None:
        frontend = self.frontend
        try:
            msg = message.decode(body, frontend.code_to_route, frontend.options.max_body_size)
        except ProtocolError as e:
            self._protocol_error(str(e))
            return
        if msg.type > message.NOTIFY:
            self._protocol_error(f"clients may not send a {message.type_name(msg.type)}")
            return
        self.received += 1  # and so the frontend's count of requests (see data_received)
        if msg.type == message.REQUEST:
            self.in_flight += 1
        if frontend.protos is None:
            frontend.dispatcher.dispatch(self, self.session, msg)  # type: ignore[arg-type]
            return
        value = self._from_protobuf(msg, frontend.protos)
        if value is not _UNDECODABLE:
            frontend.dispatcher.dispatch(self, self.session, msg, value)  # type: ignore[arg-type]

    def _from_protobuf(self, msg: message.Message, protos: Protos) -> Any:
        """
        Read a protobuf body, and note the codec of a request whose answer
        goes out protobuf. The dispatcher hands the value to a local handler,
        and forwards it as the JSON every backend takes.

        @return: the body's value; C{UNREAD} for a JSON body; C{_UNDECODABLE}
            when the body does not decode: a request is answered 400, a
            notify dropped, both logged.
        """
        if msg.type == message.REQUEST and msg.route in protos.server:
            self.answer_codecs[msg.id] = protos.server[msg.route]
        codec = protos.client.get(msg.route)
        if codec is None:
            return UNREAD
        try:
            return codec.loads(msg.body)
        except ProtobufError as e:
            log.info("{peer} sent a body that does not decode: {reason}", peer=self.link.peer, reason=str(e))
            if msg.type == message.REQUEST:
                self.respond(msg.id, None, BadRequest(str(e)))
            return _UNDECODABLE

    def _protocol_error(self, reason: str) -> None:
        self.frontend.metrics["protocol_errors"] += 1
        log.info("protocol error from {peer}: {reason}", peer=self.link.peer, reason=reason)
        self._kick(reason, "protocol error")

    # Outgoing

    def write(self, data: bytes) -> bool:
        """
        Write encoded packages, queueing while the client is not reading.

        @return: C{False} when the connection is gone, was just dropped as a
            slow consumer, or is closing while the client is not reading.
        """
        if self.state is _CLOSED:
            return False
        if data[0] == _DATA:
            self.sent += 1
        if not self._paused:
            self.link.send(data)
            return True
        if self._close_reason:
            return False  # closing, and the client is not reading: nothing more will reach it
        self._queue.append(data)
        self._queued += len(data)
        options = self.frontend.options
        if self._queued > options.max_outbound_queue or len(self._queue) > options.max_outbound_messages:
            self.frontend.metrics["slow_consumers"] += 1
            log.warn("{peer} is not reading; {size} bytes in {count} packages queued: disconnecting",
                     peer=self.link.peer, size=self._queued, count=len(self._queue))
            self._queue.clear()
            self._close_reason = "slow consumer"
            self.link.abort()
            return False
        return True

    def respond(self, id: int, value: Any, error: GamenetError | None = None) -> None:
        """
        Answer request C{id} with C{value} (bytes are sent as they are), or with C{error}.
        """
        self.in_flight -= 1
        codec = self.answer_codecs.pop(id, None) if self.answer_codecs else None
        if self.state is not _WORKING:
            self.frontend.metrics["responses_dropped"] += 1
            return
        if codec is not None:
            self._respond_protobuf(id, value, error, codec)
            return
        if error is None:
            try:
                body = value if isinstance(value, bytes) else serializer.dumps(value)
            except (TypeError, ValueError):
                log.failure("response to request {id} is not JSON-able", id=id)
                error = GamenetError()
        if error is not None:
            self.frontend.metrics["error_responses"] += 1
            body = serializer.dumps(error.body(self.pitaya))
            self.write(message.response_package(id, body, self.pitaya))
            return
        self.write(message.response_package(id, body))

    def _respond_protobuf(self, id: int, value: Any, error: GamenetError | None, codec: Codec) -> None:
        """
        Answer with the route's schema; an answer bytes is JSON (a backend's).
        An error body the schema cannot carry goes out as JSON.
        """
        if error is None:
            try:
                body = codec.dumps(serializer.loads(value) if isinstance(value, bytes) else value)
            except ValueError as e:
                log.warn("the answer to request {id} does not fit its schema: {reason}", id=id, reason=str(e))
                error = GamenetError()
            else:
                self.write(message.response_package(id, body))
                return
        self.frontend.metrics["error_responses"] += 1
        answer = error.body(self.pitaya)
        try:
            body = codec.dumps(answer)
        except ProtobufError:
            body = serializer.dumps(answer)
        self.write(message.response_package(id, body, self.pitaya))

    def push(self, route: str, msg: Any) -> bool:
        """
        Push C{msg} on C{route}, through the C{send} hooks.
        """
        if self.state is not _WORKING:
            return False
        data = self.frontend.session_push(self.session, route, msg)
        return data is not None and self.write(data)

    def kick(self, reason: str) -> Deferred[None]:
        """
        Send a kick package with C{reason}, then close.

        @return: a Deferred firing when the connection has closed.
        """
        return self._kick(reason, reason if reason in KICK_REASONS else "other")

    def _kick(self, reason: str, label: str) -> Deferred[None]:
        if self.state is _CLOSED:
            return succeed(None)
        if not self._close_reason:
            self.frontend.kicks[label] += 1
            self.write(package.encode(package.KICK, serializer.dumps({"reason": reason})))
        return self.close(reason)

    def close(self, reason: str) -> Deferred[None]:
        """
        Close without a kick package; C{reason} goes to the session's close callbacks.
        """
        if self.state is _CLOSED:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        if not self._close_reason:
            self._close_reason = reason
            if self._paused:
                self.link.abort()
            else:
                self.link.close()
                self._abort_call = self.frontend.clock.callLater(_GRACE, self.link.abort)
        return d

    def connection_lost(self, reason: str = "client closed") -> None:
        """
        The transport is gone.
        """
        if self.state is _CLOSED:
            return
        self.state = State.CLOSED
        if self._abort_call is not None and self._abort_call.active():
            self._abort_call.cancel()
        self._queue.clear()
        reason = self._close_reason or reason
        self.frontend.closed(self)
        if self.session is not None:
            self.frontend.sessions.closed(self.session, reason)
        closed, self._closed = self._closed, []
        for d in closed:
            d.callback(None)

    # IPushProducer, registered with the transport

    def pauseProducing(self) -> None:
        """
        The transport's buffer is full: queue further writes.
        """
        self._paused = True

    def resumeProducing(self) -> None:
        """
        The transport drained: send what was queued.
        """
        self._paused = False
        if self._queue and self.state is not _CLOSED:
            data = b"".join(self._queue)
            self._queue.clear()
            self._queued = 0
            self.link.send(data)

    def stopProducing(self) -> None:
        """
        The transport is going away.
        """
        self._queue.clear()
