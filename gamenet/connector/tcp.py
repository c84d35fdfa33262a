"""
Raw TCP clients: Pomelo packages on a byte stream, as Pomelo's hybrid connector
and libpitaya's TCP transport send them.
"""

from __future__ import annotations

from typing import Any, Callable

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


class GatheredWrites:
    """
    Mixin for the protocol of a link: what it writes with L{_write} while a
    read is handled (the answers to the requests the read carried) goes to
    the transport in one write at the end of the read, as a plain Twisted
    echo server writes its answers. A C{transport.write} per answer costs
    about as much CPU as the rest of gamenet's handling of a small request
    (see doc/benchmarks.md).

    Writes made outside a read (pushes from timers or from other
    connections) go out at once. Whatever else the protocol does to the
    transport (closing, aborting, writing by another path) must call
    L{_flush} first, so that the transport sees it all in the order it was done.
    """

    transport: Any
    _gathered: list[bytes] | None = None

    def _gather(self, handle: Callable[[bytes], None], data: bytes) -> None:
        """
        Call C{handle(data)}, gathering what is written meanwhile.
        """
        self._gathered = gathered = []
        try:
            handle(data)
        finally:
            self._gathered = None
            if gathered:
                self.transport.write(b"".join(gathered))

    def _write(self, data: bytes) -> None:
        gathered = self._gathered
        if gathered is None:
            self.transport.write(data)
        else:
            gathered.append(data)

    def _flush(self) -> None:
        """
        Hand what was gathered so far to the transport.
        """
        gathered = self._gathered
        if gathered:
            data = b"".join(gathered)
            gathered.clear()
            self.transport.write(data)


class TCPLink(GatheredWrites, Protocol):
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

    def dataReceived(self, data: bytes) -> None:
        self._gather(self.connection.data_received, data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.connection.connection_lost()

    send = GatheredWrites._write

    def close(self) -> None:
        self._flush()
        # A transport does not close while a producer is registered (TLS waits for it).
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def abort(self) -> None:
        self._flush()
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
        return self.make(addr) if self.frontend.admit(addr) else None

    def make(self, addr: Any) -> TCPLink:
        """
        A link for a socket already admitted.
        """
        link = TCPLink(self.frontend, self.tls)
        link.factory = self
        return link
