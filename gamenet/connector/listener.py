"""
The client port of a frontend: the service that listens and picks the connector.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from ..config import ServerConfig
from .frontend import Frontend
from .hybrid import HybridFactory
from .tcp import TCPFactory
from .tls import server_context
from .websocket import WebSocketFactory

log = Logger()

_FACTORIES = {"hybrid": HybridFactory, "websocket": WebSocketFactory, "tcp": TCPFactory}


class ListenError(Exception):
    """
    A port could not be opened.
    """


def listen(reactor: Any, port: int, factory: Factory, interface: str, what: str, tls: Any = None) -> Any:
    """
    Open a TCP port, with TLS when C{tls} options are given.

    @param what: the start of the error message, e.g. C{"chat-1: cannot listen for clients"}.
    @raise ListenError: it cannot be opened; the message says why.
    """
    try:
        if tls is not None:
            return reactor.listenSSL(port, factory, tls, backlog=511, interface=interface)
        return reactor.listenTCP(port, factory, backlog=511, interface=interface)
    except CannotListenError as e:
        raise ListenError(f"{what} on {interface}:{port}: {e.socketError}") from None


class _TLSFactory(TLSMemoryBIOFactory):
    """
    TLS around a factory that refuses a connection by building no protocol.
    """

    def buildProtocol(self, addr: Any) -> TLSMemoryBIOProtocol | None:
        protocol = self.wrappedFactory.buildProtocol(addr)
        return None if protocol is None else self.protocol(self, protocol)


def client_factory(frontend: Frontend) -> Factory:
    """
    The factory for a frontend's client port: its transport, wrapped in TLS
    when a certificate is configured.
    """
    options = frontend.options
    tls = bool(options.tls_cert)
    factory: Factory = _FACTORIES[options.transport](frontend, tls)
    if tls:
        factory = _TLSFactory(server_context(options.tls_cert, options.tls_key), False, factory)
    return factory


class ClientListener(Service):
    """
    Listens for clients on a frontend's client port.

    The port is opened in C{privilegedStartService}, so that a port in use stops
    the server before it starts rather than leaving it running deaf, but
    connections are accepted only from C{startService} on, once the
    application's components are ready.
    """

    def __init__(self, server: ServerConfig, frontend: Frontend, reactor: Any, interface: str = "") -> None:
        self.server = server
        self.frontend = frontend
        self.reactor = reactor
        self.interface = interface or server.host
        self.port: Any = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()
        # A real TCP port can stop accepting for a while (not every
        # IListeningPort can: a test reactor's cannot, and need not).
        getattr(self.port, "stopReading", lambda: None)()

    def startService(self) -> None:
        if self.port is None:
            self._listen()
        else:
            getattr(self.port, "startReading", lambda: None)()
        super().startService()
        self.frontend.start()

    def _listen(self) -> None:
        self.port = listen(self.reactor, self.server.client_port, client_factory(self.frontend), self.interface,
                           f"{self.server.id}: cannot listen for clients")
        log.info(
            "{server_id} listening for clients ({transport}{tls}) on {host}:{port}",
            server_id=self.server.id, transport=self.frontend.options.transport,
            tls="+tls" if self.frontend.options.tls_cert else "", host=self.interface,
            port=self.port.getHost().port,
        )

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        port, self.port = self.port, None
        d = maybeDeferred(port.stopListening) if port is not None else succeed(None)
        d.addCallback(lambda _: self.frontend.stop())
        return d
