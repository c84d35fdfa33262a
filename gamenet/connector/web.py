"""
Static files over HTTP beside a frontend, for a game's web client.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.web.server import Site
from twisted.web.static import File

from .listener import ListenError

log = Logger()


class WebListener(Service):
    """
    Serves the files under C{root} on C{port}.
    """

    def __init__(self, server_id: str, root: str, host: str, port: int, reactor: Any) -> None:
        self.server_id = server_id
        self.root = root
        self.host = host
        self.port_number = port
        self.reactor = reactor
        self.port: Any = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        self._listen()

    def startService(self) -> None:
        if self.port is None:
            self._listen()
        super().startService()

    def _listen(self) -> None:
        site = Site(File(self.root))
        site.noisy = False
        try:
            self.port = self.reactor.listenTCP(self.port_number, site, interface=self.host)
        except CannotListenError as e:
            raise ListenError(f"{self.server_id}: cannot serve web files on {self.host}:{self.port_number}: "
                              f"{e.socketError}") from None
        log.info("{server_id} serving {root} on http://{host}:{port}/", server_id=self.server_id, root=self.root,
                 host=self.host, port=self.port.getHost().port)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening) if port is not None else succeed(None)
