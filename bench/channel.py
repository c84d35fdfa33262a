"""
Channel push benchmark: the time from one send to the last delivery of a
push to rooms of 10, 100 and 1,000 members spread over two connectors.

    .venv/bin/python bench/channel.py [--rooms 10,100,1000] [--seconds 10]
        [--interval 0.1] [--warmup SECONDS] [--workers 4]
        [--transport websocket|tcp] [--py-spy DIR] [--json FILE]

Starts a cluster without a gate or a master on free loopback ports, each
server its own C{twistd -n --pidfile= --reactor=epoll gamenet --config FILE
--server ID} process (the chat example's plugins and bench/plugins;
heartbeat 30, C{messages_per_second} 1000000): two connectors,
C{connector-1} and C{connector-2}, and one backend, C{area-1}, which holds
the channels.

Then, for each room size M (smallest first), one run of the load robot
(C{gamenet bench}, L{gamenet.robot.measure}) with the scenario
bench/scenarios/channel.py: M clients over C{--workers} worker processes,
client C{i} on connector C{i % 2 + 1}, each joining the channel C{room-M}
through C{area.benchHandler.join} during the warm-up (C{--warmup}, by
default 3 s + 3 ms per member: 6 s for 1,000, which take about 3 s to
connect and join on a 2-core machine). After the warm-up client 0,
the sender (on C{connector-1}), waits until the room has all M members, then
asks C{area.benchHandler.push} every C{--interval} seconds (0.1: ten
pushes a second, which a 2-core machine carries to 1,000 members with the
robot on it, so that the times are a push's and not a queue's) with its
C{time.monotonic()} as C{sent}; the backend pushes C{{"room", "n", "sent"}}
on C{onBench} to the whole channel (one sys call per connector holding
members; each connector encodes the push once and writes it to each
member's connection), and every member, the sender included, records
C{now - sent} for push C{n} on arrival (one clock for every process of the
machine). The sender stops 1 s before the end of the C{--seconds} window,
so that every push sent in the window is delivered in it.

For each room size it prints what the robot counted in the window: pushes
sent (answered), messages seen and deliveries, and the deliveries missing
(pushes x M - deliveries); the time from send until the later connector
got the push (its sys call C{push_uids} started: "reached"), had written it
to every member's transport ("queued") and Twisted had put those bytes on
the sockets, in its next reactor iteration ("written"), medians timed on the
connectors by bench/plugins/stats.py; p50 and p95 over the pushes of the
first and of the last delivery (send to the first member's and to the last
member's arrival, as the clients saw them); the CPU time per push of each
server process and of the robot's workers (user + system, from /proc, over
the window, divided by the pushes sent); errors. Then whether the median
send-to-last-delivery time for the largest room is under the target of 20
ms.

C{--py-spy DIR} samples the three servers over the largest room's window
and splits their CPU per push by where it went. C{--json FILE} writes the
rows and the target as JSON.

A room not yet full when its window opens is counted as the error
C{room_not_full_after_warmup} and warned about (its CPU figures then include
joins: give a longer C{--warmup}), but does not fail the run.

Exit status: 0; 1 when a client failed (connect, join, request), a push was
not delivered to every member or none was sent; 2 when a server did not
start or died. Every server is stopped at the end.
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
    REPO, ClusterServer, PySpy, ServerError, breakdown, call, columns, figure, free_port, machine, robot, running,
    server_cpu, twistd_server, workdir, write_cluster_file,
)

SCENARIO = REPO / "bench" / "scenarios" / "channel.py"
PUSH = "area.benchHandler.push"
PUSH_ROUTE = "onBench"
TARGET = 20.0  # ms: median send-to-last-delivery for the largest room
LATE = "room_not_full_after_warmup"  # the scenario's error when the warm-up was too short: not a failure


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", default="10,100,1000", help="room sizes, comma-separated (default 10,100,1000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per room (default 10)")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between pushes (default 0.1)")
    parser.add_argument("--warmup", type=float,
                        help="seconds for the clients to connect and join before the window "
                             "(default 3 + 0.003 per member)")
    parser.add_argument("--workers", type=int, default=4, help="robot worker processes (default 4)")
    parser.add_argument("--transport", choices=("websocket", "tcp"), default="websocket")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample the servers with py-spy (on PATH) over the largest room's window, "
                             "write the collapsed stacks to DIR and print where the CPU time went")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the rows and the target as JSON to FILE")
    options = parser.parse_args()
    try:
        sizes = sorted({int(size) for size in options.rooms.split(",")})
    except ValueError:
        parser.error("--rooms takes whole numbers separated by commas")
    if min(sizes) <= 0 or options.workers <= 0 or options.interval <= 0 or options.seconds <= 2:
        parser.error("room sizes, --workers and --interval must be positive, --seconds more than 2")
    if options.warmup is not None and options.warmup < 0:
        parser.error("--warmup must not be negative")
    if options.py_spy and not shutil.which("py-spy"):
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")

    # SIGTERM (e.g. from timeout(1)) unwinds like Ctrl-C, so that the servers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = workdir()
    configs = [ClusterServer("connector-1", "connector", client_port=free_port()),
               ClusterServer("connector-2", "connector", client_port=free_port()),
               ClusterServer("area-1", "area")]
    config = work / "cluster.ini"
    write_cluster_file(config, configs, options.transport)
    servers = [twistd_server(work, config, server) for server in configs]
    connectors, area = servers[:2], servers[2]
    scheme = "ws" if options.transport == "websocket" else "tcp"

    def warmup(size: int) -> float:
        return options.warmup if options.warmup is not None else 3.0 + 0.003 * size

    print(f"machine: {machine()}; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"cluster: connector-1, connector-2 (frontends, {options.transport}) and area-1 (backend, holds the "
          "channels), one process each")
    print(f"load: gamenet bench, one run per room of {', '.join(f'{size:,}' for size in sizes)} members over "
          f"{options.workers} workers, half on each connector; warm-up "
          f"{', '.join(f'{warmup(size):g}' for size in sizes)} s + {options.seconds:g} s measured; "
          f"a push every {options.interval * 1e3:g} ms")
    spies: list[tuple[PySpy, Any]] = []
    if options.py_spy:
        options.py_spy.mkdir(parents=True, exist_ok=True)
        spies = [(PySpy(options.py_spy.resolve() / f"channel-{server.name}.txt"), server) for server in servers]
    rows = []
    try:
        with running(work, [area, *connectors]):
            for connector in connectors:
                call(connector.port, "area.benchHandler.ready", transport=options.transport)
            for size in sizes:
                room = f"room-{size}"
                params = {"ports": f"{connectors[0].port},{connectors[1].port}", "room": room, "members": size,
                          "interval": options.interval}
                report = robot(f"{scheme}://127.0.0.1:{connectors[0].port}", "--scenario", SCENARIO,
                               "--clients", size, "--workers", options.workers,
                               *(arg for key, value in params.items() for arg in ("--param", f"{key}={value}")),
                               servers=servers, warmup=warmup(size), seconds=options.seconds,
                               spies=spies if size == sizes[-1] else ())
                timed = [push for connector in connectors
                         for push in call(connector.port, "connector.benchStats.pushes", transport=options.transport)
                         if push[0] == room]
                rows.append(row(size, report, servers, timed))
    except ServerError as e:
        print(f"channel.py: {e}", file=sys.stderr)
        return 2

    names = [server.name for server in servers]
    print()
    print(table(rows, names))
    print("robot: busiest worker " + ", ".join(f"{r['robot_busiest_worker_cpu_percent']}% of a core ({r['members']:,})"
                                                for r in rows))
    largest = rows[-1]
    last = largest["last_ms"]["p50"] if largest["last_ms"] else None
    target = {"ms": TARGET, "members": largest["members"], "last_p50_ms": last,
              "met": last is not None and last < TARGET}
    print(f"\ntarget: median send-to-last-delivery under {TARGET:g} ms for {largest['members']:,} members over two "
          f"connectors: " + (f"{last:.1f} ms, {'met' if target['met'] else 'missed'}" if last is not None
                             else "no push delivered, missed"))
    if spies:
        print()
        print(breakdown(f"CPU ms per push to {largest['members']:,} members (py-spy)", spies,
                        largest["cpu_ms_per_push"], ".2f"))
    late = [f"{r['members']:,}" for r in rows if LATE in r["errors"]]
    for warning in sorted({w for r in rows for w in r["warnings"]}) + (
            [f"room(s) of {', '.join(late)} not full when the window opened: give a longer --warmup"] if late else []):
        print(f"warning: {warning}")
    if options.json:
        options.json.write_text(json.dumps({"benchmark": "channel", "machine": machine(), "rows": rows,
                                            "target": target}, indent=1) + "\n")
    failed = any(set(r["errors"]) - {LATE} or r["missing"] or not r["pushes"] for r in rows)
    return 1 if failed else 0


def median_ms(values: list[float]) -> float | None:
    return round(statistics.median(values) * 1e3, 3) if values else None


def row(size: int, report: dict[str, Any], servers: Any, timed: list[list[Any]]) -> dict[str, Any]:
    """
    What the robot run on a room of C{size} measured, as a row of the table
    and of the JSON; C{timed}: the connectors' timed pushes to the room
    (C{connector.benchStats.pushes}: C{[room, n, sent, start, end, members
    there, on sockets]}).
    """
    pushes = report["routes"].get(PUSH, {}).get("completed", 0)
    fanout = report["pushes"]["fanout"].get(PUSH_ROUTE, {"messages": 0, "deliveries": 0, "first_ms": None,
                                                           "last_ms": None})
    by_push: dict[Any, list[list[Any]]] = {}
    for push in timed:
        by_push.setdefault(push[1], []).append(push)
    edges = {edge: [max(push[column] - push[2] for push in found) for found in by_push.values()
                    if all(len(push) > column for push in found)]
             for edge, column in (("reached", 3), ("queued", 4), ("written", 6))}
    cpu = {server.name: server_cpu(report, server) for server in servers}
    return {
        "members": size, "warmup": report["warmup"], "seconds": report["measured"], "pushes": pushes,
        "messages": fanout["messages"], "deliveries": fanout["deliveries"],
        "missing": pushes * size - fanout["deliveries"],
        **{f"{edge}_p50_ms": median_ms(values) for edge, values in edges.items()},
        "first_ms": fanout["first_ms"], "last_ms": fanout["last_ms"],
        "cpu_ms_per_push": {name: round(c / pushes * 1e3, 3) if pushes else None for name, c in cpu.items()},
        "robot_cpu_ms_per_push": round(report["robot"]["cpu_seconds"] / pushes * 1e3, 3) if pushes else None,
        "robot_busiest_worker_cpu_percent": report["robot"]["busiest_worker_cpu_percent"],
        "connect_ms": report["connect_ms"], "errors": report["errors"], "warnings": report["warnings"],
    }


def table(rows: list[dict[str, Any]], names: list[str]) -> str:
    head = ("members", "pushes", "messages", "deliveries", "missing", "reached p50 ms", "queued p50 ms",
            "written p50 ms", "first p50 ms", "first p95 ms", "last p50 ms", "last p95 ms",
            *(f"{name} ms/push" for name in names), "robot ms/push", "errors")
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        first, last = r["first_ms"] or {}, r["last_ms"] or {}
        lines.append((
            f"{r['members']:,}", f"{r['pushes']:,}", f"{r['messages']:,}", f"{r['deliveries']:,}",
            f"{r['missing']:,}", figure(r["reached_p50_ms"]), figure(r["queued_p50_ms"]), figure(r["written_p50_ms"]),
            figure(first.get("p50")), figure(first.get("p95")), figure(last.get("p50")), figure(last.get("p95")),
            *(figure(r["cpu_ms_per_push"][name], ".2f") for name in names), figure(r["robot_cpu_ms_per_push"], ".2f"),
            ", ".join(f"{kind} {count}" for kind, count in r["errors"].items()) or "0",
        ))
    return columns(lines, left=0)


if __name__ == "__main__":
    sys.exit(main())
