"""
Prometheus metrics of one server: what it counts (L{Metrics}, C{app.metrics})
and C{/metrics} on its C{metrics_port} (L{MetricsListener}).

Each L{Application} has its own registry (several may share a process, as in
tests), with the constant labels C{server_id} and C{server_type} on every
series, the process's CPU and memory (prometheus_client's process collector)
and Python's platform information. Every metric is listed in
doc/observability.md. Tested by L{tests.test_metrics},
L{tests.test_metrics_frontend}, L{tests.test_metrics_export} and
L{tests.test_metrics_cluster}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..component import REMOTE
from ._http import MetricsListener, metrics_resource
from ._registry import Metrics
from ._stats import BATCH_BUCKETS, BUCKETS, UNKNOWN, Distribution, RouteStats, code_class

if TYPE_CHECKING:
    from ..app import Application

__all__ = [
    "BATCH_BUCKETS",
    "BUCKETS",
    "Distribution",
    "Metrics",
    "MetricsListener",
    "RouteStats",
    "UNKNOWN",
    "attach",
    "code_class",
    "metrics_resource",
]


def attach(app: Application) -> Metrics:
    """
    Make the metrics of C{app}: count its dispatcher's routes, read its
    frontend's and storage keeper's counters once it has them, and serve
    C{/metrics} on its server's C{metrics_port} as a child service (none,
    and nothing counted, when that is 0).

    Route labels are the cluster's handler routes and extra routes (its
    route dictionary); remote method labels are the remotes the game
    registered, for every server type.
    """
    server = app.server
    sessions = app.sessions
    metrics = Metrics(
        server.id, server.type, bool(server.metrics_port),
        routes=lambda: app.dictionary.route_to_code,
        remotes=lambda: [
            f"{registration.server_type}.{registration.name}.{method}"
            for registration in app._registrations if registration.kind == REMOTE
            for method in registration.method_names()
        ],
        frontend=lambda: app.frontend,
        keeper=lambda: sessions.keeper if sessions is not None else None,
    )
    if metrics.enabled:
        app.dispatcher.metrics = metrics
        listener = MetricsListener(server.id, metrics.registry, server.host, server.metrics_port, app.reactor)
        listener.setServiceParent(app)
    return metrics
