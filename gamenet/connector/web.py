"""
Static files over HTTP beside a frontend, for a game's web client.
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
        self.port = listen(self.reactor, self.port_number, site, self.host, f"{self.server_id}: cannot serve web files")
        log.info("{server_id} serving {root} on http://{host}:{port}/", server_id=self.server_id, root=self.root,
                 host=self.host, port=self.port.getHost().port)

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening) if port is not None else succeed(None)
