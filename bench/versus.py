"""
gamenet against pinus: the server CPU per message and the rate of both on
four paths, driven by the same load robot, alternating, in one run.

    .venv/bin/python bench/versus.py [--rounds 1] [--seconds 10] [--workers 2]
        [--only echo,forward,chat-10x10,chat-2x200] [--quick] [--py-spy DIR] [--json FILE]

Starts two clusters on free loopback ports, each server its own process:

- gamenet: C{gate-1} and C{connector-1} (frontends, WebSocket), C{area-1}
  and C{chat-1} (backends), C{twistd -n --pidfile= --reactor=epoll gamenet
  --config FILE --server ID} from a generated cluster file without a master
  (the chat example's plugins and bench/plugins; heartbeat 30,
  C{messages_per_second} 1000000);
- pinus (the application in bench/pinus/, pinus from the npm registry at the
  version its package-lock.json pins, installed with C{npm ci} when missing):
  the same four servers, C{node app.js env=bench serverType=TYPE id=ID ...},
  and the master pinus needs for its servers to find each other
  (C{mode=stand-alone}: it starts none itself); hybrid connector (WebSocket),
  JSON bodies, no route dictionary, no protobuf, heartbeat 30.

Then, per path and round, one run of the load robot (C{gamenet bench},
L{gamenet.robot.measure}) on each cluster, gamenet first in odd rounds and
pinus first in even ones, after a warm-up of 1 s (echo paths) or 2 s plus
10 ms per client (chat: the clients connect through the gate and enter
their rooms):

- C{echo}: C{connector.echoHandler.echo}, answered by the connector itself,
  100 clients x 10 requests in flight (C{--echo});
- C{forward}: C{area.echoHandler.echo}, which the connector forwards to
  C{area-1}, same load;
- C{chat-10x10}: the chat demo (examples/chat/robot.py, the same routes on
  both: C{gate.gateHandler.queryEntry}, C{connector.entryHandler.enter},
  C{chat.chatHandler.send}, C{onChat} pushes), 10 rooms of 10 users, each
  sending 5 messages a second to its room;
- C{chat-2x200}: the same, 2 rooms of 200 users, 1 message a second each
  (80,000 pushes a second).

A message is a request answered or a push received by the robot, in the
measured window. CPU is user + system time from /proc over the window, of
the servers on the path, the same on both sides: C{connector-1} (echo);
C{connector-1} and C{area-1} (forward); C{gate-1}, C{connector-1} and
C{chat-1} (chat). pinus's master and the robot are not counted. For each
path it prints each run's rate, CPU per message, CPU use and latency, then
the gamenet/pinus ratios of the CPU per message (the aim: at most 1.0) and
of the rate (the median over the rounds, with each round's).

C{--quick}: 2 s windows, shorter warm-ups, 20 echo clients and 50 chat
clients (10 rooms of 5, 2 rooms of 25): checks that it works, not for
figures. C{--py-spy DIR} samples
gamenet's servers over the first round of each path and splits their CPU per
message by where it went. C{--json FILE} writes the rows and ratios.

Without node or npm, or when C{npm ci} fails, nothing is measured: the
reason is printed (and written as C{skipped} to the JSON) and the exit
status is 0. Exit status otherwise: 0; 1 when a request to gamenet failed
(pinus's errors are shown and warned about: on a busy machine its
connections sometimes time out); 2 when a server did not start or died.
Every server is stopped at the end.
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
from typing import Any, Sequence

from _common import (
    ENV, REPO, ClusterServer, PySpy, Server, ServerError, breakdown, call, columns, figure, free_port, machine,
    robot, running, server_cpu, summary, twistd_server, workdir, write_cluster_file,
)

PINUS = REPO / "bench" / "pinus"
CHAT = REPO / "examples" / "chat" / "robot.py"
BODY = {"text": "hello, world", "n": 42}
AIM = 1.0  # gamenet/pinus CPU per message, at most

# Each path: the robot's options, and the servers whose CPU counts.
PATHS: dict[str, dict[str, Any]] = {
    "echo": {"servers": ("connector-1",), "frontend": "connector-1", "clients": 100,
             "load": ("--route", "connector.echoHandler.echo", "--inflight", 10, "--body", json.dumps(BODY), "--echo")},
    "forward": {"servers": ("connector-1", "area-1"), "frontend": "connector-1", "clients": 100,
                "load": ("--route", "area.echoHandler.echo", "--inflight", 10, "--body", json.dumps(BODY), "--echo")},
    "chat-10x10": {"servers": ("gate-1", "connector-1", "chat-1"), "frontend": "gate-1", "clients": 100,
                   "load": ("--scenario", CHAT, "--param", "rooms=10", "--param", "rate=5")},
    "chat-2x200": {"servers": ("gate-1", "connector-1", "chat-1"), "frontend": "gate-1", "clients": 400,
                   "load": ("--scenario", CHAT, "--param", "rooms=2", "--param", "rate=1")},
}
QUICK_CLIENTS = {"echo": 20, "forward": 20, "chat-10x10": 50, "chat-2x200": 50}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=1, help="runs of each path and side, alternating (default 1)")
    parser.add_argument("--seconds", type=float, help="measured window per run (default 10; 2 with --quick)")
    parser.add_argument("--workers", type=int, default=2, help="robot worker processes (default 2)")
    parser.add_argument("--only", help=f"comma-separated subset of {', '.join(PATHS)}")
    parser.add_argument("--quick", action="store_true", help="short, small runs: checks that it works")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample gamenet's servers with py-spy (on PATH) over each path's first round")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the rows and ratios as JSON to FILE")
    options = parser.parse_args()
    names = list(PATHS) if options.only is None else options.only.split(",")
    if set(names) - set(PATHS):
        parser.error(f"unknown path(s): {', '.join(sorted(set(names) - set(PATHS)))}")
    seconds = options.seconds or (2.0 if options.quick else 10.0)
    if min(options.rounds, options.workers, seconds) <= 0:
        parser.error("--rounds, --workers and --seconds must be positive")
    if options.py_spy and not shutil.which("py-spy"):
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")

    skipped = pinus_installed()
    if skipped:
        print(f"versus.py: the pinus comparison is skipped: {skipped}")
        if options.json:
            options.json.write_text(json.dumps({"benchmark": "versus", "skipped": skipped}) + "\n")
        return 0

    # SIGTERM (e.g. from timeout(1)) unwinds like Ctrl-C, so that the servers are stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    work = workdir()
    gamenet, pinus = gamenet_cluster(work), pinus_cluster(work)
    version = json.loads((PINUS / "node_modules" / "pinus" / "package.json").read_text())["version"]
    print(f"machine: {machine()}; Node {node_version()}, pinus {version}; "
          f"load average before the run {os.getloadavg()[0]:.2f}")
    print("clusters: gate-1, connector-1 (frontends, WebSocket), area-1, chat-1 (backends), one process each; "
          "pinus's master besides (not counted)")
    print(f"load: gamenet bench, {options.workers} workers, {seconds:g} s measured per run, {options.rounds} "
          f"round(s), gamenet first in odd rounds" + (" (--quick: not for figures)" if options.quick else ""))
    spies: dict[str, list[tuple[PySpy, Server]]] = {}
    rows: list[dict[str, Any]] = []
    try:
        with running(work, [*gamenet.values(), *pinus.values()]):
            for side in (gamenet, pinus):
                ready(side)
            for name in names:
                path = PATHS[name]
                clients = QUICK_CLIENTS[name] if options.quick else path["clients"]
                load = path["load"]
                if options.quick:
                    load = (*load, "--drain", 0.5)
                    warmup = 0.5 if "--route" in load else 1.0 + clients / 100
                else:
                    warmup = 1.0 if "--route" in load else 2.0 + clients / 100
                if options.py_spy:
                    options.py_spy.mkdir(parents=True, exist_ok=True)
                    spies[name] = [(PySpy(options.py_spy.resolve() / f"versus-{name}-{server}.txt"), gamenet[server])
                                   for server in path["servers"]]
                for number in range(1, options.rounds + 1):
                    order = (("gamenet", gamenet), ("pinus", pinus))
                    for side, servers in order if number % 2 else order[::-1]:
                        counted = [servers[server] for server in path["servers"]]
                        report = robot(f"ws://127.0.0.1:{servers[path['frontend']].port}", *load,
                                       "--clients", clients, "--workers", options.workers, servers=counted,
                                       warmup=warmup, seconds=seconds,
                                       spies=spies.get(name, ()) if side == "gamenet" and number == 1 else ())
                        rows.append(row(name, number, side, report, counted))
    except ServerError as e:
        print(f"versus.py: {e}", file=sys.stderr)
        return 2

    print()
    print(table(rows))
    paths = {name: ratios([r for r in rows if r["path"] == name]) for name in names}
    print()
    for name, p in paths.items():
        print(f"{name}: gamenet/pinus CPU per message {summary(p['cpu'])} (aim <= {AIM}x: "
              f"{'met' if p['met'] else 'missed'}), rate {summary(p['rate'])}")
    for name, found in spies.items():
        first = next(r for r in rows if r["path"] == name and r["side"] == "gamenet")
        per = {f"gamenet {server}": us for server, us in first["us_per_message"].items()}
        print()
        print(breakdown(f"{name}: gamenet CPU us per message (py-spy, round 1)", found, per))
    for warning in sorted({w for r in rows for w in r["warnings"]}):
        print(f"warning: {warning}")
    if options.json:
        options.json.write_text(json.dumps({"benchmark": "versus", "machine": machine(), "pinus": version,
                                            "quick": options.quick, "rows": rows, "paths": paths}, indent=1) + "\n")
    if any(r["errors"] for r in rows if r["side"] == "pinus"):
        print("warning: pinus's runs had errors (in the table): its figures are of the messages that went through")
    return 1 if any(r["errors"] for r in rows if r["side"] == "gamenet") else 0


def pinus_installed() -> str:
    """
    Install bench/pinus's packages with C{npm ci} when they are missing.

    @return: why the comparison cannot run, or C{""} when it can.
    """
    from tests._node import install, node_tools

    try:
        _, npm = node_tools("the pinus comparison (bench/pinus)")
        install(str(PINUS), npm)
    except RuntimeError as e:
        return str(e).splitlines()[0]
    return ""


def node_version() -> str:
    import subprocess

    return subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip().lstrip("v")


def gamenet_cluster(work: Path) -> dict[str, Server]:
    """
    gamenet's four servers, by id, in the order they start (backends first).
    """
    configs = [ClusterServer("area-1", "area"), ClusterServer("chat-1", "chat"),
               ClusterServer("connector-1", "connector", client_port=free_port()),
               ClusterServer("gate-1", "gate", client_port=free_port())]
    config = work / "gamenet.ini"
    write_cluster_file(config, configs, "websocket")
    servers = {}
    for server in configs:
        process = twistd_server(work, config, server)
        process.name = f"gamenet {server.id}"
        servers[server.id] = process
    return servers


def pinus_cluster(work: Path) -> dict[str, Server]:
    """
    pinus's master and four servers, by id (the master as C{master}), in the
    order they start: their configuration in C{work/pinus}, next to a link to
    bench/pinus/app.
    """
    base = work / "pinus"
    (base / "config").mkdir(parents=True)
    (base / "app").symlink_to(PINUS / "app")
    master = {"id": "master", "host": "127.0.0.1", "port": free_port()}
    layout = {"area": ["area-1"], "chat": ["chat-1"], "connector": ["connector-1"], "gate": ["gate-1"]}
    infos = {}
    for kind, ids in layout.items():
        for server_id in ids:
            info: dict[str, Any] = {"id": server_id, "host": "127.0.0.1", "port": free_port()}
            if kind in ("connector", "gate"):
                info.update(clientPort=free_port(), frontend=True)
            infos[server_id] = (kind, info)
    (base / "config" / "master.json").write_text(json.dumps({"bench": master}))
    (base / "config" / "servers.json").write_text(json.dumps(
        {"bench": {kind: [infos[i][1] for i in ids] for kind, ids in layout.items()}}))
    env = {**ENV, "PINUS_BENCH_BASE": str(base)}
    node = shutil.which("node") or "node"
    app = str(PINUS / "app.js")
    servers = {"master": Server("pinus master", [node, app, "env=bench", "mode=stand-alone"], master["port"], work,
                                env)}
    for server_id, (kind, info) in infos.items():
        argv = [node, app, "env=bench", f"serverType={kind}",
                *(f"{key}={json.dumps(value) if isinstance(value, bool) else value}" for key, value in info.items())]
        servers[server_id] = Server(f"pinus {server_id}", argv, info.get("clientPort", info["port"]), work, env)
    return servers


def ready(servers: dict[str, Server]) -> None:
    """
    Wait until the cluster serves every path: the forwarded echo answers and
    the gate names a connector.

    @raise ServerError: it does not within 30 s.
    """
    import time

    connector, gate = servers["connector-1"].port, servers["gate-1"].port
    deadline = time.monotonic() + 30.0
    while True:
        echo = call(connector, "area.echoHandler.echo", BODY)
        entry = call(gate, "gate.gateHandler.queryEntry", {"uid": "ready"})
        if echo == BODY and isinstance(entry, dict) and entry.get("code") == 200 and entry.get("port") == connector:
            return
        if time.monotonic() > deadline:
            raise ServerError(f"{servers['connector-1'].name}: the forwarded echo answers {echo}; "
                              f"{servers['gate-1'].name} answers {entry}")
        time.sleep(0.2)


def row(path: str, number: int, side: str, report: dict[str, Any], servers: Sequence[Server]) -> dict[str, Any]:
    """
    What one robot run measured, as a row of the table and of the JSON.
    """
    seconds = report["measured"] or float("nan")
    messages = report["completed"] + report["pushes"]["received"]
    cpu = {server.name.split()[-1]: server_cpu(report, server) for server in servers}
    return {
        "path": path, "round": number, "side": side, "requests": report["completed"],
        "pushes": report["pushes"]["received"], "messages": messages, "seconds": report["measured"],
        "per_second": round(messages / seconds, 1),
        "us_per_message": {name: round(c / messages * 1e6, 2) if messages else None for name, c in cpu.items()},
        "total_us_per_message": round(sum(cpu.values()) / messages * 1e6, 2) if messages else None,
        "cpu_percent": round(sum(cpu.values()) / seconds * 100, 1),
        "robot_cpu_percent": round(report["robot"]["cpu_seconds"] / seconds * 100, 1),
        "latency_ms": report["latency_ms"], "push_latency_ms": report["pushes"]["latency_ms"],
        "errors": report["errors"], "warnings": report["warnings"],
    }


def ratios(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """
    The gamenet/pinus ratios of one path's rows, round by round, and their medians.
    """
    by = {(r["round"], r["side"]): r for r in rows}
    rounds = sorted({r["round"] for r in rows})
    pairs = [(by[n, "gamenet"], by[n, "pinus"]) for n in rounds]
    cpu = [g["total_us_per_message"] / p["total_us_per_message"]
           if g["total_us_per_message"] and p["total_us_per_message"] else float("nan") for g, p in pairs]
    rate = [g["per_second"] / p["per_second"] if p["per_second"] else float("nan") for g, p in pairs]
    median = statistics.median(cpu)
    return {"cpu": cpu, "rate": rate, "cpu_ratio": median, "rate_ratio": statistics.median(rate), "aim": AIM,
            "met": median <= AIM}


def table(rows: list[dict[str, Any]]) -> str:
    head = ("path", "round", "side", "msg/s", "requests", "pushes", "server us/msg", "by server us/msg",
            "server CPU", "robot CPU", "req p50 ms", "push p50 ms", "errors")
    lines: list[tuple[str, ...]] = [head]
    for r in rows:
        lines.append((
            r["path"], str(r["round"]), r["side"], f"{r['per_second']:,.0f}", f"{r['requests']:,}",
            f"{r['pushes']:,}", figure(r["total_us_per_message"]),
            " ".join(f"{name} {figure(us)}" for name, us in r["us_per_message"].items()),
            f"{r['cpu_percent']:.0f}%", f"{r['robot_cpu_percent']:.0f}%",
            figure((r["latency_ms"] or {}).get("p50")), figure((r["push_latency_ms"] or {}).get("p50")),
            ", ".join(f"{kind} {count}" for kind, count in r["errors"].items()) or "0",
        ))
    return columns(lines, left=3)


if __name__ == "__main__":
    sys.exit(main())
