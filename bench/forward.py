"""
Forwarding benchmark: requests a connector forwards to a backend, against
requests the connector answers itself, in one run.

    .venv/bin/python bench/forward.py [--transport websocket|tcp] [--clients 100]
        [--inflight 10] [--seconds 10] [--workers 2] [--rounds 1]
        [--py-spy DIR]

Starts a cluster of two servers, each its own C{twistd -n --pidfile=
--reactor=epoll gamenet --config FILE --server ID} process, from a generated
cluster file without a master (the chat example's plugins and
bench/plugins; C{transport} as asked, heartbeat 30, C{messages_per_second}
1000000):

- C{connector-1}, the frontend the clients connect to, which answers
  C{connector.echoHandler.echo} itself;
- C{area-1}, a backend, which answers C{area.echoHandler.echo} (the same
  function) for requests C{connector-1} forwards to it over their node link.

Then drives the connector with the same client load as bench/echo.py
(C{--clients} connections of L{gamenet.client.Client} over C{--workers}
processes, each keeping C{--inflight} requests of C{{"text": "hello, world",
"n": 42}} outstanding, a warm-up second and C{--seconds} timed), once on each
route; C{--rounds} times, alternating which route goes first. For each route
and round it prints completed requests per second, the CPU time per request
of each server process and of both together (user + system, from /proc, over
the timed window only), the processes' CPU use (100% is one core), latency
percentiles and errors; then the forwarded/local ratios of the rate and of
the total CPU per request (the median over the rounds, with each round's),
and how the connector batched the forwarded calls: calls and results per
node-link batch, counted by bench/plugins/stats.py over the whole forwarded
load (warm-up and drain included).

C{--py-spy DIR} samples both servers over the first round's forwarded
window and splits their CPU per request by where it went.

Exit status: 0; 1 when a request failed or got a wrong answer; 2 when a
server did not start or died. Every server is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import sys
from pathlib import Path
from typing import Any

from _common import (
    ClusterServer, Load, LoadResult, PySpy, ServerError, call, columns, drive, free_port, machine,
    stack_shares, summary, twistd_server, workdir, write_cluster_file,
)

LOCAL = "connector.echoHandler.echo"
FORWARDED = "area.echoHandler.echo"
AIM = 0.5  # the forwarded rate, at least this share of the local one


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=("websocket", "tcp"), default="websocket")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=10, help="requests in flight per client")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the timed window")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each route this many times, alternating; ratios are the median")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample both servers with py-spy (on PATH) over the first round's forwarded window, "
                             "write the collapsed stacks to DIR and print where the CPU time went")
    options = parser.parse_args()
    if options.py_spy and not shutil.which("py-spy"):
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")
    if min(options.clients, options.inflight, options.seconds, options.workers, options.rounds) <= 0:
        parser.error("--clients, --inflight, --seconds, --workers and --rounds must be positive")

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    loads = {route: Load(options.clients, options.inflight, options.seconds, options.transport, options.workers,
                         route=route) for route in (LOCAL, FORWARDED)}
    work = workdir()
    keep_logs = False
    connector_config = ClusterServer("connector-1", "connector", client_port=free_port())
    area_config = ClusterServer("area-1", "area")
    config = work / "cluster.ini"
    write_cluster_file(config, [connector_config, area_config], options.transport)
    area = twistd_server(work, config, area_config)
    connector = twistd_server(work, config, connector_config)
    servers = (connector, area)
    load = loads[LOCAL]
    print(f"machine: {machine()}; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"cluster: {connector.name} (frontend, {options.transport}) and {area.name} (backend), one process each")
    print(f"load: {load.clients} {load.transport} clients x {load.inflight} requests in flight, "
          f"{load.workers} client processes, {load.warmup:g} s warm-up + {load.seconds:g} s timed per route "
          f"and round, {options.rounds} round(s)")
    rounds: list[dict[str, LoadResult]] = []
    batching: list[dict[str, float]] = []
    samplers: dict[str, PySpy] = {}
    if options.py_spy:
        options.py_spy.mkdir(parents=True, exist_ok=True)
        samplers = {server.name: PySpy(options.py_spy.resolve() / f"forward-{server.name}.txt")
                    for server in servers}
    try:
        area.start()
        connector.start()
        # Both directions of the node link work once this is answered.
        call(connector.port, "area.benchHandler.ready", transport=options.transport)
        for number in range(options.rounds):
            order = (LOCAL, FORWARDED) if number % 2 == 0 else (FORWARDED, LOCAL)
            measured = {}
            for route in order:
                before = call(connector.port, "connector.benchStats.get", transport=options.transport)
                if route == FORWARDED and number == 0 and samplers:
                    def start_spies() -> None:
                        for server in servers:
                            samplers[server.name].start(server.pid, load.seconds)

                    measured[route] = drive(connector, loads[route], start_spies, processes=[area])
                    for spy in samplers.values():
                        spy.wait()
                else:
                    measured[route] = drive(connector, loads[route], processes=[area])
                after = call(connector.port, "connector.benchStats.get", transport=options.transport)
                if route == FORWARDED:
                    batching.append(batch_counts(before, after, area.name))
            rounds.append({route: measured[route] for route in (LOCAL, FORWARDED)})
    except ServerError as e:
        print(f"forward.py: {e}\n(server logs in {work})", file=sys.stderr)
        keep_logs = True
        return 2
    finally:
        for spy in samplers.values():
            spy.wait()
        for server in servers:
            server.stop()
        if not keep_logs:
            shutil.rmtree(work, ignore_errors=True)

    names = [server.name for server in servers]
    print()
    print(table(rounds, names, options.transport))
    print()
    rate = [r[FORWARDED].rate / r[LOCAL].rate for r in rounds]
    cpu = [total_cpu(r[FORWARDED]) / total_cpu(r[LOCAL]) for r in rounds]
    met = "met" if statistics.median(rate) >= AIM else "missed"
    print(f"forwarded / local: rate {summary(rate)} (aim >= {AIM}x: {met}), "
          f"total server CPU per request {summary(cpu)}")
    print()
    print(batch_table(batching, connector.name, area.name))
    if samplers:
        print()
        print(breakdown(rounds[0][FORWARDED], samplers))
    failed = any(result.error_count for r in rounds for result in r.values())
    return 1 if failed else 0


def total_cpu(result: LoadResult) -> float:
    """
    Every server's CPU seconds per completed request, together.
    """
    return sum(result.cpu.values()) / result.completed if result.completed else float("nan")


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
            str(number), "forwarded load", f"{counts['calls']:,.0f}", f"{counts['batches']:,.0f}",
            f"{counts['calls'] / batches:.1f}", f"{counts['bytes'] / batches:,.0f}",
            f"{counts['result_batches']:,.0f}", f"{counts['calls'] / results:.1f}",
        ))
    return columns(rows, left=2)


def breakdown(result: LoadResult, samplers: dict[str, PySpy]) -> str:
    """
    Each server's CPU per forwarded request in round 1, split by where py-spy saw it spent.
    """
    shares = {name: dict(stack_shares(spy.out)) for name, spy in samplers.items()}
    categories = sorted({category for by in shares.values() for category in by},
                        key=lambda c: -max(by.get(c, 0.0) for by in shares.values()))
    per_request = {name: result.cpu[name] / result.completed for name in shares}
    rows: list[tuple[str, ...]] = [("CPU us per forwarded request (py-spy, round 1)", *shares)]
    for category in categories:
        rows.append((category, *(f"{by.get(category, 0.0) * per_request[name] * 1e6:.1f}"
                                 for name, by in shares.items())))
    rows.append(("total", *(f"{per_request[name] * 1e6:.1f}" for name in shares)))
    return columns(rows, left=1)


def table(rounds: list[dict[str, LoadResult]], names: list[str], transport: str) -> str:
    head = ("round", "route", "req/s", *(f"{name} us/req" for name in names), "total us/req",
            *(f"{name} CPU" for name in names), "client CPU", "p50 ms", "p99 ms", "errors")
    rows: list[tuple[str, ...]] = [head]
    for number, measured in enumerate(rounds, 1):
        for route, r in measured.items():
            errors = ", ".join(f"{kind} {count}" for kind, count in r.errors.items()) or "0"
            rows.append((
                str(number),
                f"{route} ({'local' if route == LOCAL else 'forwarded'}, {transport})",
                f"{r.rate:,.0f}",
                *(f"{r.cpu[name] / r.completed * 1e6:.1f}" if r.completed else "nan" for name in names),
                f"{total_cpu(r) * 1e6:.1f}",
                *(f"{r.cpu[name] / r.seconds:.0%}" for name in names),
                f"{r.client_cpu / r.seconds:.0%}",
                f"{r.percentile(50) * 1e3:.1f}",
                f"{r.percentile(99) * 1e3:.1f}",
                errors,
            ))
    return columns(rows, left=2)


if __name__ == "__main__":
    sys.exit(main())
