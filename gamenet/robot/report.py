"""
What a run measured, for machines (L{to_json}), for the terminal
(L{table}) and for people (L{plot}: latency and throughput over time).
"""

from __future__ import annotations

import os
from typing import Any

from .runner import Run
from .stats import Histogram


def to_json(run: Run) -> dict[str, Any]:
    """
    The report as a JSON-ready dict; doc/benchmarks.md describes each key.
    """
    args, stats = run.args, run.stats
    completed = sum(stats.completed.values())
    errors = sum(stats.errors.values())
    pushes = sum(stats.pushes.values())
    all_latency = Histogram()
    for h in stats.latency.values():
        all_latency.merge(h)
    all_push = Histogram()
    for h in stats.push_latency.values():
        all_push.merge(h)
    server_cpu = sum(run.server_cpu.values())
    seconds = args.seconds
    return {
        "target": {"host": args.host, "port": args.port, "transport": args.transport, "tls": args.tls},
        "scenario": args.scenario or {"route": args.route, "body": args.body, "inflight": args.inflight},
        "seconds": seconds,
        "elapsed": round(run.elapsed, 3),
        "workers": len(run.worker_cpu),
        "clients": {"requested": args.clients, "started": stats.clients, "connected": stats.connected},
        "connect_ms": stats.connect.summary_ms(),
        "completed": completed,
        "abandoned": stats.abandoned,
        "requests_per_second": round(completed / seconds, 3),
        "latency_ms": all_latency.summary_ms(),
        "routes": {route: {"completed": n, "latency_ms": stats.latency[route].summary_ms()}
                   for route, n in sorted(stats.completed.items())},
        "pushes": {
            "received": pushes, "per_second": round(pushes / seconds, 3), "routes": dict(sorted(stats.pushes.items())),
            "latency_ms": all_push.summary_ms(),
            "latency_ms_by_route": {route: h.summary_ms() for route, h in sorted(stats.push_latency.items())},
        },
        "errors": dict(sorted(stats.errors.items())),
        "error_count": errors,
        "server": {
            "pids": list(args.pid),
            "cpu_seconds": round(server_cpu, 3) if run.server_cpu else None,
            "cpu_us_per_request": round(server_cpu / completed * 1e6, 2) if run.server_cpu and completed else None,
            "cpu_percent": round(server_cpu / run.elapsed * 100, 1) if run.server_cpu and run.elapsed else None,
            "cpu_seconds_by_pid": {str(pid): round(cpu, 3) for pid, cpu in run.server_cpu.items()},
            "peak_rss_kib": {str(pid): kib for pid, kib in run.server_peak_rss_kib.items()},
        },
        "robot": {
            "cpu_seconds": round(sum(run.worker_cpu), 3),
            "busiest_worker_cpu_percent": round(max(run.worker_cpu, default=0.0) / run.elapsed * 100, 1)
            if run.elapsed else None,
        },
        "timeline": [
            {"second": t.second, "completed": t.completed, "errors": t.errors, "pushes": t.pushes,
             "latency_ms": t.latency.summary_ms()}
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
    lines.append(f"completed: {report['completed']} in {report['seconds']:g} s = "
                 f"{report['requests_per_second']:.1f} req/s; abandoned at the end: {report['abandoned']}")
    clients = report["clients"]
    lines.append(f"clients: {clients['connected']} connections for {clients['requested']} clients "
                 f"over {report['workers']} workers; set-up p50 {_ms(report['connect_ms'], 'p50')} ms, "
                 f"max {_ms(report['connect_ms'], 'max')} ms")
    rows = [("route", "completed", "p50 ms", "p95 ms", "p99 ms", "max ms")]
    for route, r in report["routes"].items():
        s = r["latency_ms"]
        rows.append((route, str(r["completed"]), _ms(s, "p50"), _ms(s, "p95"), _ms(s, "p99"), _ms(s, "max")))
    pushes = report["pushes"]
    for route, n in pushes["routes"].items():
        s = pushes["latency_ms_by_route"].get(route)
        rows.append((f"push {route}", str(n), _ms(s, "p50"), _ms(s, "p95"), _ms(s, "p99"), _ms(s, "max")))
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
        peaks = ", ".join(f"{pid} {kib / 1024:.1f} MiB" for pid, kib in server["peak_rss_kib"].items())
        lines.append(f"server: {server['cpu_seconds']} s CPU ({server['cpu_percent']}% of a core); "
                     f"peak RSS {peaks}")
    lines.append(f"robot: {report['robot']['cpu_seconds']} s CPU; busiest worker "
                 f"{report['robot']['busiest_worker_cpu_percent']}% of a core")
    for warning in report["warnings"]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def plot(report: dict[str, Any], path: str) -> None:
    """
    Write a PNG of latency (p50, p99 per second) and throughput (completed
    requests and pushes per second) over the run.

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
    for key, style in (("p50", "-"), ("p99", "--")):
        top.plot(seconds, [t["latency_ms"][key] if t["latency_ms"] else float("nan") for t in timeline],
                 style, label=key)
    top.set_ylabel("latency (ms)")
    top.legend()
    top.set_title(f"gamenet bench: {report['clients']['requested']} clients, {report['target']['transport']}")
    bottom.plot(seconds, [t["completed"] for t in timeline], label="requests/s")
    bottom.plot(seconds, [t["pushes"] for t in timeline], label="pushes/s")
    bottom.plot(seconds, [t["errors"] for t in timeline], label="errors/s")
    bottom.set_ylabel("per second")
    bottom.set_xlabel("second of the run")
    bottom.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
