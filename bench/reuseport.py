"""
Shared client port benchmark: one frontend process against two on the same port (C{reuse_port}).

    .venv/bin/python bench/reuseport.py [--transport websocket|tcp] [--clients 100]
        [--inflight 10] [--seconds 10] [--workers 2] [--steps 2000] [--rounds 1]
        [--json FILE]

Starts, each server its own C{twistd -n --pidfile= --reactor=epoll gamenet
--config FILE --server ID} process on free loopback ports, from generated
cluster files without a master (the chat example's plugins and
bench/plugins, C{transport} as asked, heartbeat 30, C{messages_per_second}
1000000, C{reuse_port = true}):

- C{1 process}: C{connector-1} alone on its client port;
- C{2 processes}: C{connector-1} and C{connector-2} of another file, each
  with its own id, node port and sessions, both listening on one client
  port with C{SO_REUSEPORT}, so that the kernel spreads the robot's
  connections between them.

Then runs the load robot (C{gamenet bench}) on each in turn with the same
load: C{--clients} clients over C{--workers} processes, each keeping
C{--inflight} requests outstanding, every answer checked (C{--echo}), 1 s
of warm-up and then C{--seconds} measured; two loads, each answered by the
frontend itself:

- C{echo}: C{{"text": "hello, world", "n": 42}} to
  C{connector.echoHandler.echo}, the cheapest request there is;
- C{work}: the same body with C{"steps": --steps} to
  C{connector.workHandler.work} (bench/plugins/work.py), which first spends
  that many steps of pure-Python arithmetic (about 80 us per 1,000 here), a
  stand-in for the game's own logic.

C{--rounds} times, alternating which setup goes first. For each load, setup
and round it prints completed requests per second, the servers' CPU time per
request (user + system of every server process together, from /proc, over
the measured window only), their CPU use and each process's share of it,
the robot's CPU use (100% is one core), latency percentiles and errors; then
for each load the 2/1 ratios of rate and CPU per request, the median over
the rounds.

The robot runs on the same machine: what it takes of the cores is not left
for the servers, so the rate the second process adds is bounded by the
cores the robot leaves idle.

Exit status: 0; 1 when a request failed or got a wrong answer; 2 when a server
did not start or died. The servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    ClusterServer, Server, ServerError, columns, figure, free_port, machine, robot, running, summary, twistd_server,
    workdir, write_cluster_file,
)

BODY = {"text": "hello, world", "n": 42}
ROUTES = {"echo": "connector.echoHandler.echo", "work": "connector.workHandler.work"}
SETUPS = {"1 process": ("connector-1",), "2 processes": ("connector-1", "connector-2")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=("websocket", "tcp"), default="websocket")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=10, help="requests in flight per client")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the measured window")
    parser.add_argument("--workers", type=int, default=2, help="robot worker processes")
    parser.add_argument("--steps", type=int, default=2000, help="steps of CPU work per request of the work load")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each setup this many times, alternating; ratios are the median")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the rows and ratios as JSON to FILE")
    options = parser.parse_args()
    if min(options.clients, options.inflight, options.seconds, options.workers, options.steps, options.rounds) <= 0:
        parser.error("--clients, --inflight, --seconds, --workers, --steps and --rounds must be positive")

    # SIGTERM (e.g. from timeout(1)) unwinds like Ctrl-C, so that the servers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    print(f"machine: {machine()}; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"load: {options.clients} clients x {options.inflight} requests in flight over {options.transport}, "
          f"{options.workers} robot workers, 1 s warm-up + {options.seconds:g} s measured per setup and round, "
          f"{options.rounds} round(s)")
    try:
        rounds = measure(options)
    except ServerError as e:
        print(f"reuseport.py: {e}", file=sys.stderr)
        return 2
    one, two = SETUPS
    print()
    print(table(rounds, options.transport))
    print()
    document: dict[str, Any] = {"machine": machine(), "transport": options.transport, "steps": options.steps,
                                "rows": rows(rounds), "loads": {}}
    for load in ROUTES:
        rate = [r[load, two]["requests_per_second"] / r[load, one]["requests_per_second"] for r in rounds]
        cpu = [r[load, two]["server"]["cpu_us_per_request"] / r[load, one]["server"]["cpu_us_per_request"]
               for r in rounds]
        print(f"{load}: 2 processes / 1: rate {summary(rate)}, CPU per request {summary(cpu)}")
        document["loads"][load] = {"rate_ratio": statistics.median(rate), "cpu_ratio": statistics.median(cpu)}
    if options.json:
        options.json.write_text(json.dumps(document, indent=2))
    failed = any(report["error_count"] or not report["completed"] for r in rounds for report in r.values())
    return 1 if failed else 0


def measure(options: argparse.Namespace) -> list[dict[str, Any]]:
    """
    Start both setups, run the rounds, stop them.

    @return: each round's robot report by load and setup.
    @raise ServerError: a server did not start or died (its log is kept and named).
    """
    work = workdir()
    processes: dict[str, list[Server]] = {}
    for number, (setup, ids) in enumerate(SETUPS.items(), 1):
        port = free_port()
        servers = [ClusterServer(server_id, "connector", client_port=port) for server_id in ids]
        config = work / f"setup-{number}.ini"
        write_cluster_file(config, servers, options.transport, reuse_port="true")
        processes[setup] = []
        for server in servers:
            process = twistd_server(work, config, server)
            process.name = f"{setup}: {server.id}"
            process.log_path = work / f"setup-{number}-{server.id}.log"
            processes[setup].append(process)
    everything = [process for group in processes.values() for process in group]
    scheme = "ws" if options.transport == "websocket" else "tcp"
    rounds: list[dict[str, Any]] = []
    with running(work, everything):
        for process in everything:
            # The port accepted as soon as the first process of a setup
            # listened: wait until this one says it listens too.
            wait_logged(process, "listening for clients")
        for number in range(options.rounds):
            # Alternate which setup goes first, so that a drift in the machine's load favours neither.
            order = list(SETUPS) if number % 2 == 0 else list(reversed(SETUPS))
            measured = {}
            for load, route in ROUTES.items():
                body = BODY if load == "echo" else {**BODY, "steps": options.steps}
                for setup in order:
                    servers = processes[setup]
                    measured[load, setup] = robot(
                        f"{scheme}://127.0.0.1:{servers[0].port}", "--route", route, "--body", json.dumps(body),
                        "--echo", "--clients", options.clients, "--inflight", options.inflight, "--workers",
                        options.workers, servers=servers, seconds=options.seconds)
            rounds.append({(load, setup): measured[load, setup] for load in ROUTES for setup in SETUPS})
    return rounds


def wait_logged(process: Server, text: str, timeout: float = 30.0) -> None:
    """
    Wait until C{process} has written C{text} to its log.

    @raise ServerError: it exited, or did not write it in time.
    """
    deadline = time.monotonic() + timeout
    while text not in process.log_path.read_text(errors="replace"):
        process.check()
        if time.monotonic() > deadline:
            raise ServerError(f"{process.name} did not log {text!r} in {timeout:g} s:\n{process.log_tail()}")
        time.sleep(0.05)


def rows(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    One dict per load, setup and round: the figures of the table.
    """
    out = []
    for number, measured in enumerate(rounds, 1):
        for (load, setup), report in measured.items():
            server = report["server"]
            by_pid = [float(cpu) for cpu in server["cpu_seconds_by_pid"].values()]
            out.append({
                "round": number, "load": load, "setup": setup, "requests_per_second": report["requests_per_second"],
                "cpu_us_per_request": server["cpu_us_per_request"], "server_cpu_percent": server["cpu_percent"],
                "cpu_shares": [round(cpu / (sum(by_pid) or 1), 2) for cpu in by_pid],
                "robot_cpu_percent": round(report["robot"]["cpu_seconds"] / report["measured"] * 100, 1),
                "p50_ms": (report["latency_ms"] or {}).get("p50"), "p99_ms": (report["latency_ms"] or {}).get("p99"),
                "errors": report["errors"],
            })
    return out


def table(rounds: list[dict[str, Any]], transport: str) -> str:
    lines: list[tuple[str, ...]] = [("round", "load", "setup", "req/s", "CPU us/req", "server CPU", "CPU split",
                                     "robot CPU", "p50 ms", "p99 ms", "errors")]
    for row in rows(rounds):
        lines.append((
            str(row["round"]), row["load"], f"{row['setup']} ({transport})", f"{row['requests_per_second']:,.0f}",
            figure(row["cpu_us_per_request"]), f"{row['server_cpu_percent']:.0f}%",
            "/".join(f"{share:.0%}" for share in row["cpu_shares"]), f"{row['robot_cpu_percent']:.0f}%",
            figure(row["p50_ms"]), figure(row["p99_ms"]),
            ", ".join(f"{kind} {n}" for kind, n in row["errors"].items()) or "0",
        ))
    return columns(lines, left=3)


if __name__ == "__main__":
    sys.exit(main())
