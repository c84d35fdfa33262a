"""
The links a L{Client<gamenet.client.Client>} talks over: TCP, and WebSocket
with its own framing of binary frames. Tested in C{tests/test_client.py}.
"""

from __future__ import annotations

import os
import struct
from typing import TYPE_CHECKING

from autobahn.twisted.websocket import WebSocketClientProtocol
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from ..connector.tcp import no_delay

if TYPE_CHECKING:
    from ._client import Client


class _TCPClientLink(Protocol):
    def connectionMade(self) -> None:
        no_delay(self.transport)
        self.client: Client = self.factory.client  # type: ignore[attr-defined]
        self.client._connected(self.transport.write, self.transport.loseConnection, self.transport.abortConnection)

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
        self.client._connected(self._send, self.sendClose, self.transport.abortConnection)

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
