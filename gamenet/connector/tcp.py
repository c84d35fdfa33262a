"""
Raw TCP clients: Pomelo packages on a byte stream, as Pomelo's hybrid connector
and libpitaya's TCP transport send them.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from .connection import Connection
from .frontend import Frontend


def no_delay(transport: Any) -> None:
    """
    Turn off Nagle's algorithm on the TCP socket under C{transport} (through
    a TLS wrapper if there is one): small packages go out at once instead of
    waiting up to a delayed ACK (40 ms on Linux).
    """
    while transport is not None and not hasattr(transport, "setTcpNoDelay"):
        transport = getattr(transport, "transport", None)
    if transport is not None:
        transport.setTcpNoDelay(True)


class TCPLink(Protocol):
    """
    A raw TCP client connection.
    """

    connection: Connection

    def __init__(self, frontend: Frontend, tls: bool) -> None:
        self.frontend = frontend
        self.transport_name = "tcp+tls" if tls else "tcp"
        self.peer = ("", 0)

    def connectionMade(self) -> None:
        address = self.transport.getPeer()
        self.peer = (getattr(address, "host", ""), getattr(address, "port", 0))
        no_delay(self.transport)
        self.connection = Connection(self.frontend, self)
        self.transport.registerProducer(self.connection, True)
        self.dataReceived = self.connection.data_received  # type: ignore[method-assign]
        self.send = self.transport.write  # type: ignore[method-assign]

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connection.connection_lost()

    def send(self, data: bytes) -> None:
        self.transport.write(data)

    def close(self) -> None:
        # A transport does not close while a producer is registered (TLS waits for it).
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def abort(self) -> None:
        self.transport.abortConnection()


class TCPFactory(Factory):
    """
    Makes L{TCPLink}s for one frontend, refusing connections over its limit.
    """

    def __init__(self, frontend: Frontend, tls: bool = False) -> None:
        self.frontend = frontend
        self.tls = tls
        self.noisy = False

    def buildProtocol(self, addr: Any) -> TCPLink | None:
        return self.make(addr) if self.frontend.admit() else None

    def make(self, addr: Any) -> TCPLink:
        """
        A link for a socket already admitted.
        """
        link = TCPLink(self.frontend, self.tls)
        link.factory = self
        return link
