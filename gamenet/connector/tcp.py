"""
Raw TCP clients: Pomelo packages on a byte stream, as Pomelo's hybrid connector
and libpitaya's TCP transport send them.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

from twisted.internet import tcp
from twisted.internet.error import ConnectionDone
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


T = TypeVar("T")
_SOCKETS = (tcp.Server, tcp.Client)  # the plain TCP transports: a client's, or a node link's either end


def write_now(transport: Any, data: bytes) -> None:
    """
    Write C{data} to the socket of a plain TCP C{transport} at once when it
    holds nothing unsent, and hand what the socket does not take (all of it
    on any error, which Twisted then meets and handles as usual) to
    C{transport.write}; any other transport (TLS, in memory) gets C{data}
    through C{write}. Twisted's C{write} only buffers: it registers the
    socket for writing, the reactor's next poll wakes it, it sends, and it
    unregisters it, two more system calls and a reactor event per write
    (see doc/benchmarks.md).
    """
    if (type(transport) in _SOCKETS and not transport._tempDataLen and transport.offset == len(transport.dataBuffer)
            and transport.connected and not transport.disconnecting and not transport.TLS
            and not transport._writeDisconnected):
        try:
            sent = transport.socket.send(data)
        except OSError:
            sent = 0
        if sent == len(data):
            return
        data = data[sent:]
    transport.write(data)


# The links whose writes are held while L{gathered} runs; None outside it.
_held: list[GatheredWrites] | None = None


def gathered(call: Callable[..., T], *args: Any) -> T:
    """
    Run C{call(*args)}, holding what every link writes meanwhile, and then
    write it, one socket write per link: the pushes and answers of one
    node-link batch (to each member of several rooms, or several answers to
    one client) leave each socket together, as Twisted's buffering would
    gather them.
    """
    global _held
    if _held is not None:
        return call(*args)
    _held = held = []
    try:
        return call(*args)
    finally:
        _held = None
        for link in held:
            link._release()


class GatheredWrites:
    """
    Mixin for the protocol of a link: what it writes with L{_write} while a
    read is handled (the answers to the requests the read carried) goes to
    the transport in one write at the end of the read, as a plain Twisted
    echo server writes its answers. A C{transport.write} per answer costs
    about as much CPU as the rest of gamenet's handling of a small request
    (see doc/benchmarks.md).

    Writes made while a node-link batch is handled (see L{gathered}) are
    held the same way until the batch ends; writes made outside both
    (pushes from timers or from other connections) go out at once. Each goes
    to the socket itself when Twisted holds nothing unsent for it (see
    L{write_now}). Whatever else the protocol does to the transport
    (closing, aborting, writing by another path) must call L{_flush} first,
    so that the transport sees it all in the order it was done.
    """

    transport: Any
    _gathered: list[bytes] | None = None

    def _gather(self, handle: Callable[[bytes], None], data: bytes) -> None:
        """
        Call C{handle(data)}, gathering what is written meanwhile.
        """
        if self._gathered is not None:  # held already: written when that ends
            handle(data)
            return
        self._gathered = gathered = []
        try:
            handle(data)
        finally:
            self._gathered = None
            if gathered:
                write_now(self.transport, b"".join(gathered))

    def _write(self, data: bytes) -> None:
        gathered = self._gathered
        if gathered is None:
            if _held is None:
                write_now(self.transport, data)
                return
            self._gathered = gathered = []
            _held.append(self)
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

    def _release(self) -> None:
        """
        The batch that held this link's writes is handled: write them.
        """
        gathered, self._gathered = self._gathered, None
        if gathered:
            write_now(self.transport, b"".join(gathered))


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
        # A FIN is the client closing; a reset or an error is the network
        # dropping it (a session then waits for resume, see gamenet.session.suspend).
        clean = reason is None or reason.check(ConnectionDone) is not None
        self.connection.connection_lost("client closed" if clean else "connection lost")

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
