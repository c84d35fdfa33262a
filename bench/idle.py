"""
Idle-connection benchmark: what held WebSocket connections cost gamenet at
rest, against a bare Autobahn server holding the same connections.

    .venv/bin/python bench/idle.py [--connections 1000,10000] [--heartbeat 30]
        [--seconds 30] [--workers 4] [--transport websocket|tcp] [--json FILE]

For each count N of C{--connections}, and for each of two servers, started
fresh on a free loopback port in its own process:

- bare: bench/bare_echo.py (Autobahn over WebSocket, a Twisted C{Protocol}
  over TCP), which answers the handshake (heartbeat C{--heartbeat}) and
  each heartbeat, and keeps nothing per connection but the protocol object;
- gamenet: C{twistd -n gamenet} running C{connector-1} of a generated
  cluster file (the chat example's plugins, C{heartbeat} C{--heartbeat},
  C{max_connections} N + 100, the other limits at their defaults),

the load robot (C{gamenet bench --idle}) opens N clients over C{--workers}
processes; each completes the handshake, sends its heartbeats as a Pomelo
client does and nothing else. The warm-up (time to connect them all:
C{N / 250 + 5} seconds unless C{--warmup}) is followed by C{--seconds}
measured at rest. Reported for each server: the connections held; the
server's resident memory (VmRSS) before the first client and at the end of
the window, and the growth per connection; its CPU over the window, as a
share of one core (the heartbeats, and gamenet's liveness sweep); then the
gamenet/bare ratios.

The targets (issue 6): under 30 KiB of server memory per held WebSocket
connection at 10,000 connections, and under 5% of a core for their heartbeats.

Exit status: 0; 1 when a client failed or was dropped; 2 when a server did
not start or died. The servers are stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from _common import (
    REPO, Server, ServerError, columns, figure, free_port, gamenet_server, machine, robot, running, workdir,
)

AIM_KIB = 30.0  # KiB of server memory per held WebSocket connection at 10,000 connections
AIM_CPU = 5.0  # percent of a core for their heartbeats


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="1000,10000", help="comma-separated counts (default 1000,10000)")
    parser.add_argument("--heartbeat", type=float, default=30.0,
                        help="heartbeat interval in seconds, for both servers (default 30, gamenet's default)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the measured window at rest")
    parser.add_argument("--warmup", type=float, help="seconds to connect the clients (default N / 250 + 5)")
    parser.add_argument("--workers", type=int, default=4, help="robot worker processes")
    parser.add_argument("--transport", choices=("websocket", "tcp"), default="websocket")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the rows as JSON to FILE")
    options = parser.parse_args()
    try:
        counts = [int(n) for n in options.connections.split(",")]
    except ValueError:
        parser.error("--connections takes comma-separated numbers")
    if min(counts) <= 0 or options.seconds <= 0 or options.workers <= 0 or options.heartbeat <= 0:
        parser.error("--connections, --seconds, --workers and --heartbeat must be positive")

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    print(f"machine: {machine()}; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"load: idle {options.transport} clients, heartbeat {options.heartbeat:g} s, {options.workers} robot "
          f"workers, connect then {options.seconds:g} s measured at rest")
    rows: list[dict[str, Any]] = []
    for count in counts:
        for name in ("bare", "gamenet"):
            try:
                rows.append(measure(name, count, options))
            except ServerError as e:
                print(f"idle.py: {e}", file=sys.stderr)
                return 2
    print()
    print(table(rows))
    print()
    ratios = []
    for count in counts:
        bare, gamenet = (row for row in rows if row["connections"] == count)
        ratio = {"connections": count,
                 "memory_ratio": round(gamenet["kib_per_connection"] / bare["kib_per_connection"], 2)
                 if bare["kib_per_connection"] > 0 else None,
                 "cpu_ratio": round(gamenet["cpu_percent"] / bare["cpu_percent"], 2) if bare["cpu_percent"] else None}
        ratios.append(ratio)
        verdict = ""
        if count == 10000 and options.transport == "websocket":
            met = gamenet["kib_per_connection"] < AIM_KIB and gamenet["cpu_percent"] < AIM_CPU
            verdict = (f"; target under {AIM_KIB:g} KiB and {AIM_CPU:g}% of a core at 10,000: "
                       f"{'met' if met else 'missed'}")
        print(f"{count:,} connections: gamenet {gamenet['kib_per_connection']:.1f} KiB per connection and "
              f"{gamenet['cpu_percent']:.2f}% of a core; gamenet / {bare['server']}: memory "
              f"{ratio['memory_ratio'] or '-'}x, CPU {ratio['cpu_ratio'] or '-'}x{verdict}")
    if options.json:
        options.json.write_text(json.dumps({"machine": machine(), "heartbeat": options.heartbeat,
                                            "transport": options.transport, "rows": rows, "ratios": ratios},
                                           indent=2))
    return 1 if any(row["errors"] or row["held"] < row["connections"] for row in rows) else 0


def measure(name: str, count: int, options: argparse.Namespace) -> dict[str, Any]:
    """
    Start one server, hold C{count} idle connections on it with the robot, stop it.

    @raise ServerError: the server did not start or died (its log is kept and named).
    """
    work = workdir()
    if name == "bare":
        port = free_port()
        server = Server(f"bare {'Autobahn' if options.transport == 'websocket' else 'Twisted'}",
                        [sys.executable, str(REPO / "bench" / "bare_echo.py"), "--port", str(port), "--transport",
                         options.transport, "--heartbeat", str(options.heartbeat)], port, work)
    else:
        server = gamenet_server(work, options.transport, heartbeat=options.heartbeat, max_connections=count + 100)
    warmup = options.warmup if options.warmup is not None else count / 250 + 5
    scheme = "ws" if options.transport == "websocket" else "tcp"
    with running(work, [server]):
        report = robot(f"{scheme}://127.0.0.1:{server.port}", "--idle", "--clients", count, "--workers",
                       min(options.workers, count), "--timeout", 30, servers=[server], warmup=warmup,
                       seconds=options.seconds)
    rss = report["server"]["rss_kib"][str(server.pid)]
    held = report["clients"]["connected"]
    return {
        "server": server.name, "connections": count, "held": held,
        "connect_p50_ms": report["connect_ms"]["p50"] if report["connect_ms"] else None,
        "rss_before_mib": round(rss["before"] / 1024, 1), "rss_end_mib": round(rss["end"] / 1024, 1),
        "kib_per_connection": round((rss["end"] - rss["before"]) / held, 2) if held else 0.0,
        "cpu_percent": report["server"]["cpu_percent"], "robot_cpu_seconds": report["robot"]["cpu_seconds"],
        "errors": report["errors"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines: list[tuple[str, ...]] = [("connections", "server", "held", "connect p50 ms", "RSS before MiB",
                                     "RSS at rest MiB", "KiB/connection", "CPU at rest", "errors")]
    for row in rows:
        lines.append((
            f"{row['connections']:,}", row["server"], f"{row['held']:,}", figure(row["connect_p50_ms"]),
            f"{row['rss_before_mib']:.1f}", f"{row['rss_end_mib']:.1f}", f"{row['kib_per_connection']:.1f}",
            f"{row['cpu_percent']:.2f}%", ", ".join(f"{kind} {n}" for kind, n in row["errors"].items()) or "0",
        ))
    return columns(lines, left=2)


if __name__ == "__main__":
    sys.exit(main())
