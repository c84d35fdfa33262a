"""
Soak with faults: the chat example under chat load for a while, its servers
killed one at a time, every acknowledged message accounted for.

    .venv/bin/python bench/soak.py [--duration 1800] [--rooms 20]
        [--users-per-room 5] [--rate 40] [--churn 1] [--kill-interval 120]
        [--recovery-bound 5] [--sample-interval 5] [--warmup 120]
        [--seed 1] [--png soak.png] [--json FILE] [--replot FILE]

Starts the chat example as an operator runs it: a master (C{twistd -n
gamenet}) on a generated cluster file of the example's five servers
(C{gate-1}, C{connector-1}, C{connector-2}, C{chat-1}, C{chat-2}, as in
etc/cluster.ini, with its protobuf bodies, route dictionary and crons) on
free loopback ports, with its admin API. Then, in this process, the chat
load (bench/_soak_load.py): C{--rooms} rooms, half routed to each chat
server, C{--users-per-room} users each entering through the gate, half over
TCP and half over WebSocket; C{--rate} messages a second to the rooms in
turn, each from a random member; C{--churn} times a second a random user
leaves and a new one enters a random room.

Every C{--kill-interval} seconds it SIGKILLs a server by the pid the admin
API gives, and the master restarts it: a random chat server (C{--seed}),
but once, the kill nearest the middle of the run, a connector. It then waits
until the admin API shows the server back and ready (its new process linked
to every other server), and checks that every room carried a message to
every member within C{--recovery-bound} seconds of that: a message sent
after it was back, acknowledged and heard by all (the run fails naming each
room that did not). No kill falls in the last C{--recovery-bound} + 20 s;
the load goes on past the duration until the last fault is checked.

The verdict: every acknowledged message (answered C{{}}) was delivered to
every member of its room connected when it was sent, but for the clients of
a killed connector, counted apart (they enter again through the gate); every
room worked again after each restart; each server's RSS grew less than 2%
per 10 minutes after C{--warmup} seconds of each process's life (one slope
over its processes, the restarted ones included; measured once they add up
to 300 s after warm-up); each server's file descriptors (the soak's
own connections to it not counted) were back within 2 of their level before
each fault 10 s after the server was back. Every C{--sample-interval}
seconds it reads each server's RSS, open file descriptors and CPU time from
/proc. It prints the figures, errors by kind and the verdict, writes the
PNG of RSS and descriptors over time (C{--png}) and all figures as JSON
(C{--json}); C{--replot FILE} draws the PNG again from such a JSON.

Exit status: 0 when the verdict passes, 1 when it fails, 2 when the cluster
did not start. The master and its servers are stopped at the end; their
log is kept (and named) when the verdict fails or it holds a traceback
(their count is printed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO, Server, ServerError, free_port, machine, workdir
import _soak_load
import _soak_report

from examples.chat.dispatcher import dispatch
from gamenet.robot import procstat

CHATS = ("chat-1", "chat-2")
CONNECTORS = ("connector-1", "connector-2")
SERVERS = ("gate-1", *CONNECTORS, *CHATS)
TOKEN = "soak-admin"
BACK_TIMEOUT = 60.0  # seconds for a killed server to be back and ready


def options(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--duration", type=float, default=1800.0, help="seconds of load (default 1800)")
    add("--rooms", type=int, default=20, help="rooms, half on each chat server (default 20)")
    add("--users-per-room", type=int, default=5, help="users entering each room at the start (default 5)")
    add("--rate", type=float, default=40.0, help="messages a second, over all rooms (default 40)")
    add("--churn", type=float, default=1.0, help="users leaving (and others entering) a second (default 1)")
    add("--kill-interval", type=float, default=120.0, help="seconds between kills; 0: none (default 120)")
    add("--recovery-bound", type=float, default=5.0,
        help="seconds after a killed server is back within which every room must work (default 5)")
    add("--sample-interval", type=float, default=5.0, help="seconds between /proc samples (default 5)")
    add("--warmup", type=float, default=120.0,
        help="seconds of each process's life before its memory growth is measured (default 120)")
    add("--seed", type=int, default=1, help="seed of the random choices (default 1)")
    add("--png", type=Path, default=Path("soak.png"), help="the plot to write (default soak.png)")
    add("--json", type=Path, metavar="FILE", help="write every figure as JSON to FILE")
    add("--replot", type=Path, metavar="FILE",
        help="only draw the PNG again from the JSON of an earlier run (--json), and exit")
    args = parser.parse_args(argv)
    if args.rooms < 2 or args.users_per_room < 2 or args.rate <= 0 or args.duration <= 0:
        parser.error("give at least 2 rooms, 2 users per room, a rate and a duration above 0")
    return args


def room_names(count: int) -> list[str]:
    """
    C{count} room names, alternately routed to each chat server by the
    example's dispatcher.
    """
    names: list[str] = []
    n = 0
    while len(names) < count:
        wanted = CHATS[len(names) % len(CHATS)]
        while dispatch(f"room{n}", CHATS) != wanted:
            n += 1
        names.append(f"room{n}")
        n += 1
    return names


def write_cluster(path: Path, ports: dict[str, int]) -> None:
    """
    The chat example's cluster file (etc/cluster.ini's servers, plugins,
    protobuf bodies, dictionary and crons) on the ports given, with an
    admin API, and servers that stop at once when told (no drain).
    """
    config = REPO / "examples" / "chat" / "config"
    lines = ["[cluster]", "name = soak", "secret = soak-secret", f"plugin_path = {REPO}",
             "plugins = examples.chat.plugins", f"dictionary = {config / 'dictionary.json'}",
             "extra_routes = onAdd onLeave onRoomStats", f"crons = {config / 'crons.json'}",
             "master_host = 127.0.0.1", f"master_port = {ports['master']}", f"admin_port = {ports['admin']}",
             f"admin_token = {TOKEN}", "drain_timeout = 0", "",
             "[frontend]", "transport = hybrid", "heartbeat = 30", f"protos_dir = {config}", ""]
    for server in SERVERS:
        lines += [f"[server:{server}]", f"type = {server.rsplit('-', 1)[0]}", "host = 127.0.0.1",
                  f"node_port = {ports[server]}"]
        if server in ("gate-1", *CONNECTORS):
            lines += ["frontend = true", f"client_port = {ports[server + '.client']}"]
        lines.append("")
    path.write_text("\n".join(lines))


class Soak:
    """
    One run: the load, the kills and the samples, over the master's admin API.
    """

    def __init__(self, reactor: Any, args: argparse.Namespace, master: Server, ports: dict[str, int]) -> None:
        from gamenet.admin._client import Api, Master, http_client

        self.reactor = reactor
        self.args = args
        self.master = master
        self.rng = random.Random(args.seed)
        self.api = Api(http_client(reactor, ""), Master(f"http://127.0.0.1:{ports['admin']}", TOKEN), reactor)
        clients = {ports[f"{server}.client"]: server for server in ("gate-1", *CONNECTORS)}
        self.load = _soak_load.ChatLoad(reactor, ports["gate-1.client"], clients, self.rng)
        self.rooms = room_names(args.rooms)
        self.samples: list[_soak_report.Sample] = []
        self.faults: list[dict[str, Any]] = []
        self.problems: list[str] = []
        self.start = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self.start

    async def sleep(self, seconds: float) -> None:
        from twisted.internet.task import deferLater

        await deferLater(self.reactor, max(0.0, seconds), lambda: None)

    async def records(self) -> dict[str, dict[str, Any]]:
        return {record["id"]: record for record in await self.api.servers()}

    async def ready(self) -> None:
        """
        Wait until every server is ready, then until every first user is in.
        """
        deadline = time.monotonic() + 90
        while not all(r["ready"] for r in (await self.records()).values()):
            if time.monotonic() > deadline:
                raise ServerError("the cluster was not ready in 90 s")
            await self.sleep(0.5)
        for room in self.rooms:
            for _ in range(self.args.users_per_room):
                self.load.add_user(room)
        while sum(len(self.load.members(room)) for room in self.rooms) < len(self.rooms) * self.args.users_per_room:
            if time.monotonic() > deadline + 60:
                raise ServerError(f"the users did not all enter in 60 s: {dict(self.load.errors)}")
            await self.sleep(0.2)

    async def run(self) -> None:
        from twisted.internet.defer import Deferred, gatherResults

        await self.ready()
        self.start = time.monotonic()
        until = self.start + self.args.duration
        sampling = Deferred.fromCoroutine(self.sample(until))
        faults = Deferred.fromCoroutine(self.kill_all())
        # The load goes on past the duration while the last fault's rooms are checked.
        await _soak_load.drive(self.load, self.rooms, self.args.rate, self.args.churn,
                               lambda: time.monotonic() < until or not faults.called)
        await gatherResults([sampling, faults], consumeErrors=True)
        await self.load.settle(self.load.delivery_timeout + 5)

    def plan(self) -> list[tuple[float, str]]:
        """
        When to kill what: every kill interval, a random chat server, the
        one nearest the middle a connector; none in the last bound + 20 s.
        """
        interval, duration = self.args.kill_interval, self.args.duration
        if interval <= 0:
            return []
        times = [interval * k for k in range(1, int(duration // interval) + 1)
                 if interval * k <= duration - self.args.recovery_bound - 20]
        if not times:
            return []
        middle = min(range(len(times)), key=lambda i: abs(times[i] - duration / 2))
        return [(t, self.rng.choice(CONNECTORS) if i == middle else self.rng.choice(CHATS))
                for i, t in enumerate(times)]

    async def kill_all(self) -> None:
        for at, server in self.plan():
            await self.sleep(at - self.now())
            await self.kill(server)

    async def kill(self, server: str) -> None:
        """
        SIGKILL C{server}, wait until it is back and ready, then check that
        every room works within the bound.
        """
        pid = (await self.records())[server]["pid"]
        fault: dict[str, Any] = {"server": server, "pid": pid, "killed": self.now(), "back": None, "broken": [],
                                 "bound": self.args.recovery_bound}
        self.faults.append(fault)
        self.load.kills.setdefault(server, []).append(time.monotonic())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + BACK_TIMEOUT
        while time.monotonic() < deadline:
            record = (await self.records())[server]
            if record["pid"] not in (None, pid) and record["ready"]:
                fault["back"], fault["new_pid"] = self.now(), record["pid"]
                break
            await self.sleep(0.25)
        else:
            return
        back = time.monotonic()
        await self.sleep(self.args.recovery_bound + 1)
        fault["rooms_checked"] = len([room for room in self.rooms if self.load.members(room)])
        fault["broken"] = self.load.broken(self.rooms, back, self.args.recovery_bound)

    async def sample(self, until: float) -> None:
        """
        Every sample interval, each server's RSS, descriptors and CPU time.
        """
        while time.monotonic() < until:
            self.load.recheck()
            try:
                pids = {server: record["pid"] for server, record in (await self.records()).items()}
            except Exception as e:
                self.problems.append(f"the admin API did not answer: {e}")
                return
            pids["master"] = self.master.pid
            t = self.now()
            for server, pid in pids.items():
                if pid is None:
                    continue
                try:
                    self.samples.append({"t": round(t, 2), "server": server, "pid": pid,
                                         "rss_kib": procstat.rss_kib(pid), "fds": procstat.open_fds(pid),
                                         "cpu_s": procstat.run_seconds(pid), "clients": self.load.open[server]})
                except (OSError, ValueError):
                    pass  # killed since the admin API answered
            await self.sleep(self.args.sample_interval)

    def summary(self) -> dict[str, Any]:
        tally = self.load.tally()
        memory = _soak_report.memory(self.samples, self.args.warmup)
        fds = _soak_report.descriptors(self.samples, self.faults)
        problems = list(self.problems)
        if self.master.process is not None and self.master.process.poll() is not None:
            problems.append(f"the master exited with {self.master.process.returncode}")
        return {
            "machine": machine(), "command": " ".join(["bench/soak.py", *sys.argv[1:]]),
            "duration_s": self.args.duration, "rooms": len(self.rooms),
            "users": len(self.rooms) * self.args.users_per_room, "rate": self.args.rate,
            "kill_interval_s": self.args.kill_interval, "seed": self.args.seed,
            "messages": tally, "counts": dict(self.load.counts), "errors": dict(self.load.errors.most_common()),
            "faults": self.faults, "kills": len(self.faults), "memory": memory, "cpu": _soak_report.cpu(self.samples),
            "descriptors": fds, "failed": _soak_report.verdict(tally, self.faults, memory, fds, problems),
            "samples": self.samples,
        }


def main(argv: list[str]) -> int:
    args = options(argv)
    if args.replot:
        earlier = json.loads(args.replot.read_text())
        _soak_report.plot(earlier["samples"], earlier["faults"], str(args.png))
        print(f"plot: {args.png}")
        return 0
    work = workdir()
    names = ["master", "admin", *SERVERS, *(f"{s}.client" for s in ("gate-1", *CONNECTORS))]
    ports = {name: free_port() for name in names}
    write_cluster(work / "cluster.ini", ports)
    twistd = str(Path(sys.executable).with_name("twistd"))
    master = Server("master", [twistd, "-n", "--pidfile=", "gamenet", "--config", str(work / "cluster.ini")],
                    ports["admin"], work)
    summary: dict[str, Any] = {}
    try:
        master.start()
        summary = _run(args, master, ports)
    except ServerError as e:
        print(f"soak: the cluster did not start or failed: {e}\n(logs in {work})", file=sys.stderr)
        return 2
    finally:
        master.stop(30)
    summary["log_tracebacks"] = master.log_path.read_text(errors="replace").count("Traceback (most recent call last)")
    print(_soak_report.text(summary))
    print(f"tracebacks in the servers' log: {summary['log_tracebacks']}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    _soak_report.plot(summary["samples"], summary["faults"], str(args.png))
    print(f"plot: {args.png}")
    if summary["failed"] or summary["log_tracebacks"]:
        print(f"server logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if summary["failed"] else 0


def _run(args: argparse.Namespace, master: Server, ports: dict[str, int]) -> dict[str, Any]:
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    result: dict[str, Any] = {}

    async def go(reactor: Any) -> None:
        soak = Soak(reactor, args, master, ports)
        await soak.run()
        result.update(soak.summary())

    try:
        react(lambda r: Deferred.fromCoroutine(go(r)))
    except SystemExit as e:
        if e.code:
            raise ServerError("the soak stopped with an error (traceback above)") from None
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
