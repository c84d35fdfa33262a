"""
Pure arithmetic over the cumulative figures a server's C{status} reports
(L{gamenet.metrics}' C{summary()}): rates and latency quantiles between two
polls. Tested in C{tests/test_fleet.py}.

A histogram here is Prometheus-style: C{[(le, count), ...]} sorted by C{le},
each C{count} the observations at most C{le}, the last C{le} infinite.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

Histogram = list[tuple[float, float]]


def histogram(raw: Any) -> Histogram:
    """
    A histogram from the summary's form, C{{"buckets": [upper bounds],
    "counts": [cumulative counts]}} where C{counts} has one entry more (the
    infinite bucket); anything else is an empty one.
    """
    raw = mapping(raw)
    bounds, counts = raw.get("buckets"), raw.get("counts")
    if not isinstance(bounds, list) or not isinstance(counts, list) or len(counts) != len(bounds) + 1:
        return []
    try:
        return sorted(zip([*(float(bound) for bound in bounds), math.inf], (float(c) for c in counts)))
    except (TypeError, ValueError):
        return []


def difference(before: Histogram, after: Histogram) -> Histogram:
    """
    The observations made between two readings of one histogram: C{after}
    minus C{before}, bucket by bucket. When the buckets differ or a count
    went down (the process restarted), C{after} alone.
    """
    if [le for le, _ in before] != [le for le, _ in after]:
        return after
    delta = [(le, count - earlier) for (le, count), (_, earlier) in zip(after, before)]
    if any(count < 0 for _, count in delta):
        return after
    return delta


def quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """
    The C{q} quantile (0 to 1) of a histogram, interpolated linearly inside
    the bucket it falls in (as Prometheus's C{histogram_quantile}), the first
    bucket starting at 0. A quantile in the infinite bucket is the largest
    finite bound.

    @return: the estimate, or C{None} when the histogram counts nothing.
    """
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for le, count in buckets:
        if count >= rank and count > below:
            if math.isinf(le):
                return lower
            return lower + (le - lower) * (rank - below) / (count - below)
        lower, below = (le if not math.isinf(le) else lower), count
    return lower


def rate(before: float, after: float, seconds: float) -> float:
    """
    Per second, between two readings of a counter C{seconds} apart; 0 when
    no time passed or the counter went down (the process restarted).
    """
    if seconds <= 0 or after < before:
        return 0.0
    return (after - before) / seconds


def figures(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, Any]:
    """
    Requests and errors per second, and the p50 and p99 of the latency of
    the requests made, between two readings of one counter set:
    C{{"requests": n, "errors": n, "latency": [[le, count], ...]}}.
    """
    latency = difference(histogram(before.get("latency")), histogram(after.get("latency")))
    return {
        "rps": rate(number(before, "requests"), number(after, "requests"), seconds),
        "errors_per_second": rate(number(before, "errors"), number(after, "errors"), seconds),
        "p50": quantile(0.5, latency),
        "p99": quantile(0.99, latency),
    }


def route_figures(before: dict[str, Any], after: dict[str, Any], seconds: float) -> dict[str, dict[str, Any]]:
    """
    For each route of C{after["routes"]}: its running totals of requests and
    errors, and its requests per second, p50 and p99 (as L{figures}).
    """
    routes_before = mapping(before.get("routes"))
    result = {}
    for route, counters in mapping(after.get("routes")).items():
        counters = mapping(counters)
        rates = figures(mapping(routes_before.get(route)), counters, seconds)
        result[route] = {
            "requests": int(number(counters, "requests")),
            "errors": int(number(counters, "errors")),
            "rps": rates["rps"],
            "p50": rates["p50"],
            "p99": rates["p99"],
        }
    return result


def mapping(value: Any) -> dict[str, Any]:
    """
    C{value} if it is a JSON object, else an empty one.
    """
    return value if isinstance(value, dict) else {}


def number(values: dict[str, Any], key: str) -> float:
    """
    C{values[key]} if it is a number, else 0.
    """
    value = values.get(key, 0)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0
