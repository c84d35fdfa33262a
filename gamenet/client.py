"""
A Twisted client of the Pomelo protocol, over WebSocket or TCP, with or without TLS.

Used by gamenet's tests, its benchmarks and load robot, and by anyone who wants
to script a server that speaks the Pomelo protocol::

    client = await Client.connect(reactor, "127.0.0.1", 3050, transport="websocket")
    answer = await client.request("connector.entryHandler.enter", {"username": "bob", "rid": "r1"})
    client.on("onChat", lambda msg: print(msg))
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Callable

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet import endpoints, ssl
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from .connector.tcp import no_delay
from .protocol import handshake, message, package, serializer
from .protocol.errors import ProtocolError
from .protocol.protobuf import Protos

log = Logger()

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
    @ivar closed: a Deferred firing with the close reason when the connection ends.
    """

    def __init__(self, clock: Any, sys: dict[str, Any] | None = None, user: Any = None,
                 heartbeat: bool = True, compress_routes: bool = True) -> None:
        self.clock = clock
        self._sys = dict(POMELO_HANDSHAKE if sys is None else sys)
        self._user = user
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
            C{compress_routes}).
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
        if tls:
            endpoint = endpoints.wrapClientTLS(
                ssl.CertificateOptions(verify=False), endpoints.TCP4ClientEndpoint(reactor, host, port, timeout)
            )
        else:
            endpoint = endpoints.TCP4ClientEndpoint(reactor, host, port, timeout)
        d = endpoint.connect(factory)
        d.addCallback(lambda _: client._ready)
        return d

    # The connection

    def _connected(self, send: Callable[[bytes], None], lose: Callable[[], None]) -> None:
        self._send = send
        self._lose = lose
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
            for listener in self._listeners.get(msg.route, ()):
                listener(value)
            for listener in self._listeners.get("*", ()):
                listener((msg.route, value))

    def _lost(self, reason: str) -> None:
        self._open = False
        for call in (self._heartbeat_call, self._timeout_call):
            if call is not None and call.active():
                call.cancel()
        if not self._ready.called:
            self._ready.errback(ClientError(f"connection closed before the handshake: {reason}"))
        pending, self._pending = self._pending, {}
        self._request_routes.clear()
        for d in pending.values():
            d.errback(ClientError(f"connection closed: {self.kick_reason or reason}"))
        if not self.closed.called:
            self.closed.callback(self.kick_reason or reason)

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


class _TCPClientLink(Protocol):
    def connectionMade(self) -> None:
        no_delay(self.transport)
        self.client: Client = self.factory.client  # type: ignore[attr-defined]
        self.client._connected(self.transport.write, self.transport.loseConnection)

    def dataReceived(self, data: bytes) -> None:
        self.client._data(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.client._lost("connection lost")


def masked_frame(data: bytes, mask: bytes) -> bytes:
    """
    C{data} as one final binary frame masked with the 4-byte C{mask}, as a
    client sends it (RFC 6455 section 5.3).
    """
    size = len(data)
    if size < 126:
        head = bytes((0x82, 0x80 | size))
    elif size < 0x10000:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
    keystream = (mask * (size // 4 + 1))[:size]
    masked = (int.from_bytes(data, "little") ^ int.from_bytes(keystream, "little")).to_bytes(size, "little")
    return head + mask + masked


def unmasked_frames(data: bytes) -> tuple[list[bytes], int]:
    """
    The payloads of the whole final, unmasked binary frames without RSV bits
    at the start of C{data} (what a server sends a Pomelo client), and where
    the first byte that is not one of them is: a partial frame, or any other
    frame (text, fragment, ping, close, a masked or an invalid one).
    """
    payloads = []
    offset, end = 0, len(data)
    while end - offset >= 2 and data[offset] == 0x82 and not data[offset + 1] & 0x80:
        size, start = data[offset + 1], offset + 2
        if size == 126:
            size, start = int.from_bytes(data[offset + 2:offset + 4], "big"), offset + 4
        elif size == 127:
            size, start = int.from_bytes(data[offset + 2:offset + 10], "big"), offset + 10
        if start + size > end:
            break
        payloads.append(data[start:start + size])
        offset = start + size
    return payloads, offset


class _WebSocketClientLink(WebSocketClientProtocol):
    """
    The client's WebSocket connection. Like gamenet's server link
    (L{gamenet.connector.websocket}), it skips Autobahn's generic per-message
    paths, which cost the load robot's clients more CPU than the rest of a
    request: C{sendMessage} (the frame is built here, masked with a fresh
    random key, as C{sendMessage} builds it with no extension), and, for
    the binary frames a server sends between Autobahn's own frames, its
    parser (L{unmasked_frames} takes them while Autobahn holds no partial
    frame or message; everything else goes to Autobahn, in order).
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        no_delay(self.transport)

    def onOpen(self) -> None:
        self.client: Client = self.factory.client  # type: ignore[attr-defined]
        self.client._connected(self._send, self.sendClose)

    def _send(self, data: bytes) -> None:
        if self.state == WebSocketClientProtocol.STATE_OPEN:
            self.transport.write(masked_frame(data, os.urandom(4)))

    def dataReceived(self, data: bytes) -> None:
        if (self.state == WebSocketClientProtocol.STATE_OPEN and not self.data and self.current_frame is None
                and not self.inside_message):
            payloads, used = unmasked_frames(data)
            if payloads:
                self.client._data(b"".join(payloads))
                data = data[used:]
        if data:
            self._dataReceived(data)

    def onMessageEnd(self) -> None:
        if not self.failedByMe:
            self.client._data(b"".join(self.message_data))
        self.message_data = None

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        client: Client | None = getattr(self, "client", None)
        if client is None:
            client = self.factory.client  # type: ignore[attr-defined]
        client._lost(reason or f"websocket closed ({code})")
