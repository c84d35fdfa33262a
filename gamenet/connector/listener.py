"""
The client port of a frontend: the service that listens and picks the connector.
"""

from __future__ import annotations

import socket
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred, succeed
from twisted.internet.abstract import isIPv6Address
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from ..config import ServerConfig
from ..storage.blocked import BlockStore
from .frontend import Frontend
from .hybrid import HybridFactory
from .tcp import TCPFactory
from .tls import certificate_problem, server_context
from .websocket import WebSocketFactory

log = Logger()

_FACTORIES = {"hybrid": HybridFactory, "websocket": WebSocketFactory, "tcp": TCPFactory}


class ListenError(Exception):
    """
    A port could not be opened.
    """


def listen(reactor: Any, port: int, factory: Factory, interface: str, what: str, tls: Any = None,
           reuse_port: bool = False) -> Any:
    """
    Open a TCP port, with TLS when C{tls} options are given.

    @param what: the start of the error message, naming the key of the port, e.g.
        C{"[server:chat-1] client_port: cannot listen for clients"}.
    @param reuse_port: share the port with other sockets that set
        C{SO_REUSEPORT} too (other processes of the same user, or other
        ports of this one); the kernel spreads new connections among them.
    @raise ListenError: it cannot be opened; the message says why.
    """
    try:
        if reuse_port:
            if tls is not None:
                factory = TLSMemoryBIOFactory(tls, False, factory)
            return _listen_shared(reactor, port, factory, interface)
        if tls is not None:
            return reactor.listenSSL(port, factory, tls, backlog=511, interface=interface)
        return reactor.listenTCP(port, factory, backlog=511, interface=interface)
    except CannotListenError as e:
        raise ListenError(f"{what} on {interface}:{port}: {e.socketError}") from None


def _listen_shared(reactor: Any, port: int, factory: Factory, interface: str) -> Any:
    """
    C{listenTCP} with C{SO_REUSEPORT}, which C{listenTCP} cannot set: the
    socket is bound and listening here, then adopted by the reactor
    (C{IReactorSocket.adoptStreamPort}), which keeps its own copy.

    @raise CannotListenError: it cannot be opened, or this system has no C{SO_REUSEPORT}.
    """
    family = socket.AF_INET6 if isIPv6Address(interface) else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise OSError("this system has no SO_REUSEPORT (reuse_port)")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((interface, port))
            sock.listen(511)
        except OSError as e:
            raise CannotListenError(interface, port, e) from None
        sock.setblocking(False)
        return reactor.adoptStreamPort(sock.fileno(), family, factory)


class _TLSFactory(TLSMemoryBIOFactory):
    """
    TLS around a factory that refuses a connection by building no protocol.
    """

    def buildProtocol(self, addr: Any) -> TLSMemoryBIOProtocol | None:
        protocol = self.wrappedFactory.buildProtocol(addr)
        return None if protocol is None else self.protocol(self, protocol)


def client_factory(frontend: Frontend, transport: str | None = None) -> Factory:
    """
    The factory for a frontend's client port: C{transport} (by default its
    C{transport} option), wrapped in TLS when a certificate is configured.
    """
    options = frontend.options
    tls = bool(options.tls_cert)
    factory: Factory = _FACTORIES[transport or options.transport](frontend, tls)
    if tls:
        factory = _TLSFactory(server_context(options.tls_cert, options.tls_key), False, factory)
    return factory


