"""
Sites over HTTP beside a server: the service that serves one on a port
(L{SiteListener}), and static files for a game's web client (L{WebListener}).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.web.server import Site
from twisted.web.static import File

from .listener import listen

log = Logger()


class SiteListener(Service):
    """
    Serves a twisted.web site on one port of a server.

    The port is opened in C{privilegedStartService}, so that a port in use
    (or, over TLS, a certificate that cannot be read) stops the server before
    it starts, with one line (a L{ListenError<gamenet.connector.listener.ListenError>});
    C{stopService} fires once the port is closed. A subclass says what it
    serves: L{site} makes the site, L{tls} its TLS options, L{what}, L{key}
    and L{path} name it in errors and logs.

    @ivar what: what the port serves, as in C{"cannot serve web files"}.
    @ivar key: the server key of the port, as in C{"web_port"}.
    @ivar path: the path logged after the port.
    """

    what = "serve HTTP"
    key = "http_port"
    path = "/"

    def __init__(self, server_id: str, host: str, port: int, reactor: Any) -> None:
        self.server_id = server_id
        self.host = host
        self.port_number = port
        self.reactor = reactor
        self.port: Any = None

    def site(self) -> Site:
        """
        The site to serve.
        """
        raise NotImplementedError

    def tls(self) -> Any:
        """
        TLS options for the port, or C{None} for plain HTTP.

        @raise ListenError: they cannot be made.
        """
        return None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        if self.port is None:
            self._listen()
        super().startService()

    def _listen(self) -> None:
        tls = self.tls()
        site = self.site()
        site.noisy = False
        self.port = listen(self.reactor, self.port_number, site, self.host,
                           f"[server:{self.server_id}] {self.key}: cannot {self.what}", tls)
        log.info("{server_id}: {what} on {url}", server_id=self.server_id, what=self.what,
                 url=f"{'https' if tls else 'http'}://{self.host}:{self.port.getHost().port}{self.path}")

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening) if port is not None else succeed(None)


class WebListener(SiteListener):
    """
    Serves the files under C{root} on C{port}.
    """

    what = "serve web files"
    key = "web_port"

    def __init__(self, server_id: str, root: str, host: str, port: int, reactor: Any) -> None:
        super().__init__(server_id, host, port, reactor)
        self.root = root

    def site(self) -> Site:
        return Site(File(self.root))
