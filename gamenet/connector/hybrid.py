"""
WebSocket and raw TCP on one port, told apart by the first byte, as Pomelo's
hybrid connector does: a Pomelo package starts with a type byte 0x01-0x05, an
HTTP upgrade request with a printable letter.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from .frontend import Frontend
from .tcp import TCPFactory
from .websocket import WebSocketFactory


class Switcher(Protocol):
    """
    Reads the first bytes of a socket, then hands it to the WebSocket or TCP protocol.
    """

    def __init__(self, factory: HybridFactory, addr: Any) -> None:
        self.factory = factory
        self.addr = addr

    def connectionMade(self) -> None:
        self.factory.frontend.pending[self] = self.factory.frontend.tick

    def dataReceived(self, data: bytes) -> None:
        frontend = self.factory.frontend
        frontend.pending.pop(self, None)
        chosen = self.factory.tcp if data[0] < 0x20 else self.factory.websocket
        protocol = chosen.make(self.addr)
        protocol.makeConnection(self.transport)
        self.dataReceived = protocol.dataReceived  # type: ignore[method-assign]
        self.connectionLost = protocol.connectionLost  # type: ignore[method-assign]
        protocol.dataReceived(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.frontend.pending.pop(self, None)


class HybridFactory(Factory):
    """
    Makes L{Switcher}s for one frontend.
    """

    def __init__(self, frontend: Frontend, tls: bool = False) -> None:
        self.frontend = frontend
        self.noisy = False
        self.tcp = TCPFactory(frontend, tls)
        self.websocket = WebSocketFactory(frontend, tls)

    def buildProtocol(self, addr: Any) -> Switcher | None:
        if not self.frontend.admit(addr):
            return None
        return Switcher(self, addr)
