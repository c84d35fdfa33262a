"""
WebSocket clients through Autobahn: each binary message carries one or more
Pomelo packages, as the Pomelo, pinus and Pitaya web clients send them.
"""

from __future__ import annotations

import struct
from typing import Any

from fnmatch import fnmatchcase

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.logger import Logger
from twisted.python.failure import Failure

from .connection import Connection
from .frontend import Frontend
from .tcp import GatheredWrites, no_delay

log = Logger()


def binary_frame(data: bytes) -> bytes:
    """
    C{data} as one final, unmasked binary frame (RFC 6455 section 5.2), the
    bytes Autobahn's C{sendMessage} writes for it when no extension is in use
    and messages are not fragmented.
    """
    size = len(data)
    if size < 126:
        return bytes((0x82, size)) + data
    if size < 0x10000:
        return struct.pack("!BBH", 0x82, 126, size) + data
    return struct.pack("!BBQ", 0x82, 127, size) + data


class WebSocketLink(GatheredWrites, WebSocketServerProtocol):
    """
    A WebSocket client connection.

    Each package write is its own frame; the frames written while one read
    is handled go out in one transport write (see L{GatheredWrites}).
    Autobahn's own writes (handshake, pongs, close frames) and closes go
    through L{sendData} and L{_closeConnection}, which hand the gathered
    frames to the transport first.
    """

    connection: Connection
    factory: WebSocketFactory

    def connectionMade(self) -> None:
        super().connectionMade()
        address = self.transport.getPeer()
        self.peer = (getattr(address, "host", ""), getattr(address, "port", 0))
        self.transport_name = "websocket+tls" if self.factory.tls else "websocket"
        # Autobahn's own tcpNoDelay option does not reach the socket here.
        no_delay(self.transport)
        self.connection = Connection(self.factory.frontend, self)
        self.transport.registerProducer(self.connection, True)

    def onConnect(self, request: Any) -> None:
        """
        Refuse a browser whose C{Origin} matches none of C{allowed_origins}
        with HTTP 403; clients that send no C{Origin} (native SDKs) pass.
        """
        patterns = self.factory.frontend.options.allowed_origins
        origin = request.headers.get("origin")
        if origin is None or "*" in patterns:
            return
        if not any(fnmatchcase(origin, pattern) for pattern in patterns):
            self.factory.frontend.metrics["origins_refused"] += 1
            log.info("refused WebSocket from {peer}: origin {origin} not allowed", peer=self.peer, origin=origin)
            raise ConnectionDeny(403, "origin not allowed")

    def dataReceived(self, data: bytes) -> None:
        """
        Bytes from the socket, to L{_frames}.

        Not through Autobahn's C{dataReceived}: it adds only a debug log call
        whose arguments it formats on every read, even with debug logging
        off, which costs more CPU than gamenet's decoding of a request.
        """
        self._gather(self._frames, data)

    def _frames(self, data: bytes) -> None:
        """
        Hand the connection each message of C{data} that is one whole, final,
        masked binary frame of at most C{max_ws_message_size} bytes (every
        message of a Pomelo client, one package or more), unmasked here, and
        the rest of C{data}, from the first frame that is anything else
        (a control frame, a fragment, a part of a frame, a frame too large or
        not valid), to Autobahn's parser, which checks and handles it as
        usual. Autobahn's own path builds a frame object and a C-accelerated
        unmasker per frame, and joins the payload: per request, about as
        much CPU as the rest of gamenet's handling of an echo (see
        doc/benchmarks.md).

        Only between frames with the connection open: while Autobahn holds
        part of a frame or a fragmented message, every byte goes to it.
        """
        if (self.state != WebSocketServerProtocol.STATE_OPEN or self.data or self.current_frame is not None
                or self.inside_message):
            self._dataReceived(data)
            return
        limit = self.maxMessagePayloadSize
        size, start = len(data), 0
        while size - start >= 6 and self.state == WebSocketServerProtocol.STATE_OPEN:
            if data[start] != 0x82 or data[start + 1] < 0x80:  # FIN and binary; masked
                break
            length, head = data[start + 1] & 0x7F, start + 6
            if length >= 126:
                head += 2
                if length == 127 or head > size:
                    break
                length = int.from_bytes(data[start + 2:start + 4], "big")
                if length < 126:  # not minimal: a protocol violation, Autobahn's to report
                    break
            end = head + length
            if end > size or 0 < limit < length:
                break
            mask = int.from_bytes(data[head - 4:head] * (length // 4 + 1), "little") & ((1 << 8 * length) - 1)
            start = end
            self.connection.data_received((int.from_bytes(data[head:end], "little") ^ mask).to_bytes(length, "little"))
        if start < size:
            self._dataReceived(data[start:] if start else data)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        self._flush()
        super().sendData(data, sync, chopsize)

    def _closeConnection(self, abort: bool = False) -> None:
        self._flush()
        super()._closeConnection(abort)

    def onMessageEnd(self) -> None:
        """
        A whole message has arrived: hand its bytes to the connection.

        Replaces Autobahn's C{onMessageEnd}, which passes the message to
        C{onMessage} and then fires a C{"message"} event for the protocol's
        observers (gamenet registers none) through a C{DeferredList} and an
        errback: per message, about as much CPU as the rest of gamenet's
        handling of an echo request (see doc/benchmarks.md).
        """
        if not self.failedByMe:
            self.connection.data_received(b"".join(self.message_data))
        self.message_data = None

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        super().connectionLost(reason)
        # Without a closing handshake the network dropped the client (see gamenet.session.suspend).
        self.connection.connection_lost("client closed" if getattr(self, "wasClean", False) else "connection lost")

    def send(self, data: bytes) -> None:
        # The frame is built here rather than by sendMessage, whose generic
        # path (compression, fragmentation, debug logging) costs about as much
        # CPU as the rest of gamenet's handling of a request (see
        # doc/benchmarks.md). The bytes are the same: WebSocketFactory
        # negotiates no extension and never fragments.
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self._write(binary_frame(data))

    def close(self) -> None:
        if self.state == WebSocketServerProtocol.STATE_OPEN:
            self.sendClose(1000)
        else:
            self.dropConnection(abort=False)

    def abort(self) -> None:
        self._flush()
        self.transport.abortConnection()


class WebSocketFactory(WebSocketServerFactory):
    """
    Makes L{WebSocketLink}s for one frontend, with its limits applied to Autobahn
    (whose own defaults are unlimited).
    """

    protocol = WebSocketLink

    def __init__(self, frontend: Frontend, tls: bool = False) -> None:
        super().__init__()
        self.frontend = frontend
        self.tls = tls
        self.noisy = False
        options = frontend.options
        self.setProtocolOptions(
            maxMessagePayloadSize=options.max_ws_message_size,
            maxFramePayloadSize=options.max_ws_message_size,
            openHandshakeTimeout=options.handshake_timeout,
            closeHandshakeTimeout=1,
            autoPingInterval=0,
            failByDrop=False,
            # WebSocketLink.send writes plain frames: keep both off.
            perMessageCompressionAccept=lambda offers: None,
            autoFragmentSize=0,
        )

    def buildProtocol(self, addr: Any) -> WebSocketLink | None:
        return self.make(addr) if self.frontend.admit(addr) else None

    def make(self, addr: Any) -> WebSocketLink:
        """
        A link for a socket already admitted.
        """
        return super().buildProtocol(addr)  # type: ignore[no-any-return]
