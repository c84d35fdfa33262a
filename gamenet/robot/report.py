"""
What a run measured, for machines (L{to_json}), for the terminal
(L{table}) and for people (L{plot}: latency and throughput over time).
"""

from __future__ import annotations

import os
from typing import Any

from .runner import Run
from .stats import Fanout, Histogram


def _summary(histograms: Any) -> dict[str, float] | None:
    merged = Histogram()
    for h in histograms:
        merged.merge(h)
    return merged.summary_ms()


def _fanout(messages: dict[str, Fanout]) -> dict[str, Any]:
    first, last = Histogram(), Histogram()
    for f in messages.values():
        first.add(f.first)
        last.add(f.last)
    return {"messages": len(messages), "deliveries": sum(f.count for f in messages.values()),
            "first_ms": first.summary_ms(), "last_ms": last.summary_ms()}


def to_json(run: Run) -> dict[str, Any]:
    """
    The report as a JSON-ready dict; doc/benchmarks.md describes each key.
    """
    args, stats = run.args, run.stats
    completed = sum(stats.completed.values())
    pushes = sum(stats.pushes.values())
    server_cpu = sum(run.server_cpu.values())
    measured = run.measured

    def per_second(n: int) -> float:
        return round(n / measured, 3) if measured > 0 else 0.0

    scenario: Any = args.scenario or ("idle" if args.idle else {
        "route": args.route, "body": args.body, "inflight": args.inflight, "echo": args.echo})
    return {
        "target": {"host": args.host, "port": args.port, "transport": args.transport, "tls": args.tls,
                   "path": args.path},
        "scenario": scenario,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "measured": round(measured, 3),
        "workers": len(run.worker_cpu),
        "clients": {"requested": args.clients, "started": stats.clients, "connected": stats.connected},
        "connect_ms": stats.connect.summary_ms(),
        "completed": completed,
        "uncounted": stats.uncounted,
        "abandoned": stats.abandoned,
        "requests_per_second": per_second(completed),
        "latency_ms": _summary(stats.latency.values()),
        "routes": {route: {"completed": n, "per_second": per_second(n), "latency_ms": stats.latency[route].summary_ms()}
                   for route, n in sorted(stats.completed.items())},
        "pushes": {
            "received": pushes, "per_second": per_second(pushes), "routes": dict(sorted(stats.pushes.items())),
            "latency_ms": _summary(stats.push_latency.values()),
            "latency_ms_by_route": {route: h.summary_ms() for route, h in sorted(stats.push_latency.items())},
            "fanout": {route: _fanout(messages) for route, messages in sorted(stats.fanout.items())},
        },
        "errors": dict(sorted(stats.errors.items())),
        "error_count": sum(stats.errors.values()),
        "server": {
            "pids": list(args.pid),
            "cpu_seconds": round(server_cpu, 6) if run.server_cpu else None,
            "cpu_us_per_request": round(server_cpu / completed * 1e6, 2) if run.server_cpu and completed else None,
            "cpu_percent": round(server_cpu / measured * 100, 3) if run.server_cpu and measured else None,
            "cpu_seconds_by_pid": {str(pid): round(cpu, 6) for pid, cpu in run.server_cpu.items()},
            "peak_rss_kib": {str(pid): kib for pid, kib in run.server_peak_rss_kib.items()},
            "rss_kib": {str(pid): {"before": before, "end": end} for pid, (before, end) in run.server_rss_kib.items()},
        },
        "robot": {
            "cpu_seconds": round(sum(run.worker_cpu), 3),
            "busiest_worker_cpu_percent": round(max(run.worker_cpu, default=0.0) / measured * 100, 1)
            if measured else None,
        },
        "timeline": [
            {"second": t.second, "completed": t.completed, "errors": t.errors, "pushes": t.pushes,
             "latency_ms": _summary(t.routes.values()),
             "routes": {route: {"completed": h.n, "latency_ms": h.summary_ms()}
                        for route, h in sorted(t.routes.items())}}
            for t in (run.ticks[s] for s in sorted(run.ticks))
        ],
        "warnings": run.warnings,
    }


def _ms(summary: dict[str, float] | None, key: str) -> str:
    return "-" if summary is None else f"{summary[key]:.2f}"


