"""
Echo benchmark: gamenet's frontend-local echo against a bare Twisted (+ Autobahn) echo server.

    .venv/bin/python bench/echo.py [--transport websocket|tcp|both] [--clients 100]
        [--inflight 10] [--seconds 10] [--workers 2] [--rounds 1] [--json FILE]
        [--profile FILE] [--py-spy DIR] [--metrics | --protobuf | --against TREE]

For each transport (both by default, WebSocket first), starts two servers on
free loopback ports, each in its own process:

- bare: bench/bare_echo.py, which answers the Pomelo handshake with a canned
  answer and turns each request package into its response without decoding it
  (Autobahn's C{onMessage}/C{sendMessage} over WebSocket, a Twisted
  C{Protocol} over TCP);
- gamenet: C{twistd -n gamenet} running C{connector-1} of a generated cluster
  file (the chat example's plugins, C{transport} as asked, heartbeat 30,
  C{messages_per_second} 1000000), whose route C{connector.echoHandler.echo}
  answers the decoded body.

Then runs the load robot (C{gamenet bench}) on each in turn with the same
load: C{--clients} clients over C{--workers} processes, each keeping
C{--inflight} requests of C{{"text": "hello, world", "n": 42}} outstanding,
every answer checked against the body (C{--echo}), 1 s of warm-up and then
C{--seconds} measured; C{--rounds} times, alternating which server goes
first. For each server and round it prints completed requests per second, the
server's CPU time per request (user + system, from /proc, over the measured
window only), its CPU use and the robot's (100% is one core), latency
percentiles, errors and peak RSS; then the gamenet/bare ratios, the median
over the rounds.

C{--metrics} measures the cost of counting instead: gamenet with metrics on
(a C{metrics_port}; named C{gamenet+metrics}) against the same gamenet with
them off, in place of the bare server, and checks after each round that the
server counted every request (one scrape of C{/metrics}).

C{--protobuf} measures protobuf bodies instead: gamenet with a C{protos_dir}
whose schemas cover the echo route both ways (named C{gamenet+protobuf}; the
robot's clients then send and check protobuf) against the same gamenet with
JSON bodies, in place of the bare server.

C{--against TREE} measures a change instead: gamenet of this work tree
against the gamenet of another (named C{gamenet-before}; say a git worktree
of the commit before the change), in place of the bare server: the change's
before and after in one run.

C{--profile} runs gamenet under cProfile (the last transport's server keeps
the file); C{--py-spy} samples both servers in the first round and splits
their CPU per request by where it went.

Exit status: 0; 1 when a request failed or got a wrong answer; 2 when a server
did not start or died. The servers are stopped at the end.
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
    REPO, PySpy, Server, ServerError, breakdown, columns, figure, free_port, gamenet_server, machine, robot, running,
    summary, workdir,
)

AIM_CPU = 1.25  # gamenet's CPU per request, at most this many times the bare server's
AIM_RATE = 0.8  # gamenet's rate, at least this share of the bare server's
AIM_METRICS_CPU = 1.05  # gamenet's CPU per request with metrics on, at most this many times with them off
BODY = {"text": "hello, world", "n": 42}
ECHO_PROTO = {"connector.echoHandler.echo": {"required string text": 1, "required uInt32 n": 2}}
BASELINES = {"websocket": "bare Autobahn", "tcp": "bare Twisted"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=("websocket", "tcp", "both"), default="both")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=10, help="requests in flight per client")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the measured window")
    parser.add_argument("--workers", type=int, default=2, help="robot worker processes")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each server this many times, alternating; ratios are the median")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the rows and ratios as JSON to FILE")
    parser.add_argument("--profile", type=Path, help="run gamenet under cProfile, writing this file "
                        "(the profiler slows gamenet: do not quote those figures)")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample each server with py-spy (on PATH) over the first round's window, "
                             "write the collapsed stacks to DIR and print where the CPU time went")
    modes = parser.add_mutually_exclusive_group()
    modes.add_argument("--metrics", action="store_true",
                       help="measure gamenet with metrics on against gamenet with them off, not the bare server")
    modes.add_argument("--protobuf", action="store_true",
                       help="measure gamenet with protobuf bodies against gamenet with JSON, not the bare server")
    modes.add_argument("--against", type=Path, metavar="TREE",
                       help="measure gamenet against the gamenet of another work tree, not the bare server")
    options = parser.parse_args()
    if options.py_spy and not shutil.which("py-spy"):
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")
    if min(options.clients, options.inflight, options.seconds, options.workers, options.rounds) <= 0:
        parser.error("--clients, --inflight, --seconds, --workers and --rounds must be positive")

    # SIGTERM (e.g. from timeout(1)) unwinds like Ctrl-C, so that the servers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    print(f"machine: {machine()}; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"load: {options.clients} clients x {options.inflight} requests in flight, {options.workers} robot "
          f"workers, 1 s warm-up + {options.seconds:g} s measured per server and round, {options.rounds} round(s)")
    transports = ("websocket", "tcp") if options.transport == "both" else (options.transport,)
    document: dict[str, Any] = {"machine": machine(), "transports": {}}
    failed = False
    for transport in transports:
        try:
            rounds, spies = measure(transport, options)
        except ServerError as e:
            print(f"echo.py: {e}", file=sys.stderr)
            return 2
        baseline, subject = pair(transport, options)
        if any(not report["completed"] for r in rounds for report in r.values()):
            print(table(rounds, transport), f"\necho.py: a run completed no request over {transport}", file=sys.stderr)
            return 1
        cpu = [r[subject]["server"]["cpu_us_per_request"] / r[baseline]["server"]["cpu_us_per_request"]
               for r in rounds]
        rate = [r[subject]["requests_per_second"] / r[baseline]["requests_per_second"] for r in rounds]
        print()
        print(table(rounds, transport))
        print()
        if options.metrics:
            aims = {"cpu_ratio_at_most": AIM_METRICS_CPU}
            print(f"gamenet with metrics / without: CPU per request {summary(cpu)} (aim <= {AIM_METRICS_CPU}x), "
                  f"rate {summary(rate)}")
        elif options.protobuf:
            aims = {}  # a cost to know, not a bar: pure-Python protobuf against C JSON
            print(f"gamenet with protobuf bodies / JSON: CPU per request {summary(cpu)}, rate {summary(rate)}")
        elif options.against:
            aims = {}
            print(f"gamenet / gamenet-before: CPU per request {summary(cpu)}, rate {summary(rate)}")
        else:
            aims = {"cpu_ratio_at_most": AIM_CPU, "rate_ratio_at_least": AIM_RATE}
            print(f"gamenet / {baseline}: CPU per request {summary(cpu)} (aim <= {AIM_CPU}x), "
                  f"rate {summary(rate)} (aim >= {AIM_RATE}x)")
        if spies:
            print()
            print(breakdown("CPU us per request (py-spy, round 1)", spies,
                            {name: report["server"]["cpu_us_per_request"] for name, report in rounds[0].items()}))
        document["transports"][transport] = {
            "baseline": baseline, "subject": subject, "rows": rows(rounds),
            "cpu_ratio": statistics.median(cpu), "rate_ratio": statistics.median(rate), "aims": aims,
        }
        failed = failed or any(report["error_count"] for r in rounds for report in r.values())
    if options.json:
        options.json.write_text(json.dumps(document, indent=2))
    if options.profile:
        import pstats

        print(f"\ngamenet profile in {options.profile}; the top functions by own time:")
        pstats.Stats(str(options.profile)).sort_stats("tottime").print_stats(30)
    return 1 if failed else 0


def pair(transport: str, options: argparse.Namespace) -> tuple[str, str]:
    """
    The names of the baseline and of the server compared with it.
    """
    if options.metrics:
        return "gamenet", "gamenet+metrics"
    if options.protobuf:
        return "gamenet", "gamenet+protobuf"
    if options.against:
        return "gamenet-before", "gamenet"
    return BASELINES[transport], "gamenet"


def measure(transport: str, options: argparse.Namespace) -> tuple[list[dict[str, Any]], list[tuple[PySpy, Server]]]:
    """
    Start the baseline (the bare server, or gamenet with metrics off) and
    gamenet for C{transport}, run the rounds, stop them.

    @return: each round's robot reports by server name, and the py-spy samplers of round 1 with their servers.
    @raise ServerError: a server did not start or died (its log is kept and named).
    """
    work = workdir()
    baseline, subject = pair(transport, options)
    profile = options.profile.resolve() if options.profile else None
    metrics_port = free_port() if options.metrics else 0
    if options.against:
        base = gamenet_server(work, transport, name=baseline, tree=options.against.resolve())
    elif options.metrics or options.protobuf:
        base = gamenet_server(work, transport)
    else:
        bare_port = free_port()
        base = Server(baseline, [sys.executable, str(REPO / "bench" / "bare_echo.py"), "--port", str(bare_port),
                                 "--transport", transport], bare_port, work)
    if options.protobuf:
        protos = work / "protos"
        protos.mkdir(exist_ok=True)
        for name in ("clientProtos.json", "serverProtos.json"):
            (protos / name).write_text(json.dumps(ECHO_PROTO))
        gamenet = gamenet_server(work, transport, profile, name=subject, protos_dir=str(protos))
    else:
        gamenet = gamenet_server(work, transport, profile, metrics_port)
    samplers = {}
    if options.py_spy:
        options.py_spy.mkdir(parents=True, exist_ok=True)
        samplers = {server.name: PySpy(options.py_spy.resolve() / f"{transport}-{server.name.replace(' ', '-')}.txt")
                    for server in (base, gamenet)}
    scheme = "ws" if transport == "websocket" else "tcp"
    rounds: list[dict[str, Any]] = []
    with running(work, [base, gamenet]):
        for number in range(options.rounds):
            # Alternate which server goes first, so that a drift in the machine's load favours neither.
            order = (base, gamenet) if number % 2 == 0 else (gamenet, base)
            measured = {}
            for server in order:
                spy = samplers.get(server.name) if number == 0 else None
                measured[server.name] = robot(
                    f"{scheme}://127.0.0.1:{server.port}", "--route", "connector.echoHandler.echo",
                    "--body", json.dumps(BODY), "--echo", "--clients", options.clients, "--inflight",
                    options.inflight, "--workers", options.workers, servers=[server], seconds=options.seconds,
                    spies=[(spy, server)] if spy else ())
            if metrics_port:
                check_counted(metrics_port, measured[subject])
            rounds.append({name: measured[name] for name in (baseline, subject)})
    return rounds, [(samplers[server.name], server) for server in (base, gamenet) if server.name in samplers]


def check_counted(port: int, report: dict[str, Any]) -> None:
    """
    Scrape C{/metrics} on C{port} and check that the echo route's request
    count covers the robot's answered requests.

    @raise ServerError: it does not (the metrics were not on, or miscounted).
    """
    from urllib.request import urlopen

    from prometheus_client.parser import text_string_to_metric_families

    with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode("utf-8")
    counted = sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
                  if sample.name == "gamenet_requests_total"
                  and sample.labels.get("route") == "connector.echoHandler.echo")
    if counted < report["completed"]:
        raise ServerError(f"gamenet+metrics counted {counted:.0f} echo requests, fewer than the "
                          f"{report['completed']} answered")
    print(f"gamenet+metrics counted {counted:,.0f} echo requests in all (the robot had {report['completed']:,} "
          "answered in the window)", file=sys.stderr)


def rows(rounds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """
    One dict per server and round: the figures of the table.
    """
    out = []
    for number, measured in enumerate(rounds, 1):
        for name, report in measured.items():
            server = report["server"]
            out.append({
                "round": number, "server": name, "requests_per_second": report["requests_per_second"],
                "cpu_us_per_request": server["cpu_us_per_request"], "server_cpu_percent": server["cpu_percent"],
                "robot_cpu_percent": round(report["robot"]["cpu_seconds"] / report["measured"] * 100, 1),
                "p50_ms": (report["latency_ms"] or {}).get("p50"), "p99_ms": (report["latency_ms"] or {}).get("p99"),
                "errors": report["errors"], "peak_rss_mib": round(max(server["peak_rss_kib"].values()) / 1024, 1),
            })
    return out


def table(rounds: list[dict[str, Any]], transport: str) -> str:
    lines: list[tuple[str, ...]] = [("round", "server", "req/s", "CPU us/req", "server CPU", "robot CPU", "p50 ms",
                                     "p99 ms", "errors", "peak RSS MiB")]
    for row in rows(rounds):
        lines.append((
            str(row["round"]), f"{row['server']} ({transport})", f"{row['requests_per_second']:,.0f}",
            figure(row["cpu_us_per_request"]), f"{row['server_cpu_percent']:.0f}%", f"{row['robot_cpu_percent']:.0f}%",
            figure(row["p50_ms"]), figure(row["p99_ms"]),
            ", ".join(f"{kind} {n}" for kind, n in row["errors"].items()) or "0", f"{row['peak_rss_mib']:.1f}",
        ))
    return columns(lines, left=2)


if __name__ == "__main__":
    sys.exit(main())
