"""
The master's admin service: the admin API over HTTP (klein) and the
dashboard, on C{admin_host:admin_port}; see C{doc/operations.md}.

L{AdminService} is a child of L{gamenet.cluster.master.MasterService},
started only when C{admin_port} is set; the work is in L{gamenet.admin.fleet}
(what the master knows and does), C{_api} (the routes) and C{_resource}
(token, JSON, errors).
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.logger import Logger
from twisted.web.server import Site

from ..connector.listener import ListenError, listen
from ..connector.tls import certificate_problem, server_context
from ..storage.blocked import block_store
from ._api import DASHBOARD, AdminApi
from .fleet import Fleet
from .interfaces import IFleet

__all__ = ["AdminService", "Fleet", "IFleet"]

log = Logger()


class _Site(Site):
    """
    A site without an access log: the dashboard's polls would fill the
    master's log; the API logs refused calls and changes itself.
    """

    def log(self, request: Any) -> None:
        pass


class AdminService(Service):
    """
    Serves the admin API and the dashboard for a master.

    The port is opened in C{privilegedStartService}, so that a port in use
    (or a certificate that cannot be read) ends the master's start with one
    line, before any server is started; the fleet follows the servers from
    C{startService} on.

    @ivar fleet: the master's view of its servers.
    """

    name = "admin"

    def __init__(self, master: Any, dashboard: str = DASHBOARD) -> None:
        self.master = master
        self.reactor = master.reactor
        self.store = block_store(master.cluster, self.reactor)
        self.fleet = Fleet(master, self.reactor, self.store)
        self.dashboard = dashboard
        self.port: Any = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        cluster = self.master.cluster
        tls = None
        if cluster.admin_tls_cert:
            try:
                tls = server_context(cluster.admin_tls_cert, cluster.admin_tls_key)
            except (OSError, ValueError) as e:
                raise SystemExit(f"gamenet: {cluster.path} " + certificate_problem(
                    e, "[cluster]", "admin_tls_cert", "admin_tls_key", cluster.admin_tls_key)) from None
        site = _Site(AdminApi(self.fleet, self.dashboard).resource(cluster.admin_token))
        site.displayTracebacks = False
        site.noisy = False
        try:
            self.port = listen(self.reactor, cluster.admin_port, site, cluster.admin_host,
                               f"{cluster.path} [cluster] admin_port: the admin API cannot listen", tls)
        except ListenError as e:
            raise SystemExit(f"gamenet: {e}") from None

    def startService(self) -> None:
        super().startService()
        self.fleet.watch()
        cluster = self.master.cluster
        scheme = "https" if cluster.admin_tls_cert else "http"
        host = f"[{cluster.admin_host}]" if ":" in cluster.admin_host else cluster.admin_host
        log.info("admin API and dashboard on {url}", url=f"{scheme}://{host}:{self.port.getHost().port}/")

    def stopService(self) -> Deferred[None]:  # type: ignore[override]
        super().stopService()
        self.fleet.unwatch()
        port, self.port = self.port, None
        d = maybeDeferred(port.stopListening) if port is not None else succeed(None)
        d.addCallback(lambda _: self.store.close())
        return d.addCallback(lambda _: None)