def table(report: dict[str, Any]) -> str:
    """
    The report for a terminal.
    """
    server = report["server"]
    lines = []
    per_request = server["cpu_us_per_request"]
    lines.append(f"server CPU per request: {per_request:.1f} us" if per_request is not None
                 else "server CPU per request: - (no --pid, or nothing completed)")
    warmup = f" after {report['warmup']:g} s of warm-up" if report["warmup"] else ""
    lines.append(f"completed: {report['completed']} in {report['measured']:g} s{warmup} = "
                 f"{report['requests_per_second']:.1f} req/s; outside the window: {report['uncounted']}; "
                 f"abandoned at the end: {report['abandoned']}")
    clients = report["clients"]
    lines.append(f"clients: {clients['connected']} connections for {clients['requested']} clients "
                 f"over {report['workers']} workers; set-up p50 {_ms(report['connect_ms'], 'p50')} ms, "
                 f"max {_ms(report['connect_ms'], 'max')} ms")
    rows = [("route", "completed", "per s", "p50 ms", "p95 ms", "p99 ms", "max ms")]
    for route, r in report["routes"].items():
        s = r["latency_ms"]
        rows.append((route, str(r["completed"]), f"{r['per_second']:.1f}", _ms(s, "p50"), _ms(s, "p95"),
                     _ms(s, "p99"), _ms(s, "max")))
    pushes = report["pushes"]
    measured = report["measured"]
    for route, n in pushes["routes"].items():
        s = pushes["latency_ms_by_route"].get(route)
        rate = f"{n / measured:.1f}" if measured else "-"
        rows.append((f"push {route}", str(n), rate, _ms(s, "p50"), _ms(s, "p95"), _ms(s, "p99"), _ms(s, "max")))
    for route, f in pushes["fanout"].items():
        for edge in ("first", "last"):
            s = f[f"{edge}_ms"]
            rows.append((f"{route} to {edge}", str(f["messages"]), "", _ms(s, "p50"), _ms(s, "p95"), _ms(s, "p99"),
                         _ms(s, "max")))
    if len(rows) > 1:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        for n, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths))))
            if n == 0:
                lines.append("  ".join("-" * w for w in widths))
    lines.append(f"pushes: {pushes['received']} = {pushes['per_second']:.1f}/s")
    lines.append("errors: " + (", ".join(f"{kind} {n}" for kind, n in report["errors"].items()) or "none"))
    if server["pids"]:
        memory = ", ".join(f"{pid} {r['before'] / 1024:.1f} -> {r['end'] / 1024:.1f} MiB "
                           f"(peak {server['peak_rss_kib'].get(pid, 0) / 1024:.1f})"
                           for pid, r in server["rss_kib"].items())
        lines.append(f"server: {server['cpu_seconds']} s CPU ({server['cpu_percent']}% of a core); "
                     f"RSS before the load -> at the deadline: {memory}")
    lines.append(f"robot: {report['robot']['cpu_seconds']} s CPU; busiest worker "
                 f"{report['robot']['busiest_worker_cpu_percent']}% of a core")
    for warning in report["warnings"]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str) -> None:
    """
    Write a PNG of latency (p50 and p99 per second, for every route and for
    each route when there are several) and throughput (completed requests per
    route, pushes and errors per second) over the run.

    @raise RuntimeError: matplotlib is not installed.
    """
    try:
        import matplotlib
    except ImportError:
        raise RuntimeError("--png needs matplotlib: pip install 'gamenet[bench]'") from None
    matplotlib.use("Agg")
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib.pyplot as plt

    timeline = report["timeline"]
    seconds = [t["second"] + 1 for t in timeline]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(9, 6))
    routes = sorted({route for t in timeline for route in t["routes"]})

    def series(t: dict[str, Any], route: str | None, key: str) -> float:
        summary = t["latency_ms"] if route is None else t["routes"].get(route, {}).get("latency_ms")
        return summary[key] if summary else float("nan")

    for n, route in enumerate([None] + (routes if len(routes) > 1 else [])):
        for key, style in (("p50", "-"), ("p99", "--")):
            top.plot(seconds, [series(t, route, key) for t in timeline], style, color=f"C{n}",
                     label=f"{route or 'all routes'} {key}")
    top.set_ylabel("latency (ms)")
    top.legend()
    top.set_title(f"gamenet bench: {report['clients']['requested']} clients, {report['target']['transport']}")
    if report["warmup"]:
        for axes in (top, bottom):
            axes.axvspan(0, report["warmup"], color="0.9", label="_warm-up")
    bottom.plot(seconds, [t["completed"] for t in timeline], label="requests/s")
    if len(routes) > 1:
        for route in routes:
            bottom.plot(seconds, [t["routes"].get(route, {}).get("completed", 0) for t in timeline],
                        label=f"{route}/s")
    bottom.plot(seconds, [t["pushes"] for t in timeline], label="pushes/s")
    bottom.plot(seconds, [t["errors"] for t in timeline], label="errors/s")
    bottom.set_ylabel("per second")
    bottom.set_xlabel("second of the run")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
