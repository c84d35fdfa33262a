"""
L{Metrics}: one server's counters, its Prometheus registry and the summary
the master polls. Tested by L{tests.test_metrics}, L{tests.test_metrics_frontend}
and L{tests.test_metrics_export}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ..connector.connection import KICK_REASONS
from ..errors import Timeout
from ._stats import BATCH_BUCKETS, BUCKETS, UNKNOWN, Distribution, RouteStats, cumulative, latency

if TYPE_CHECKING:
    from ..connector.frontend import Frontend
    from ..session.keeper import SettingsKeeper

# Frontend.metrics keys and the series they become; a key not named here
# (one added later) is still exported, as gamenet_client_<key>_total.
_FRONTEND_COUNTERS = {
    "connections": ("client_connections_accepted", "Client connections accepted."),
    "connections_refused": ("client_connections_refused", "Client connections refused: max_connections reached."),
    "connections_blocked": ("client_connections_blocked", "Client connections refused: the address is blocked."),
    "handshakes_refused": ("client_handshakes_refused", "Handshakes refused (malformed, or by a validator)."),
    "handshake_timeouts": ("client_handshake_timeouts", "Connections closed for not finishing the handshake in time."),
    "heartbeat_timeouts": ("client_heartbeat_timeouts", "Connections closed after 2 heartbeats without a package."),
    "rate_limited": ("client_rate_limited", "Connections kicked for exceeding messages_per_second."),
    "protocol_errors": ("client_protocol_errors", "Connections kicked for breaking the protocol."),
    "slow_consumers": ("client_slow_consumers", "Connections dropped for exceeding max_outbound_queue."),
    "origins_refused": ("client_origins_refused", "WebSocket upgrades refused for their Origin."),
    "requests": ("client_messages", "Requests and notifies decoded from clients."),
    "error_responses": ("client_error_answers", "Answers with an error code written to clients."),
    "responses_dropped": ("client_answers_dropped", "Answers dropped: the connection was gone."),
    "suspended": ("client_sessions_suspended", "Sessions kept for resume after their connection dropped."),
    "resumes": ("client_resumes", "Sessions resumed (here, or taken from another frontend)."),
    "resumes_refused": ("client_resumes_refused", "Resumes refused: wrong, used or expired token."),
    "resumes_expired": ("client_resumes_expired", "Suspended sessions not resumed within resume_window."),
    "resume_buffer_full": ("client_resume_buffer_full", "Suspended sessions given up: resume_buffer passed."),
}
# SettingsKeeper.metrics keys: storage calls by kind, and the other counters.
_STORAGE_CALLS = {"storage_writes": "write", "storage_queries": "query", "storage_deletes": "delete",
                  "storage_heartbeats": "heartbeat"}
_STORAGE_COUNTERS = {
    "storage_errors": ("storage_errors", "Storage calls that failed or timed out."),
    "storage_rejected": ("storage_rejected", "Values the storage refused (not retried)."),
    "storage_restored": ("storage_restored", "Binds that found stored settings to merge."),
}


def _none() -> None:
    return None


class _ConstantLabels:
    """
    A collector whose every sample gets C{labels} too.
    """

    def __init__(self, collector: Any, labels: dict[str, str]) -> None:
        self.collector = collector
        self.labels = labels

    def collect(self) -> Iterator[Metric]:
        for family in self.collector.collect():
            family.samples = [sample._replace(labels={**self.labels, **sample.labels}) for sample in family.samples]
            yield family


class _Gather:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics._families()


def _histogram(name: str, documentation: str, labels: list[str]) -> HistogramMetricFamily:
    return HistogramMetricFamily(f"gamenet_{name}", documentation, labels=labels)


def _buckets(bounds: Iterable[float], counts: list[int]) -> list[tuple[str, float]]:
    return list(zip([*(f"{bound:g}" for bound in bounds), "+Inf"], cumulative(counts)))


class Metrics:
    """
    What one server counts (C{app.metrics}), exported by its own Prometheus
    registry with the constant labels C{server_id} and C{server_type}.

    The hot path writes plain counters (L{RouteStats} per route, fetched once
    per route by the dispatcher); the registry reads them, and the frontend's
    and storage keeper's own counters, only when scraped. Route and remote
    method labels are those the cluster registered: any other route counts
    under C{"unknown"}, so what clients send cannot add series.

    @ivar enabled: whether anything is counted (C{metrics_port} set); when
        not, L{route_stats} is C{None} and L{summary} is all zeros.
    @ivar registry: the C{CollectorRegistry} served on C{/metrics}.
    @ivar batch_sizes: calls per batch sent on node links.
    @ivar rpc: C{app.rpc} calls by remote method: C{[calls, errors, timeouts]}.
    @ivar pushes: channel pushes and broadcasts sent.
    @ivar push_members: members they reached.
    @ivar push_missed: members they did not reach.
    """

    def __init__(
        self,
        server_id: str,
        server_type: str,
        enabled: bool,
        routes: Callable[[], Iterable[str]] = tuple,
        remotes: Callable[[], Iterable[str]] = tuple,
        frontend: Callable[[], Frontend | None] = _none,
        keeper: Callable[[], SettingsKeeper | None] = _none,
    ) -> None:
        """
        @param routes: the routes the cluster serves (called once, on first use).
        @param remotes: the remote methods of the cluster (likewise).
        @param frontend: the frontend whose counters to export, once there is one.
        @param keeper: the storage keeper whose counters to export, likewise.
        """
        self.server_id = server_id
        self.server_type = server_type
        self.enabled = enabled
        self._routes = routes
        self._remotes = remotes
        self._known_routes: frozenset[str] | None = None
        self._known_remotes: frozenset[str] | None = None
        self._frontend = frontend
        self._keeper = keeper
        self._local: dict[str, RouteStats] = {}
        self._forwarded: dict[str, RouteStats] = {}
        self.batch_sizes = Distribution(BATCH_BUCKETS)
        self.rpc: dict[str, list[int]] = {}
        self.pushes = 0
        self.push_members = 0
        self.push_missed = 0
        self.registry = CollectorRegistry()
        labels = {"server_id": server_id, "server_type": server_type}
        for collector in (_Gather(self), ProcessCollector(registry=None), PlatformCollector(registry=None)):
            self.registry.register(_ConstantLabels(collector, labels))  # type: ignore[arg-type]

    # Counting (the instrumented code calls these)

    def route_stats(self, route: str, forwarded: bool) -> RouteStats | None:
        """
        The counters of C{route}, served here or (C{forwarded}) sent to
        another server; those of L{UNKNOWN} for a route the cluster does not
        serve. C{None} when metrics are off.
        """
        if not self.enabled:
            return None
        if self._known_routes is None:
            self._known_routes = frozenset(self._routes())
        label = route if route in self._known_routes else UNKNOWN
        table = self._forwarded if forwarded else self._local
        stats = table.get(label)
        if stats is None:
            stats = table[label] = RouteStats(label)
        return stats

    def rpc_done(self, route: str, error: BaseException | None) -> None:
        """
        An C{app.rpc} call of remote method C{route} ended, with C{error} if it failed.
        """
        if not self.enabled:
            return
        if self._known_remotes is None:
            self._known_remotes = frozenset(self._remotes())
        label = route if route in self._known_remotes else UNKNOWN
        counts = self.rpc.get(label)
        if counts is None:
            counts = self.rpc[label] = [0, 0, 0]
        counts[0] += 1
        if error is not None:
            counts[1] += 1
            if isinstance(error, Timeout):
                counts[2] += 1

    def pushed(self, members: int, missed: int) -> None:
        """
        A channel push or broadcast reached C{members} members and missed C{missed}.
        """
        if self.enabled:
            self.pushes += 1
            self.push_members += members
            self.push_missed += missed

    # Reading

    def summary(self) -> dict[str, Any]:
        """
        The totals the master polls (C{status()}), JSON-able and cheap::

            {"requests": int,   # requests and notifies dispatched: served here or forwarded
             "errors": int,     # answers with an error code
             "latency": LATENCY,
             "routes": {route: {"requests": int, "errors": int, "latency": LATENCY}},
             "forwarded": int,  # requests and notifies forwarded to other servers
             "pushes": int,     # channel pushes and broadcasts sent
             "kicks": int}      # clients kicked (frontends)

        where LATENCY is C{{"buckets": [upper bounds, seconds], "counts":
        [cumulative counts], "count": int, "sum": seconds}}: C{counts} has
        one entry more than C{buckets}, the last being every one (C{+Inf}),
        equal to C{count}. Latency is from dispatch to answer: the handler's
        time for a route served here, the round trip for a forwarded one.
        Every number is a total since the server started, so rates are
        differences between two polls. All zeros when metrics are off.
        """
        routes: dict[str, dict[str, Any]] = {}
        for label in {*self._local, *self._forwarded}:
            stats = [s for s in (self._local.get(label), self._forwarded.get(label)) if s is not None]
            routes[label] = {
                "requests": sum(s.total for s in stats),
                "errors": sum(sum(s.errors.values()) for s in stats),
                "latency": _with_count(latency(stats)),
            }
        every = [*self._local.values(), *self._forwarded.values()]
        frontend = self._frontend()
        return {
            "requests": sum(s.total for s in every),
            "errors": sum(route["errors"] for route in routes.values()),
            "latency": _with_count(latency(every)),
            "routes": routes,
            "forwarded": sum(s.total for s in self._forwarded.values()),
            "pushes": self.pushes,
            "kicks": sum(frontend.kicks.values()) if frontend is not None and self.enabled else 0,
        }

    def _families(self) -> Iterator[Metric]:
        if not self.enabled:
            return
        yield from self._route_families(self._local, "requests", "handler_duration_seconds",
                                        "Requests and notifies served by a handler of this server.",
                                        "Time from dispatch to answer of requests and notifies served here.")
        yield from self._route_families(self._forwarded, "forwarded_requests", "forward_duration_seconds",
                                        "Requests and notifies forwarded to another server.",
                                        "Time from forwarding a request to its answer.")
        errors = CounterMetricFamily("gamenet_error_answers", "Requests answered with an error code, by class.",
                                     labels=["route", "code_class"])
        for table in (self._local, self._forwarded):
            for stats in table.values():
                for label, count in stats.errors.items():
                    errors.add_metric([stats.route, label], count)
        yield errors
        calls = CounterMetricFamily("gamenet_rpc_calls", "app.rpc calls made, by remote method.", labels=["method"])
        failed = CounterMetricFamily("gamenet_rpc_errors", "app.rpc calls that failed (timeouts included).",
                                     labels=["method"])
        timeouts = CounterMetricFamily("gamenet_rpc_timeouts", "app.rpc calls that timed out.", labels=["method"])
        for method, (n, errors_, timeouts_) in self.rpc.items():
            calls.add_metric([method], n)
            failed.add_metric([method], errors_)
            timeouts.add_metric([method], timeouts_)
        yield from (calls, failed, timeouts)
        batches = _histogram("node_batch_calls", "Calls per batch sent on node links.", [])
        batches.add_metric([], _buckets(BATCH_BUCKETS, self.batch_sizes.counts), self.batch_sizes.sum)
        yield batches
        yield CounterMetricFamily("gamenet_channel_pushes", "Channel pushes and broadcasts sent.", self.pushes)
        yield CounterMetricFamily("gamenet_channel_push_members", "Members channel pushes reached.",
                                  self.push_members)
        yield CounterMetricFamily("gamenet_channel_push_missed", "Members channel pushes did not reach.",
                                  self.push_missed)
        frontend = self._frontend()
        if frontend is not None:
            yield from _frontend_families(frontend)
        keeper = self._keeper()
        if keeper is not None:
            yield from _keeper_families(keeper)

    @staticmethod
    def _route_families(table: dict[str, RouteStats], count_name: str, latency_name: str, count_help: str,
                        latency_help: str) -> Iterator[Metric]:
        counts = CounterMetricFamily(f"gamenet_{count_name}", count_help, labels=["route", "kind"])
        durations = _histogram(latency_name, latency_help, ["route"])
        for stats in table.values():
            counts.add_metric([stats.route, "request"], stats.requests)
            counts.add_metric([stats.route, "notify"], stats.notifies)
            durations.add_metric([stats.route], _buckets(BUCKETS, stats.counts), stats.sum)
        yield counts
        yield durations


def _with_count(shape: dict[str, Any]) -> dict[str, Any]:
    shape["count"] = shape["counts"][-1]
    return shape


def _frontend_families(frontend: Frontend) -> Iterator[Metric]:
    connections = frontend.connections
    yield GaugeMetricFamily("gamenet_client_connections_open", "Client connections open now.", len(connections))
    yield GaugeMetricFamily("gamenet_client_outbound_queued_bytes",
                            "Bytes queued for clients that are not reading, now.",
                            sum(connection.queued for connection in connections))
    counters = frontend.metrics
    for key in sorted({*_FRONTEND_COUNTERS, *counters}):
        name, documentation = _FRONTEND_COUNTERS.get(key, (f"client_{key}", f"Frontend counter {key}."))
        yield CounterMetricFamily(f"gamenet_{name}", documentation, counters[key])
    kicks = CounterMetricFamily("gamenet_client_kicks", "Clients kicked, by gamenet's reason (a game's: other).",
                                labels=["reason"])
    for reason in sorted({*KICK_REASONS, *frontend.kicks}):
        kicks.add_metric([reason], frontend.kicks[reason])
    yield kicks


def _keeper_families(keeper: SettingsKeeper) -> Iterator[Metric]:
    counters = keeper.metrics
    calls = CounterMetricFamily("gamenet_storage_calls", "Calls to the session storage, by kind.", labels=["call"])
    for key, call in _STORAGE_CALLS.items():
        calls.add_metric([call], counters[key])
    yield calls
    for key, (name, documentation) in _STORAGE_COUNTERS.items():
        yield CounterMetricFamily(f"gamenet_{name}", documentation, counters[key])
    yield GaugeMetricFamily("gamenet_storage_owed_calls", "Storage calls owed until the storage answers again.",
                            keeper.owed)
    yield GaugeMetricFamily("gamenet_storage_healthy", "1 when the storage answered its last call, else 0.",
                            int(keeper.healthy))