class ClientListener(Service):
    """
    Listens for clients on a frontend's client port, and on its C{tcp_port}
    and C{ws_port} (one transport each, as mqant's gate) when it has them.

    The ports are opened in C{privilegedStartService}, so that a port in use stops
    the server before it starts rather than leaving it running deaf, but
    connections are accepted only from C{startService} on, once the
    application's components are ready and the block list is loaded.

    With the C{reuse_port} option, every port is opened with C{SO_REUSEPORT},
    so that several frontend processes of one type serve one client port.

    @ivar port: the client port, once open.
    @ivar extra_ports: the open C{tcp_port} and C{ws_port}, by transport.
    """

    def __init__(self, server: ServerConfig, frontend: Frontend, reactor: Any, interface: str = "",
                 blocked: BlockStore | None = None) -> None:
        """
        @param blocked: where the cluster's block list is kept; none, no block list.
        """
        self.server = server
        self.frontend = frontend
        self.reactor = reactor
        self.interface = interface or server.host
        self.blocked = blocked
        self.port: Any = None
        self.extra_ports: dict[str, Any] = {}
        self._loading: Deferred[Any] | None = None

    def _ports(self) -> list[Any]:
        return [port for port in (self.port, *self.extra_ports.values()) if port is not None]

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()
        # A real TCP port can stop accepting for a while (not every
        # IListeningPort can: a test reactor's cannot, and need not).
        for port in self._ports():
            getattr(port, "stopReading", lambda: None)()

    def startService(self) -> None:
        if self.port is None:
            self._listen()
            for port in self._ports():
                getattr(port, "stopReading", lambda: None)()
        super().startService()
        self.frontend.start()
        self._loading = loaded = self.blocked.load() if self.blocked is not None else succeed([])
        loaded.addCallbacks(self._blocked_loaded, self._blocked_failed).addCallback(self._accept)

    def _blocked_loaded(self, networks: list[str]) -> None:
        try:
            self.frontend.set_blocked(networks)
        except ValueError as e:
            log.error("{server_id}: the stored block list is not used: {error}", server_id=self.server.id, error=e)

    def _blocked_failed(self, failure: Any) -> None:
        if failure.check(CancelledError):
            return
        log.error("{server_id}: cannot load the block list; accepting clients without it: {error}",
                  server_id=self.server.id, error=failure.getErrorMessage())

    def _accept(self, _: Any = None) -> None:
        if self.running:
            for port in self._ports():
                getattr(port, "startReading", lambda: None)()

    def _listen(self) -> None:
        self.port = self._open("client_port", self.server.client_port, self.frontend.options.transport, "clients")
        for key, transport, number in (("tcp_port", "tcp", self.server.tcp_port),
                                       ("ws_port", "websocket", self.server.ws_port)):
            if number:
                self.extra_ports[transport] = self._open(key, number, transport, f"{transport} clients")

    def _open(self, key: str, number: int, transport: str, what: str) -> Any:
        try:
            port = listen(self.reactor, number, self._factory(transport), self.interface,
                          f"[server:{self.server.id}] {key}: cannot listen for {what}",
                          reuse_port=self.frontend.options.reuse_port)
        except ListenError:
            self._close_all()
            raise
        log.info(
            "{server_id} listening for clients ({transport}{tls}{shared}) on {host}:{port}",
            server_id=self.server.id, transport=transport,
            tls="+tls" if self.frontend.options.tls_cert else "",
            shared=", shared with reuse_port" if self.frontend.options.reuse_port else "", host=self.interface,
            port=port.getHost().port,
        )
        return port

    def _factory(self, transport: str) -> Factory:
        """
        L{client_factory} for C{transport}.

        @raise ListenError: the certificate or key cannot be used; the message names the key.
        """
        try:
            return client_factory(self.frontend, transport)
        except (OSError, ValueError) as e:
            raise ListenError(certificate_problem(e, f"[server:{self.server.id}]", "tls_cert", "tls_key",
                                                  self.frontend.options.tls_key)) from None

    def _close_all(self) -> Deferred[Any]:
        """
        Close every port opened; fires once they are closed.
        """
        ports = self._ports()
        self.port, self.extra_ports = None, {}
        return DeferredList([maybeDeferred(port.stopListening) for port in ports])

    def stop_accepting(self) -> Deferred[Any]:
        """
        Close the client ports, so that new connections are refused while
        the connected clients stay.

        @return: a Deferred firing once the ports are closed.
        """
        if self.port is None:
            return succeed(None)
        log.info("{server_id} stopped accepting clients", server_id=self.server.id)
        return self._close_all()

    def stopService(self) -> Deferred[Any]:
        super().stopService()
        if self._loading is not None and not self._loading.called:
            self._loading.cancel()
        d = self._close_all()
        d.addCallback(lambda _: self.frontend.stop())
        if self.blocked is not None:
            d.addCallback(lambda _: self.blocked.close())
        return d
