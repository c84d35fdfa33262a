"""
C{/metrics} over HTTP: the Prometheus text exposition of one registry.
Tested by L{tests.test_metrics_export}.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request, Site

from ..connector.web import SiteListener


class _Exposition(Resource):
    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        # In the reactor thread, unlike prometheus_client.twisted's resource
        # (a WSGI app in a thread pool): the collectors read live state that
        # only the reactor thread may touch.
        encoder, content_type = choose_encoder(request.getHeader("accept") or "")
        request.setHeader("Content-Type", content_type)
        return encoder(self.registry)


def metrics_resource(registry: CollectorRegistry) -> IResource:
    """
    A resource serving C{registry} at C{/metrics} (the Prometheus text
    format, or OpenMetrics when the scraper asks for it); every other path is a 404.
    """
    root = Resource()
    root.putChild(b"metrics", _Exposition(registry))
    return root


class MetricsListener(SiteListener):
    """
    Serves C{/metrics} of a registry on C{host:port}.
    """

    what = "serve metrics"
    key = "metrics_port"
    path = "/metrics"

    def __init__(self, server_id: str, registry: CollectorRegistry, host: str, port: int, reactor: Any) -> None:
        super().__init__(server_id, host, port, reactor)
        self.registry = registry

    def site(self) -> Site:
        return Site(metrics_resource(self.registry))
