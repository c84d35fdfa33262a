"""
Echo benchmark: gamenet against a bare Twisted (+ Autobahn) echo server.

    .venv/bin/python bench/echo.py [--transport websocket|tcp] [--clients 100]
        [--inflight 10] [--seconds 10] [--workers 2] [--rounds 1]
        [--profile FILE] [--py-spy DIR]

Starts two servers on free loopback ports, each in its own process:

- bare: bench/bare_echo.py, which answers the Pomelo handshake with a canned
  answer and turns each request package into its response without decoding it;
- gamenet: C{twistd -n gamenet} running C{connector-1} of a generated cluster
  file (the chat example's plugins, C{transport} as asked, heartbeat 30,
  C{messages_per_second} 1000000), whose route C{connector.echoHandler.echo}
  answers the decoded body.

Then drives each in turn with the same client: C{--clients} connections of
L{gamenet.client.Client} spread over C{--workers} processes, each connection
keeping C{--inflight} requests of C{{"text": "hello, world", "n": 42}}
outstanding, for a warm-up second and then C{--seconds} timed; C{--rounds}
times, alternating which server goes first. For each server and round it
prints completed requests per second, the server's CPU time per request
(user + system, from /proc, over the timed window only), its CPU use and the
client processes' (100% is one core), latency percentiles, errors and peak
RSS; then the gamenet/bare ratios, the median over the rounds.

C{--profile} runs gamenet under cProfile; C{--py-spy} samples both servers in
the first round and splits their CPU per request by where it went.

Exit status: 0; 1 when a request failed or got a wrong answer; 2 when a server
did not start or died. Both servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
from functools import partial
from pathlib import Path
from typing import NamedTuple

from _common import (
    REPO, Load, LoadResult, PySpy, Server, ServerError, columns, drive, free_port, gamenet_server, machine,
    peak_rss_kib, summary,
    stack_shares, workdir,
)

AIM = 1.25  # gamenet's CPU per request, at most this many times the bare server's


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--transport", choices=("websocket", "tcp"), default="websocket")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--inflight", type=int, default=10, help="requests in flight per client")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the timed window")
    parser.add_argument("--workers", type=int, default=2, help="client processes")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each server this many times, alternating; ratios are the median")
    parser.add_argument("--profile", type=Path, help="run gamenet under cProfile, writing this file "
                        "(the profiler slows gamenet: do not quote those figures)")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample each server with py-spy (on PATH) over the first round's timed window, "
                             "write the collapsed stacks to DIR and print where the CPU time went")
    options = parser.parse_args()
    if options.py_spy and not shutil.which("py-spy"):
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")
    if min(options.clients, options.inflight, options.seconds, options.workers, options.rounds) <= 0:
        parser.error("--clients, --inflight, --seconds, --workers and --rounds must be positive")

    # SIGTERM (e.g. from timeout(1)) unwinds like Ctrl-C, so that the servers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    load = Load(options.clients, options.inflight, options.seconds, options.transport, options.workers)
    work = workdir()
    keep_logs = False
    bare_port = free_port()
    baseline = "bare Autobahn" if options.transport == "websocket" else "bare Twisted"
    bare = Server(baseline, [sys.executable, str(REPO / "bench" / "bare_echo.py"), "--port", str(bare_port),
                             "--transport", options.transport], bare_port, work)
    gamenet = gamenet_server(work, options.transport, options.profile.resolve() if options.profile else None)
    print(f"machine: {machine()}; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"load: {load.clients} {load.transport} clients x {load.inflight} requests in flight, "
          f"{load.workers} client processes, {load.warmup:g} s warm-up + {load.seconds:g} s timed per server "
          f"and round, {options.rounds} round(s)")
    rounds: list[dict[str, Row]] = []
    samplers = {}
    if options.py_spy:
        options.py_spy.mkdir(parents=True, exist_ok=True)
        samplers = {server.name: PySpy(options.py_spy.resolve() / f"{server.name.replace(' ', '-')}.txt")
                    for server in (bare, gamenet)}
    try:
        bare.start()
        gamenet.start()
        for number in range(options.rounds):
            # Alternate which server goes first, so that a drift in the machine's load favours neither.
            order = (bare, gamenet) if number % 2 == 0 else (gamenet, bare)
            measured = {}
            for server in order:
                spy = samplers.get(server.name) if number == 0 else None
                if spy is None:
                    result = drive(server, load)
                else:
                    result = drive(server, load, partial(spy.start, server.pid, load.seconds))
                    spy.wait()
                measured[server.name] = Row(result, peak_rss_kib(server.pid))
            rounds.append({name: measured[name] for name in (baseline, "gamenet")})
    except ServerError as e:
        print(f"echo.py: {e}\n(server logs in {work})", file=sys.stderr)
        keep_logs = True
        return 2
    finally:
        for spy in samplers.values():
            spy.wait()
        gamenet.stop()
        bare.stop()
        if not keep_logs:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print(table(rounds, load.transport))
    print()
    cpu = [r["gamenet"].result.cpu_per_request / r[baseline].result.cpu_per_request for r in rounds]
    rate = [r["gamenet"].result.rate / r[baseline].result.rate for r in rounds]
    print(f"gamenet / {baseline}: CPU per request {summary(cpu)} (aim <= {AIM}x), rate {summary(rate)}")
    if samplers:
        print()
        print(breakdown(rounds[0], samplers))
    if options.profile:
        import pstats

        print(f"\ngamenet profile in {options.profile}; the top functions by own time:")
        pstats.Stats(str(options.profile)).sort_stats("tottime").print_stats(30)
    failed = any(row.result.error_count for r in rounds for row in r.values())
    return 1 if failed else 0


class Row(NamedTuple):
    result: LoadResult
    peak_rss_kib: int


def breakdown(measured: dict[str, Row], samplers: dict[str, PySpy]) -> str:
    """
    Each server's CPU per request in round 1, split by where py-spy saw it spent.
    """
    shares = {name: dict(stack_shares(spy.out)) for name, spy in samplers.items()}
    categories = sorted({category for by in shares.values() for category in by},
                        key=lambda c: -max(by.get(c, 0.0) for by in shares.values()))
    rows: list[tuple[str, ...]] = [("CPU us per request (py-spy, round 1)", *shares)]
    for category in categories:
        rows.append((category, *(f"{by.get(category, 0.0) * measured[name].result.cpu_per_request * 1e6:.1f}"
                                 for name, by in shares.items())))
    rows.append(("total", *(f"{measured[name].result.cpu_per_request * 1e6:.1f}" for name in shares)))
    return columns(rows, left=1)


def table(rounds: list[dict[str, Row]], transport: str) -> str:
    head = ("round", "server", "req/s", "CPU us/req", "server CPU", "client CPU", "p50 ms", "p99 ms", "errors",
            "peak RSS MiB")
    rows: list[tuple[str, ...]] = [head]
    for number, measured in enumerate(rounds, 1):
        for name, (r, rss) in measured.items():
            errors = ", ".join(f"{kind} {count}" for kind, count in r.errors.items()) or "0"
            rows.append((
                str(number),
                f"{name} ({transport})",
                f"{r.rate:,.0f}",
                f"{r.cpu_per_request * 1e6:.1f}",
                f"{r.server_cpu / r.seconds:.0%}",
                f"{r.client_cpu / r.seconds:.0%}",
                f"{r.percentile(50) * 1e3:.1f}",
                f"{r.percentile(99) * 1e3:.1f}",
                errors,
                f"{rss / 1024:.1f}",
            ))
    return columns(rows, left=2)


if __name__ == "__main__":
    sys.exit(main())
