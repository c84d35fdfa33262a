"""
HTTP services the GoFrame way, on any server: handlers bound to URI
patterns as functions, objects, REST objects and per-request controllers,
bound to domains, with hook events around them; see C{doc/http.md}.

C{app.http} is the server's L{HttpRoutes}; L{HttpService} serves it on the
server's C{http_port}. The work is in C{_patterns} (GoFrame patterns over
werkzeug's routing), C{_registry} (the modes and hooks), C{_plugins} (the
same as plugin registrations), C{_request}
(L{HttpRequest}), C{_resource} (dispatch and errors) and C{_limits}.
Tested in C{tests/test_http.py}, C{tests/test_http_goframe.py},
C{tests/test_http_limits.py} and C{tests/test_http_chat.py}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.web.resource import IResource

from ..config import ServerConfig
from ..connector.listener import ListenError
from ..connector.tls import certificate_problem, server_context
from ..connector.web import SiteListener
from ._limits import LimitedSite
from ._patterns import Pattern, parse
from ._plugins import http_controller, http_handler, http_hook, http_object
from ._registry import EVENTS, HttpRoutes, uri_name
from ._request import HttpRequest
from ._resource import HttpResource, MethodNotAllowed

if TYPE_CHECKING:
    from ..app import Application

__all__ = [
    "EVENTS",
    "Controller",
    "HttpRequest",
    "HttpResource",
    "HttpRoutes",
    "HttpService",
    "LimitedSite",
    "MethodNotAllowed",
    "Pattern",
    "attach",
    "http_controller",
    "http_handler",
    "http_hook",
    "http_object",
    "parse",
    "uri_name",
]


class Controller:
    """
    A convenient base for controllers (L{HttpRoutes.bind_controller}): made
    with the app for one request, it keeps the request from C{init}.

    @ivar app: the Application.
    @ivar request: the L{HttpRequest} being served, from C{init} on.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.request: HttpRequest | None = None

    def init(self, request: HttpRequest) -> None:
        """
        Called before the method.
        """
        self.request = request

    def shut(self, request: HttpRequest) -> None:
        """
        Called after the method, even when it raised.
        """


class HttpService(SiteListener):
    """
    Serves a server's HTTP routes on C{http_host:http_port}, over TLS when
    C{http_tls_cert} is set, with the limits of its C{http_*} keys.
    """

    name = "http"
    what = "serve HTTP"
    key = "http_port"

    def __init__(self, server: ServerConfig, resource: IResource, reactor: Any) -> None:
        super().__init__(server.id, server.http.host or server.host, server.http.port, reactor)
        self.server = server
        self.resource = resource

    def tls(self) -> Any:
        options = self.server.http
        if not options.tls_cert:
            return None
        try:
            return server_context(options.tls_cert, options.tls_key)
        except (OSError, ValueError) as e:
            raise ListenError(certificate_problem(e, f"[server:{self.server.id}]", "http_tls_cert", "http_tls_key",
                                                  options.tls_key)) from None

    def site(self) -> LimitedSite:
        return LimitedSite(self.resource, self.server.http, self.reactor)


def attach(app: Application) -> HttpRoutes:
    """
    Make C{app.http}, the server's route table, and serve it on the
    server's C{http_port} as a child service (none when that is 0).
    """
    routes = HttpRoutes(app)
    if app.server.http.port:
        HttpService(app.server, HttpResource(routes, app.server_id), app.reactor).setServiceParent(app)
    return routes
