"""
The client connection itself: handshake, heartbeats, requests, pushes and
resume, over whichever link L{gamenet.client._links} made.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet import endpoints, ssl
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..protocol import handshake, message, package, serializer
from ..protocol.errors import ProtocolError
from ..protocol.protobuf import Protos
from ..session.suspend import RESUME_ROUTE
from ._links import _TCPClientLink, _WebSocketClientLink

log = Logger()

RESUME_ATTEMPTS = 30.0  # seconds a dropped client with resume keeps trying to connect again

POMELO_HANDSHAKE = {"type": "gamenet-python", "version": "0.1.0", "rsa": {}, "protoVersion": 0}


class ClientError(Exception):
    """
    The connection failed, was refused, or closed before an answer came.
    """


class ErrorResponse(Exception):
    """
    A response with Pitaya's error bit set; C{body} is its decoded body.
    """

    def __init__(self, body: Any) -> None:
        self.body = body
        super().__init__(body)


class Client:
    """
    One client connection.

    @ivar handshake: the server's handshake answer.
    @ivar protos: the protobuf schemas the handshake sent, or C{None}: bodies
        of their routes go both ways in protobuf, the others in JSON.
    @ivar kick_reason: the reason of a kick package, when one came.
    @ivar closed: a Deferred firing with the close reason when the client
        ends (with C{resume}, once a resume failed or was not possible).
    @ivar resume_token: the token the server gave the bound session (with C{resume}).
    @ivar resumes: how many times the session was resumed.
    """

    def __init__(self, clock: Any, sys: dict[str, Any] | None = None, user: Any = None,
                 heartbeat: bool = True, compress_routes: bool = True, resume: bool = False,
                 resume_to: Callable[[], Any] | None = None) -> None:
        """
        @param resume: ask for resume tokens, and when the connection drops
            (not closed by L{close}, nor kicked), connect again and resume the
            session (see C{doc/sessions.md}); pushes sent meanwhile arrive,
            requests in flight fail.
        @param resume_to: called when the connection dropped: where to
            resume, C{(host, port)} or a Deferred of it (ask the gate
            again, say); where it was by default.
        """
        self.clock = clock
        self._sys = dict(POMELO_HANDSHAKE if sys is None else sys)
        self.resume = resume
        if resume:
            user = {**(user if isinstance(user, dict) else {}), "resume": True}
        self._user = user
        self._resume_to = resume_to
        self.resume_token: str | None = None
        self.resumes = 0
        self._refusal: str | None = None
        self._closing = False
        self._dial: Callable[[str, int], Deferred[Any]] | None = None
        self._address = ("", 0)
        self._abort: Callable[[], None] = lambda: None
        self._heartbeat_enabled = heartbeat
        self._compress_routes = compress_routes
        self.handshake: dict[str, Any] = {}
        self.kick_reason: str | None = None
        self.closed: Deferred[str] = Deferred()
        self._send: Callable[[bytes], None] = lambda data: None
        self._lose: Callable[[], None] = lambda: None
        self._decoder = package.PackageDecoder()
        self._ready: Deferred[Client] = Deferred()
        self._pending: dict[int, Deferred[Any]] = {}
        self._next_id = 1
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {}
        self._route_to_code: dict[str, int] = {}
        self._code_to_route: dict[int, str] = {}
        self.protos: Protos | None = None
        self._request_routes: dict[int, str] = {}
        self._interval = 0.0
        self._heartbeat_call: Any = None
        self._timeout_call: Any = None
        self._open = False

    @classmethod
    def connect(
        cls,
        reactor: Any,
        host: str,
        port: int,
        transport: str = "websocket",
        tls: bool = False,
        path: str = "/",
        timeout: float = 10.0,
        **options: Any,
    ) -> Deferred[Client]:
        """
        Connect and complete the handshake.

        @param transport: C{"websocket"} or C{"tcp"}.
        @param tls: wrap the connection in TLS (certificates are not verified:
            a test and load tool, not a browser).
        @param options: passed to the constructor (C{sys}, C{user}, C{heartbeat},
            C{compress_routes}, C{resume}, C{resume_to}).
        @return: a Deferred firing with the client once the handshake is acked.
        """
        client = cls(reactor, **options)
        factory: Factory
        if transport == "websocket":
            scheme = "wss" if tls else "ws"
            factory = WebSocketClientFactory(f"{scheme}://{host}:{port}{path}")
            factory.protocol = _WebSocketClientLink
            factory.setProtocolOptions(maxFramePayloadSize=0, maxMessagePayloadSize=0, autoPingInterval=0)
        elif transport == "tcp":
            factory = Factory.forProtocol(_TCPClientLink)
        else:
            raise ValueError(f"unknown transport {transport!r}")
        factory.client = client  # type: ignore[attr-defined]
        factory.noisy = False

        def dial(host: str, port: int) -> Deferred[Any]:
            endpoint: Any = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout)
            if tls:
                endpoint = endpoints.wrapClientTLS(ssl.CertificateOptions(verify=False), endpoint)
            if transport == "websocket":
                factory.setSessionParameters(f"{'wss' if tls else 'ws'}://{host}:{port}{path}")
            return endpoint.connect(factory)

        client._dial, client._address = dial, (host, port)
        d = dial(host, port)
        d.addCallback(lambda _: client._ready)
        return d

    # The connection

    def _connected(self, send: Callable[[bytes], None], lose: Callable[[], None],
                   abort: Callable[[], None] = lambda: None) -> None:
        self._send = send
        self._lose = lose
        self._abort = abort
        body = {"sys": self._sys}
        if self._user is not None:
            body["user"] = self._user
        self._send(package.encode(package.HANDSHAKE, serializer.dumps(body)))

    def _data(self, data: bytes) -> None:
        try:
            packages = self._decoder.feed(data)
        except ProtocolError as e:
            log.warn("bad data from server: {error}", error=e)
            self.close()
            return
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.reset(2 * self._interval)
        for package_type, body in packages:
            if package_type == package.DATA:
                self._message(body)
            elif package_type == package.HEARTBEAT:
                self._schedule_heartbeat()
            elif package_type == package.HANDSHAKE:
                self._handshake(body)
            elif package_type == package.KICK:
                try:
                    self.kick_reason = json.loads(body).get("reason", "")
                except (ValueError, AttributeError):
                    self.kick_reason = ""

    def _handshake(self, body: bytes) -> None:
        answer = serializer.loads(body)
        self.handshake = answer
        if answer.get("code") != handshake.CODE_OK:
            if isinstance(self._user, dict) and isinstance(self._user.get("resume"), str):
                self._refusal = f"resume refused: {answer.get('message', answer.get('code'))}"
            self._ready.errback(ClientError(f"handshake refused: {answer}"))
            self.close()
            return
        sys = answer.get("sys", {})
        if self._compress_routes and "dict" in sys:
            self._route_to_code = sys["dict"]
            self._code_to_route = {code: route for route, code in self._route_to_code.items()}
        if isinstance(sys.get("protos"), dict):
            protos = sys["protos"]
            self.protos = Protos.from_parsed(protos.get("client", {}), protos.get("server", {}))
        user = answer.get("user")
        if isinstance(user, dict) and isinstance(user.get("token"), str):
            self.resume_token = user["token"]
        self._interval = float(sys.get("heartbeat") or 0)
        self._send(package.HANDSHAKE_ACK_PACKAGE)
        self._open = True
        if self._interval and self._heartbeat_enabled:
            self._timeout_call = self.clock.callLater(2 * self._interval, self._heartbeat_timeout)
        self._ready.callback(self)

    def _schedule_heartbeat(self) -> None:
        if not self._interval or not self._heartbeat_enabled or not self._open:
            return
        if self._heartbeat_call is None or not self._heartbeat_call.active():
            self._heartbeat_call = self.clock.callLater(self._interval, self._beat)

    def _beat(self) -> None:
        if self._open:
            self._send(package.HEARTBEAT_PACKAGE)

    def _heartbeat_timeout(self) -> None:
        log.info("server heartbeat timeout")
        self.close()

    def _message(self, body: bytes) -> None:
        msg = message.decode(body, self._code_to_route)
        if msg.type == message.RESPONSE:
            d = self._pending.pop(msg.id, None)
            route = self._request_routes.pop(msg.id, "")
            if d is None:
                return
            value = self._loads(route, msg.body)
            if msg.error:
                d.errback(ErrorResponse(value))
            else:
                d.callback(value)
        elif msg.type == message.PUSH:
            value = self._loads(msg.route, msg.body)
            if msg.route == RESUME_ROUTE:
                self.resume_token = value.get("token") if isinstance(value, dict) else None
                return
            for listener in self._listeners.get(msg.route, ()):
                listener(value)
            for listener in self._listeners.get("*", ()):
                listener((msg.route, value))

    def _lost(self, reason: str) -> None:
        self._open = False
        for call in (self._heartbeat_call, self._timeout_call):
            if call is not None and call.active():
                call.cancel()
        if (self.resume and self.resume_token and self._dial is not None and not self._closing
                and self.kick_reason is None and self._ready.called):
            self._fail_pending(f"connection closed: {reason}; resuming")
            self._reconnect(self.clock.seconds() + RESUME_ATTEMPTS)
            return
        if not self._ready.called:
            self._ready.errback(ClientError(f"connection closed before the handshake: {reason}"))
        self._fail_pending(f"connection closed: {self.kick_reason or reason}")
        if not self.closed.called:
            self.closed.callback(self._refusal or self.kick_reason or reason)

    def _fail_pending(self, text: str) -> None:
        pending, self._pending = self._pending, {}
        self._request_routes.clear()
        for d in pending.values():
            d.errback(ClientError(text))

    def _reconnect(self, deadline: float) -> None:
        """
        Connect again and present the resume token; a connection that fails
        is tried again every second until C{deadline}.
        """
        assert self._dial is not None
        self._decoder = package.PackageDecoder()
        self._ready = Deferred()
        self._user = {**(self._user or {}), "resume": self.resume_token}
        d = maybeDeferred(self._resume_to) if self._resume_to is not None else succeed(self._address)
        d.addCallback(lambda address: self._dial(*address))

        def failed(failure: Failure) -> None:
            if self._closing or self._ready.called or self.clock.seconds() > deadline:
                if not self._ready.called:
                    self._ready.errback(failure)
                if not self.closed.called:
                    self.closed.callback(f"resume failed: {failure.getErrorMessage()}")
                return
            self.clock.callLater(1.0, self._reconnect, deadline)

        def resumed(_: Any) -> None:
            self.resumes += 1

        d.addCallbacks(lambda _: None, failed)
        self._ready.addCallbacks(resumed, lambda f: None)

    def drop(self) -> None:
        """
        Drop the connection as a network does: a reset, no close (for tests
        of resume).
        """
        self._abort()

    # Public

    def _loads(self, route: str, body: bytes) -> Any:
        codec = self.protos.server.get(route) if self.protos is not None else None
        if codec is not None and not body.startswith(b"{"):
            return codec.loads(body)
        return serializer.loads(body)

    def _encode(self, message_type: int, id: int, route: str, msg: Any) -> bytes:
        codec = self.protos.client.get(route) if self.protos is not None else None
        if codec is not None and not isinstance(msg, bytes):
            body = codec.dumps(msg)
        else:
            body = msg if isinstance(msg, bytes) else serializer.dumps(msg)
        return package.encode(
            package.DATA, message.encode(message_type, id, route, body, self._route_to_code.get(route))
        )

    def request(self, route: str, msg: Any = None) -> Deferred[Any]:
        """
        Send a request; the Deferred fires with the decoded response body.
        """
        if not self._open:
            return Deferred.fromCoroutine(_raise(ClientError("not connected")))
        id = self._next_id
        self._next_id = id + 1 if id < 0x7FFFFFFF else 1
        d: Deferred[Any] = Deferred()
        self._pending[id] = d
        if self.protos is not None:
            self._request_routes[id] = route
        self._send(self._encode(message.REQUEST, id, route, {} if msg is None else msg))
        return d

    def notify(self, route: str, msg: Any = None) -> None:
        """
        Send a notify; no answer comes.
        """
        if self._open:
            self._send(self._encode(message.NOTIFY, 0, route, {} if msg is None else msg))

    def send_raw(self, data: bytes) -> None:
        """
        Write bytes as they are, for tests of bad input.
        """
        self._send(data)

    def on(self, route: str, listener: Callable[[Any], Any]) -> None:
        """
        Call C{listener(msg)} for each push on C{route}; C{"*"} gets C{(route, msg)} of every push.
        """
        self._listeners.setdefault(route, []).append(listener)

    def close(self) -> Deferred[str]:
        """
        Close the connection (if it is not closed yet).

        @return: a Deferred of its own firing with the reason once closed: a
            timeout on it (C{close().addTimeout(...)}) or its cancellation
            leaves C{closed} alone.
        """
        self._open = False
        self._closing = True
        if not self.closed.called:
            self._lose()
        done: Deferred[str] = Deferred()

        def fire(reason: str) -> str:
            if not done.called:
                done.callback(reason)
            return reason

        self.closed.addCallback(fire)
        return done


async def _raise(error: Exception) -> Any:
    raise error
