"""
Plain counters for the hot path: no lock, no label lookup, one bisect per
request. The reactor thread is the only one that writes or reads them; the
registry turns them into Prometheus series when scraped. Tested by
L{tests.test_metrics}.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Iterable, Sequence

# Upper bounds (seconds) of the latency histograms: game handlers answer in
# well under a millisecond to a few hundred, forwarded requests add a node
# link's round trip; past 10 s a request has timed out.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Upper bounds of the calls-per-batch histogram of node links.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

UNKNOWN = "unknown"


def code_class(code: int) -> str:
    """
    The label of an error code: C{"4xx"} for 400-499 and so on, C{"other"}
    for codes outside 100-599 (a game's own codes).
    """
    return f"{code // 100}xx" if 100 <= code <= 599 else "other"


class Distribution:
    """
    A histogram's counts: C{counts[i]} values fell at or under C{bounds[i]}
    and over the bound before it; the last count is over every bound.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """
        Count one value.
        """
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value


class RouteStats:
    """
    What one server counted of one route (or of every unknown route, under
    L{UNKNOWN}): served requests and notifies, their latency, error answers.

    @ivar counts: the latency histogram's counts over L{BUCKETS}, as in L{Distribution}.
    @ivar errors: error answers by code class (see L{code_class}).
    """

    __slots__ = ("route", "requests", "notifies", "errors", "counts", "sum")

    def __init__(self, route: str) -> None:
        self.route = route
        self.requests = 0
        self.notifies = 0
        self.errors: dict[str, int] = {}
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def served(self, id: int, seconds: float) -> None:
        """
        A request (C{id} not 0) or a notify was served in C{seconds}.
        """
        if id:
            self.requests += 1
        else:
            self.notifies += 1
        self.sum += seconds
        self.counts[bisect_left(BUCKETS, seconds)] += 1

    def failed(self, code: int) -> None:
        """
        A request was answered with error C{code}.
        """
        label = code_class(code)
        self.errors[label] = self.errors.get(label, 0) + 1

    @property
    def total(self) -> int:
        """
        Requests and notifies.
        """
        return self.requests + self.notifies


def cumulative(counts: Iterable[int]) -> list[int]:
    """
    Per-bucket counts made cumulative, as Prometheus buckets are.
    """
    out, running = [], 0
    for count in counts:
        running += count
        out.append(running)
    return out


def latency(stats: Iterable[RouteStats]) -> dict[str, Any]:
    """
    The summary shape of the latency of C{stats} together (see L{gamenet.metrics.Metrics.summary}).
    """
    counts = [0] * (len(BUCKETS) + 1)
    total = 0.0
    for s in stats:
        counts = [a + b for a, b in zip(counts, s.counts)]
        total += s.sum
    return {"buckets": list(BUCKETS), "counts": cumulative(counts), "sum": total}
