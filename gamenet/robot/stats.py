"""
What a worker measures, in a form that merges across workers.

L{Histogram}: latencies in log-scale buckets (each about 4.4% wide, from 1 us),
with the exact count, sum and maximum; percentiles come from the merged buckets.
L{Stats}: per route completions and latencies, errors by kind, pushes by route
and their delivery latency, fan-out (first and last delivery of each message
sent to many clients), connection set-up times; and L{Tick}, the counts of
one second of the run, for the progress line and the plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

_BASE = 2 ** (1 / 16)
_LOG_BASE = math.log(_BASE)


class Histogram:
    """
    Latencies (seconds) in log-scale buckets.
    """

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.n = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        us = max(seconds * 1e6, 1.0)
        index = int(math.log(us) / _LOG_BASE)
        self.counts[index] = self.counts.get(index, 0) + 1
        self.n += 1
        self.total += seconds
        if seconds > self.max:
            self.max = seconds

    def merge(self, other: Histogram) -> None:
        for index, count in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + count
        self.n += other.n
        self.total += other.total
        self.max = max(self.max, other.max)

    def percentile(self, p: float) -> float | None:
        """
        The latency (seconds) below which C{p} percent of the samples fall:
        the geometric middle of the bucket holding that rank (never above the
        maximum); C{None} without samples.
        """
        if not self.n:
            return None
        rank = max(1, math.ceil(p / 100 * self.n))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                return min(_BASE ** (index + 0.5) / 1e6, self.max)
        return self.max

    def summary_ms(self) -> dict[str, float] | None:
        """
        C{p50}, C{p95}, C{p99}, C{max} and C{mean} in milliseconds; C{None} without samples.
        """
        if not self.n:
            return None
        out = {f"p{p}": round(self.percentile(p) * 1e3, 3) for p in (50, 95, 99)}  # type: ignore[operator]
        out["max"] = round(self.max * 1e3, 3)
        out["mean"] = round(self.total / self.n * 1e3, 3)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"counts": {str(k): v for k, v in self.counts.items()}, "n": self.n, "total": self.total,
                "max": self.max}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Histogram:
        h = cls()
        h.counts = {int(k): v for k, v in data["counts"].items()}
        h.n, h.total, h.max = data["n"], data["total"], data["max"]
        return h


def _merge_counts(into: dict[str, int], other: dict[str, int]) -> None:
    for key, count in other.items():
        into[key] = into.get(key, 0) + count


def _merge_histograms(into: dict[str, Histogram], other: dict[str, Histogram]) -> None:
    for key, h in other.items():
        into.setdefault(key, Histogram()).merge(h)


@dataclass
class Tick:
    """
    One second of the run (C{second} counts from the start): what completed in it.
    """

    second: int
    completed: int = 0
    errors: int = 0
    pushes: int = 0
    routes: dict[str, Histogram] = field(default_factory=dict)  # latencies by route

    def request_done(self, route: str, seconds: float) -> None:
        self.completed += 1
        h = self.routes.get(route)
        if h is None:
            h = self.routes[route] = Histogram()
        h.add(seconds)

    def merge(self, other: Tick) -> None:
        self.completed += other.completed
        self.errors += other.errors
        self.pushes += other.pushes
        _merge_histograms(self.routes, other.routes)

    def to_json(self) -> dict[str, Any]:
        return {"second": self.second, "completed": self.completed, "errors": self.errors, "pushes": self.pushes,
                "routes": {k: h.to_json() for k, h in self.routes.items()}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tick:
        return cls(data["second"], data["completed"], data["errors"], data["pushes"],
                   {k: Histogram.from_json(h) for k, h in data["routes"].items()})


@dataclass
class Fanout:
    """
    The deliveries of one message sent to many clients (a channel push),
    recorded by each receiving client: how many, and the first and last
    delivery latency (seconds).
    """

    count: int = 0
    first: float = math.inf
    last: float = 0.0

    def add(self, seconds: float) -> None:
        self.count += 1
        self.first = min(self.first, seconds)
        self.last = max(self.last, seconds)

    def merge(self, other: Fanout) -> None:
        self.count += other.count
        self.first = min(self.first, other.first)
        self.last = max(self.last, other.last)


@dataclass
class Stats:
    """
    Everything counted over a run (one worker's, or every worker's merged).

    @ivar completed: answered requests by route (answers without an error).
    @ivar latency: their latencies by route.
    @ivar errors: errors by kind (C{connect_failed}, C{error_response:404}, ...).
    @ivar pushes: pushes received by route.
    @ivar push_latency: delivery latency of pushes by route, where the scenario could tell it.
    @ivar fanout: by push route, the L{Fanout} of each message (by the key the scenario gave it).
    @ivar connect: connection set-up times (TCP, TLS, WebSocket and Pomelo handshakes).
    @ivar abandoned: requests still unanswered when the run stopped.
    @ivar uncounted: requests answered outside the window (warm-up, drain), not in C{completed}.
    @ivar clients: simulated clients started; C{connected}: connections that completed the handshake.
    """

    completed: dict[str, int] = field(default_factory=dict)
    latency: dict[str, Histogram] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    pushes: dict[str, int] = field(default_factory=dict)
    push_latency: dict[str, Histogram] = field(default_factory=dict)
    fanout: dict[str, dict[str, Fanout]] = field(default_factory=dict)
    connect: Histogram = field(default_factory=Histogram)
    abandoned: int = 0
    uncounted: int = 0
    clients: int = 0
    connected: int = 0

    def request_done(self, route: str, seconds: float) -> None:
        self.completed[route] = self.completed.get(route, 0) + 1
        self.latency.setdefault(route, Histogram()).add(seconds)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def push(self, route: str) -> None:
        self.pushes[route] = self.pushes.get(route, 0) + 1

    def delivered(self, route: str, key: str, seconds: float) -> None:
        messages = self.fanout.setdefault(route, {})
        fanout = messages.get(key)
        if fanout is None:
            fanout = messages[key] = Fanout()
        fanout.add(seconds)

    def merge(self, other: Stats) -> None:
        _merge_counts(self.completed, other.completed)
        _merge_histograms(self.latency, other.latency)
        _merge_counts(self.errors, other.errors)
        _merge_counts(self.pushes, other.pushes)
        _merge_histograms(self.push_latency, other.push_latency)
        for route, messages in other.fanout.items():
            into = self.fanout.setdefault(route, {})
            for key, fanout in messages.items():
                into.setdefault(key, Fanout()).merge(fanout)
        self.connect.merge(other.connect)
        self.abandoned += other.abandoned
        self.uncounted += other.uncounted
        self.clients += other.clients
        self.connected += other.connected

    def to_json(self) -> dict[str, Any]:
        return {
            "completed": self.completed, "latency": {k: h.to_json() for k, h in self.latency.items()},
            "errors": self.errors, "pushes": self.pushes,
            "push_latency": {k: h.to_json() for k, h in self.push_latency.items()},
            "fanout": {route: {key: [f.count, f.first, f.last] for key, f in messages.items()}
                       for route, messages in self.fanout.items()},
            "connect": self.connect.to_json(), "abandoned": self.abandoned,
            "uncounted": self.uncounted, "clients": self.clients, "connected": self.connected,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stats:
        return cls(
            dict(data["completed"]), {k: Histogram.from_json(h) for k, h in data["latency"].items()},
            dict(data["errors"]), dict(data["pushes"]),
            {k: Histogram.from_json(h) for k, h in data["push_latency"].items()},
            {route: {key: Fanout(*f) for key, f in messages.items()} for route, messages in data["fanout"].items()},
            Histogram.from_json(data["connect"]), data["abandoned"], data["uncounted"], data["clients"],
            data["connected"],
        )
