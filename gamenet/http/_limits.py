"""
HTTP limits at the connection: header size, body size, the time a request
may take to arrive, and how many connections are open at once. Each refusal
is a JSON answer with its status, then the connection is closed. Tested in
C{tests/test_http_limits.py}.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource
from twisted.web.server import Site

from ..config import HttpOptions

log = Logger()


def refusal(status: int, message: str) -> bytes:
    """
    A whole HTTP response refusing a request, closing the connection; its
    body is a gamenet error, C{{"code": status, "message": message}}.
    """
    body = json.dumps({"code": status, "message": message}).encode("utf-8")
    return (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode("ascii") + body


class _LimitedChannel(HTTPChannel):
    """
    An HTTP/1.1 channel enforcing its site's limits.
    """

    site: LimitedSite
    _deadline: Any = None
    _begun = False
    _body = 0
    _refused = False

    def connectionMade(self) -> None:
        super().connectionMade()
        self.MAX_LENGTH = self.totalHeadersSize = self.site.limits.max_header_size
        self._arm()

    def _arm(self) -> None:
        self._begun = False
        self._deadline = self.callLater(self.site.limits.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if self._begun:
            self._refuse(408, f"the request did not arrive within {self.site.limits.request_timeout:g} s")
        else:
            self.loseConnection()

    def _refuse(self, status: int, message: str) -> None:
        if self._refused:
            return
        self._refused = True
        self._disarm()
        log.info("HTTP {status} to {peer}: {message}", status=status, message=message,
                 peer=getattr(self.transport.getPeer(), "host", "?"))
        self.transport.write(refusal(status, message))
        self.dataReceived = lambda data: None  # type: ignore[method-assign]
        self.loseConnection()

    def dataReceived(self, data: bytes) -> None:
        self._begun = self._begun or self._deadline is not None
        super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        if self._receivedHeaderSize + len(line) > self.site.limits.max_header_size:
            self._refuse(431, f"the request's headers exceed {self.site.limits.max_header_size} bytes")
            return
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse(431, f"the request's headers exceed {self.site.limits.max_header_size} bytes")

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        self._body = 0
        if self.length is not None and self.length > self.site.limits.max_body_size:
            self._refuse(413, f"the body exceeds {self.site.limits.max_body_size} bytes")

    def rawDataReceived(self, data: bytes) -> None:
        if not self._handlingRequest:
            # A chunked body's size is counted with its chunk framing.
            self._body += len(data)
            if self._body > self.site.limits.max_body_size:
                self._refuse(413, f"the body exceeds {self.site.limits.max_body_size} bytes")
                return
        super().rawDataReceived(data)

    def allContentReceived(self) -> None:
        self._disarm()
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and not self._refused and self._deadline is None:
            self._arm()

    def connectionLost(self, reason: Any) -> None:
        self._disarm()
        self.site.open -= 1
        super().connectionLost(reason)


class _Busy(Protocol):
    """
    Answers 503 and closes: a connection beyond C{max_connections}.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def connectionMade(self) -> None:
        self.transport.write(refusal(503, f"too many connections (at most {self.limit})"))
        self.transport.loseConnection()


class LimitedSite(Site):
    """
    A L{Site} whose connections enforce the limits of a server's
    L{HttpOptions}, without an access log (handlers log what matters; errors
    are logged where they happen):

     - C{max_body_size}: bytes a request body may have (413 beyond, as soon
       as C{Content-Length} says so, or as a chunked body passes it);
     - C{max_header_size}: bytes the request line and headers may have
       together (431 beyond);
     - C{request_timeout}: seconds from a request's first byte (or the
       connection's, or the previous answer's) until it has fully arrived
       (408 beyond, and the connection is closed); also how long an idle
       connection is kept;
     - C{max_connections}: connections open at once; one more is answered
       503 and closed.

    @ivar limits: those options.
    @ivar open: connections open now.
    """

    protocol = _LimitedChannel  # type: ignore[assignment]

    def __init__(self, resource: IResource, limits: HttpOptions, reactor: Any = None) -> None:
        super().__init__(resource, timeout=limits.request_timeout, reactor=reactor)
        self.limits = limits
        self.open = 0
        self.displayTracebacks = False
        self.noisy = False

    def buildProtocol(self, addr: Any) -> Any:
        if self.open >= self.limits.max_connections:
            log.warn("HTTP connection from {peer} refused: {open} open, at most {limit}",
                     peer=getattr(addr, "host", "?"), open=self.open, limit=self.limits.max_connections)
            return _Busy(self.limits.max_connections)
        self.open += 1
        return super().buildProtocol(addr)

    def log(self, request: Any) -> None:
        pass
