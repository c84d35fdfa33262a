"""
Forwarding benchmark: requests a connector forwards to a backend, against
requests the connector answers itself, in one run.

    .venv/bin/python bench/forward.py [--transport websocket|tcp] [--clients 100]
        [--inflight 10] [--seconds 10] [--warmup 1] [--workers 2] [--rounds 1]
        [--py-spy DIR] [--json FILE]

Starts a cluster of two servers on free loopback ports, each its own
C{twistd -n --pidfile= --reactor=epoll gamenet --config FILE --server ID}
process, from a generated cluster file without a master (the chat example's
plugins and bench/plugins; C{transport} as asked, heartbeat 30,
C{messages_per_second} 1000000):

- C{connector-1}, the frontend the clients connect to, which answers
  C{connector.echoHandler.echo} itself;
- C{area-1}, a backend, which answers C{area.echoHandler.echo} (the same
  function) for requests C{connector-1} forwards to it over their node link.

Once a request that needs both directions of the node link is answered, it
runs the load robot (C{gamenet bench}, L{gamenet.robot.measure}) on the
connector once per route: C{--clients} clients over C{--workers} worker
processes, each keeping C{--inflight} requests of C{{"text": "hello, world",
"n": 42}} outstanding (C{--echo}: an answer that is not the body counts as
C{wrong_answer}), C{--warmup} seconds of warm-up and C{--seconds} measured;
C{--rounds} times, alternating which route goes first. For each route and
round it prints what completed in the measured window only: requests per
second, the CPU time per request of each server process and of both
together (user + system, from /proc, over that window), the processes' CPU
use and the robot's (100% is one core), p50/p99 latency and errors; then the
forwarded/local ratios of the rate (the aim: at least 0.5x) and of the total
CPU per request (the median over the rounds, with each round's), and how the
connector batched the forwarded calls: calls and results per node-link
batch, counted by bench/plugins/stats.py over each whole forwarded run
(warm-up and drain included).

C{--py-spy DIR} samples both servers over the first round's forwarded
window and splits their CPU per request by where it went. C{--json FILE}
writes the rows, the ratios (each round's, and their medians also as
C{rate_ratio} and C{cpu_ratio}) and the batching as JSON.

Exit status: 0; 1 when a request failed or got a wrong answer; 2 when a
server did not start or died. Both servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
from pathlib import Path
from typing import Any

from _common import (
    ClusterServer, PySpy, ServerError, breakdown, call, columns, figure, free_port, machine, robot, running, server_cpu,
    summary, twistd_server, workdir, write_cluster_file,
)

LOCAL = "connector.echoHandler.echo"
FORWARDED = "area.echoHandler.echo"
BODY = {"text": "hello, world", "n": 42}
AIM = 0.5  # the forwarded rate, at least this share of the local one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=("websocket", "tcp"), default="websocket")
    parser.add_argument("--clients", type=int, default=100, help="robot clients (default 100)")
    parser.add_argument("--inflight", type=int, default=10, help="requests in flight per client (default 10)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the measured window (default 10)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before it (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="robot worker processes (default 2)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each route this many times, alternating; ratios are the median")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample both servers with py-spy (on PATH) over the first round's forwarded window, "
                             "write the collapsed stacks to DIR and print where the CPU time went")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the rows and ratios as JSON to FILE")
    options = parser.parse_args()
    if options.py_spy and not shutil.which("py-spy"):
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")
    if min(options.clients, options.inflight, options.seconds, options.workers, options.rounds) <= 0:
        parser.error("--clients, --inflight, --seconds, --workers and --rounds must be positive")
    if options.warmup < 0:
        parser.error("--warmup must not be negative")

    # SIGTERM (e.g. from timeout(1)) unwinds like Ctrl-C, so that the servers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = workdir()
    connector_config = ClusterServer("connector-1", "connector", client_port=free_port())
    area_config = ClusterServer("area-1", "area")
    config = work / "cluster.ini"
    write_cluster_file(config, [connector_config, area_config], options.transport)
    area = twistd_server(work, config, area_config)
    connector = twistd_server(work, config, connector_config)
    servers = (connector, area)
    url = f"{'ws' if options.transport == 'websocket' else 'tcp'}://127.0.0.1:{connector.port}"
    load = ("--clients", options.clients, "--inflight", options.inflight, "--workers", options.workers,
            "--body", json.dumps(BODY), "--echo")
    print(f"machine: {machine()}; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"cluster: {connector.name} (frontend, {options.transport}) and {area.name} (backend), one process each")
    print(f"load: gamenet bench, {options.clients} {options.transport} clients x {options.inflight} requests in "
          f"flight (--echo), {options.workers} workers, {options.warmup:g} s warm-up + {options.seconds:g} s "
          f"measured per route and round, {options.rounds} round(s)")
    rows: list[dict[str, Any]] = []
    batching: list[dict[str, float]] = []
    spies: list[tuple[PySpy, Any]] = []
    if options.py_spy:
        options.py_spy.mkdir(parents=True, exist_ok=True)
        spies = [(PySpy(options.py_spy.resolve() / f"forward-{server.name}.txt"), server) for server in servers]
    try:
        with running(work, [area, connector]):
            # Both directions of the node link work once this is answered.
            call(connector.port, "area.benchHandler.ready", transport=options.transport)
            for number in range(1, options.rounds + 1):
                order = (LOCAL, FORWARDED) if number % 2 else (FORWARDED, LOCAL)
                measured = {}
                for route in order:
                    before = call(connector.port, "connector.benchStats.get", transport=options.transport)
                    spied = spies if route == FORWARDED and number == 1 else ()
                    report = robot(url, "--route", route, *load, servers=servers, warmup=options.warmup,
                                   seconds=options.seconds, spies=spied)
                    measured[route] = row(number, route, report, servers)
                    if route == FORWARDED:
                        after = call(connector.port, "connector.benchStats.get", transport=options.transport)
                        batching.append(batch_counts(before, after, area.name))
                rows += [measured[LOCAL], measured[FORWARDED]]
    except ServerError as e:
        print(f"forward.py: {e}", file=sys.stderr)
        return 2

    names = [server.name for server in servers]
    print()
    print(table(rows, names, options.transport))
    pairs = list(zip(rows[::2], rows[1::2]))
    rate = [f["req_per_s"] / lo["req_per_s"] if lo["req_per_s"] else float("nan") for lo, f in pairs]
    cpu = [f["total_us_per_req"] / lo["total_us_per_req"] if lo["total_us_per_req"] else float("nan")
           for lo, f in pairs]
    met = statistics.median(rate) >= AIM
    print(f"\nforwarded / local: rate {summary(rate)} (aim >= {AIM}x: {'met' if met else 'missed'}), "
          f"total server CPU per request {summary(cpu)}")
    print()
    print(batch_table(batching, connector.name, area.name))
    if spies:
        print()
        print(breakdown("CPU us per forwarded request (py-spy, round 1)", spies, rows[1]["us_per_req"]))
    for warning in sorted({w for r in rows for w in r["warnings"]}):
        print(f"warning: {warning}")
    if options.json:
        ratios = {"rate": rate, "cpu": cpu, "rate_median": statistics.median(rate),
                  "cpu_median": statistics.median(cpu), "aim": AIM, "met": met}
        options.json.write_text(json.dumps({"benchmark": "forward", "machine": machine(), "rows": rows,
                                            "ratios": ratios, "rate_ratio": ratios["rate_median"],
                                            "cpu_ratio": ratios["cpu_median"], "batching": batching},
                                           indent=1) + "\n")
    return 1 if any(r["errors"] for r in rows) else 0


def row(number: int, route: str, report: dict[str, Any], servers: Any) -> dict[str, Any]:
    """
    What one robot run on C{route} measured, as a row of the table and of the JSON.
    """
    completed, seconds = report["completed"], report["measured"] or float("nan")
    cpu = {server.name: server_cpu(report, server) for server in servers}
    latency = report["routes"].get(route, {}).get("latency_ms") or {}
    return {
        "round": number, "route": route, "kind": "local" if route == LOCAL else "forwarded",
        "completed": completed, "seconds": report["measured"], "req_per_s": report["requests_per_second"],
        "us_per_req": {name: round(c / completed * 1e6, 2) if completed else None for name, c in cpu.items()},
        "total_us_per_req": round(sum(cpu.values()) / completed * 1e6, 2) if completed else None,
        "cpu_percent": {name: round(c / seconds * 100, 1) for name, c in cpu.items()},
        "robot_cpu_percent": round(report["robot"]["cpu_seconds"] / seconds * 100, 1),
        "p50_ms": latency.get("p50"), "p99_ms": latency.get("p99"),
        "errors": report["errors"], "warnings": report["warnings"],
    }


def batch_counts(before: dict[str, Any], after: dict[str, Any], peer: str) -> dict[str, float]:
    """
    What the connector's link to C{peer} sent and got between two readings of its counters.
    """
    was, now = before["links"].get(peer, {}), after["links"].get(peer, {})
    return {key: now.get(key, 0) - was.get(key, 0)
            for key in ("batches", "calls", "bytes", "result_batches", "result_bytes")}


def batch_table(batching: list[dict[str, float]], connector: str, area: str) -> str:
    rows: list[tuple[str, ...]] = [("round", f"{connector} -> {area}", "calls", "batches", "calls/batch",
                                    "bytes/batch", "result batches", "results/batch")]
    for number, counts in enumerate(batching, 1):
        batches, results = counts["batches"] or 1, counts["result_batches"] or 1
        rows.append((
            str(number), "forwarded run", f"{counts['calls']:,.0f}", f"{counts['batches']:,.0f}",
            f"{counts['calls'] / batches:.1f}", f"{counts['bytes'] / batches:,.0f}",
            f"{counts['result_batches']:,.0f}", f"{counts['calls'] / results:.1f}",
        ))
    return columns(rows, left=2)


def table(rows: list[dict[str, Any]], names: list[str], transport: str) -> str:
    head = ("round", "route", "req/s", *(f"{name} us/req" for name in names), "total us/req",
            *(f"{name} CPU" for name in names), "robot CPU", "p50 ms", "p99 ms", "errors")
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        lines.append((
            str(r["round"]), f"{r['route']} ({r['kind']}, {transport})", f"{r['req_per_s']:,.0f}",
            *(figure(r["us_per_req"][name], ".1f") for name in names), figure(r["total_us_per_req"], ".1f"),
            *(f"{r['cpu_percent'][name]:.0f}%" for name in names), f"{r['robot_cpu_percent']:.0f}%",
            figure(r["p50_ms"], ".1f"), figure(r["p99_ms"], ".1f"),
            ", ".join(f"{kind} {count}" for kind, count in r["errors"].items()) or "0",
        ))
    return columns(lines, left=2)


if __name__ == "__main__":
    sys.exit(main())
