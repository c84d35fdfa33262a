"""
Channel push benchmark: the time from one send to the last delivery for
rooms of 10, 100 and 1,000 members spread over two connectors, against the
same push sent to a room of one member, in one run.

    .venv/bin/python bench/channel.py [--rooms 1,10,100,1000] [--sends 50]
        [--warmup 3] [--gap 0.02] [--workers 4] [--transport websocket|tcp]
        [--py-spy DIR]

Starts a cluster without a gate or a master, each server its own C{twistd -n
--pidfile= --reactor=epoll gamenet --config FILE --server ID} process (the
chat example's plugins and bench/plugins; heartbeat 30,
C{messages_per_second} 1000000): two connectors, C{connector-1} and
C{connector-2}, and one backend, C{area-1}, which holds the channels.

Then C{max(--rooms)} clients (L{gamenet.client.Client}) connect, client
C{i} to connector C{i % 2 + 1}, spread over C{--workers} processes (client
C{i} in worker C{i % workers}), at most 16 connections (and their joins)
under way per worker at a time. Each client asks C{area.benchHandler.join},
which binds its session to C{user-i} (a sys call to its connector) and adds
it to the channel C{room-N} of every room size C{N > i}: the room of C{N}
members is clients C{0 .. N-1}, half on each connector.

For each room size, smallest first: C{--warmup} sends not counted, then
C{--sends} counted ones. A send is client 0 (in every room, on
C{connector-1}) asking C{area.benchHandler.push}; the backend takes
C{time.time()} and pushes C{{"room", "n", "sent"}} on C{onBench} to the
whole channel (one sys call per connector holding members; each connector
encodes the push once and writes it to each member's connection). Every
client takes C{time.time()} when its push arrives (all processes are on one
machine, so the clocks agree). The next send goes only once every member has
its push and client 0 its answer, after C{--gap} seconds more: sends never
overlap. A send whose pushes have not all arrived within 10 s counts as
incomplete.

For each room size it prints the median time from send until the last
connector holding members got the push (its sys call C{push_uids} started:
"reached"), until it had written the push to every member's transport
("queued"), and until Twisted had put those bytes on the sockets, which it
does in its next reactor iteration ("written"), all three timed on the
connectors by bench/plugins/stats.py; the median and 95th percentile of
first delivery - send and of last delivery - send as the clients saw them;
the deliveries per second within a push (members / median last delivery -
send); and the CPU time per push of each server process and of the client
processes (time on a CPU, from /proc/<pid>/task/*/schedstat, over the
counted sends), with the total server CPU per delivery. Then whether the
median send-to-last-delivery time for the largest room is under the target
of 20 ms.

C{--py-spy DIR} samples the three servers over the largest room's counted
sends and splits their CPU per push by where it went.

Exit status: 0; 1 when a client could not connect or join, a send failed, a
push was incomplete or a room had the wrong size; 2 when a server did not
start or died. Every process started here is stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from _common import (
    ENV, ClusterServer, PySpy, ServerError, call, columns, free_port, machine, run_seconds,
    stack_shares,
    twistd_server, workdir, write_cluster_file,
)

JOIN = "area.benchHandler.join"
PUSH = "area.benchHandler.push"
PUSH_ROUTE = "onBench"
TARGET = 0.020  # seconds: median send-to-last-delivery for the largest room
CONNECT_LIMIT = 16  # connections (with their joins) under way per worker
SETUP_TIMEOUT = 90.0  # seconds for every worker to connect and join its clients
SEND_TIMEOUT = 10.0  # seconds for one send's pushes to arrive


# The parent


class Workers:
    """
    The client worker processes, and the JSON lines they print, read without blocking.
    """

    def __init__(self, specs: list[dict[str, Any]]) -> None:
        self.processes = [
            subprocess.Popen([sys.executable, __file__, "worker", json.dumps(spec)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=ENV)
            for spec in specs
        ]
        self.stopping = False  # once told to stop, a worker's exit is no error
        self._selector = selectors.DefaultSelector()
        self._buffers: dict[int, bytes] = {}
        self._ready: list[tuple[int, dict[str, Any]]] = []
        for number, process in enumerate(self.processes):
            assert process.stdout is not None
            os.set_blocking(process.stdout.fileno(), False)
            self._selector.register(process.stdout, selectors.EVENT_READ, number)
            self._buffers[number] = b""

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def tell(self, number: int, command: dict[str, Any]) -> None:
        stdin = self.processes[number].stdin
        assert stdin is not None
        stdin.write(json.dumps(command).encode() + b"\n")
        stdin.flush()

    def lines(self, deadline: float) -> Iterator[tuple[int, dict[str, Any]]]:
        """
        C{(worker number, line)} as they come, until C{deadline} (C{time.monotonic()}).

        @raise ServerError: a worker exited before it was told to stop.
        """
        while True:
            while self._ready:
                yield self._ready.pop(0)
            timeout = deadline - time.monotonic()
            if timeout <= 0:
                return
            for key, _ in self._selector.select(timeout):
                number = key.data
                data = os.read(key.fileobj.fileno(), 1 << 20)  # type: ignore[union-attr]
                if not data:
                    self._selector.unregister(key.fileobj)
                    if self.stopping:
                        continue
                    raise ServerError(f"client worker {number} exited with {self.processes[number].wait()}")
                *complete, self._buffers[number] = (self._buffers[number] + data).split(b"\n")
                self._ready.extend((number, json.loads(line)) for line in complete if line.strip())

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        self._selector.close()


class Room:
    """
    What the counted sends to one room measured.
    """

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self.first: list[float] = []  # seconds from send to the first delivery, per complete send
        self.last: list[float] = []  # the same to the last delivery
        self.incomplete = 0
        self.delivered = 0
        self.sizes: set[int] = set()  # the channel's size as the backend answered
        self.cpu: dict[str, float] = {}  # seconds over the counted sends, by process
        self.sends = 0
        self.counted: list[int] = []  # the numbers of the counted sends
        self.reached: list[float] = []  # seconds from send until the last connector got the push, per send
        self.queued: list[float] = []  # the same until the last connector had written it to every member's transport
        self.written: list[float] = []  # the same until the last connector had put it on every member's socket

    def connector_times(self, pushes: list[list[Any]]) -> None:
        """
        Fill C{reached}, C{queued} and C{written} from the connectors' timed pushes
        (C{connector.benchStats.pushes} of every connector, together).
        """
        by_send: dict[int, list[list[Any]]] = {}
        for push in pushes:
            if push[0] == self.name:
                by_send.setdefault(push[1], []).append(push)
        for n in self.counted:
            found = by_send.get(n)
            if found:
                self.reached.append(max(push[3] - push[2] for push in found))
                self.queued.append(max(push[4] - push[2] for push in found))
                if all(len(push) > 6 for push in found):
                    self.written.append(max(push[6] - push[2] for push in found))

    def percentile(self, values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, max(0, int(round(p / 100 * len(ordered))) - 1))]


def send(workers: Workers, expected: list[Counter[str]], room: Room, n: int, sender: int,
         errors: Counter[str]) -> tuple[float, float, int] | None:
    """
    One send to C{room}, waiting until every member has its push and the
    sender its answer.

    @return: send-to-first and send-to-last delivery (seconds) and the
        deliveries, or C{None} when it is incomplete.
    """
    workers.tell(sender, {"send": room.name, "n": n})
    waiting = {number for number, counts in enumerate(expected) if counts[room.name]}
    got: list[dict[str, Any]] = []
    answered = False
    for number, line in workers.lines(time.monotonic() + SEND_TIMEOUT):
        if line.get("n") != n or line.get("room") != room.name:
            errors["late line"] += 1
            continue
        if "got" in line:
            got.append(line)
            waiting.discard(number)
        elif "members" in line:
            room.sizes.add(line["members"])
            answered = True
        elif "error" in line:
            errors[f"send: {line['error']}"] += 1
            return None
        if answered and not waiting:
            break
    if waiting or not answered:
        return None
    sent = got[0]["sent"]
    return (min(line["first"] for line in got) - sent, max(line["last"] for line in got) - sent,
            sum(line["count"] for line in got))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", default="1,10,100,1000", help="room sizes, comma-separated (default 1,10,100,1000)")
    parser.add_argument("--sends", type=int, default=50, help="counted sends per room (default 50)")
    parser.add_argument("--warmup", type=int, default=3, help="sends per room before the counted ones (default 3)")
    parser.add_argument("--gap", type=float, default=0.02,
                        help="seconds between a send's last delivery and the next send (default 0.02)")
    parser.add_argument("--workers", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--transport", choices=("websocket", "tcp"), default="websocket")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="sample the servers with py-spy (on PATH) over the largest room's counted sends, "
                             "write the collapsed stacks to DIR and print where the CPU time went")
    options = parser.parse_args()
    try:
        sizes = sorted({int(size) for size in options.rooms.split(",")})
    except ValueError:
        parser.error("--rooms takes whole numbers separated by commas")
    if min(sizes) <= 0 or min(options.sends, options.workers) <= 0 or options.warmup < 0 or options.gap < 0:
        parser.error("room sizes, --sends and --workers must be positive, --warmup and --gap not negative")
    if options.py_spy and not shutil.which("py-spy"):
        parser.error("--py-spy needs py-spy on PATH (pip install py-spy)")

    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    clients = max(sizes)
    work = workdir()
    keep_logs = False
    configs = [ClusterServer("connector-1", "connector", client_port=free_port()),
               ClusterServer("connector-2", "connector", client_port=free_port()),
               ClusterServer("area-1", "area")]
    config = work / "cluster.ini"
    write_cluster_file(config, configs, options.transport)
    servers = [twistd_server(work, config, server) for server in configs]
    connectors, area = servers[:2], servers[2]
    rooms = [Room(f"room-{size}", size) for size in sizes]
    specs = [{"clients": [], "transport": options.transport, "rooms": {room.name: room.size for room in rooms},
              "sender": 0} for _ in range(min(options.workers, clients))]
    for index in range(clients):
        specs[index % len(specs)]["clients"].append([index, connectors[index % 2].port])
    sender = 0  # client 0 is in worker 0
    print(f"machine: {machine()}; load average before the run {os.getloadavg()[0]:.2f}")
    print(f"cluster: connector-1, connector-2 (frontends, {options.transport}) and area-1 (backend, holds the "
          "channels), one process each")
    print(f"load: {clients} clients in {len(specs)} processes, half on each connector; rooms of "
          f"{', '.join(str(size) for size in sizes)}; {options.warmup} + {options.sends} sends per room, "
          f"one at a time, {options.gap:g} s apart")
    errors: Counter[str] = Counter()
    samplers: dict[str, PySpy] = {}
    if options.py_spy:
        options.py_spy.mkdir(parents=True, exist_ok=True)
        samplers = {server.name: PySpy(options.py_spy.resolve() / f"channel-{server.name}.txt")
                    for server in servers}
    workers: Workers | None = None
    started = time.monotonic()
    try:
        area.start()
        for connector in connectors:
            connector.start()
        for connector in connectors:
            call(connector.port, "area.benchHandler.ready", transport=options.transport)
        workers = Workers(specs)
        expected: list[Counter[str]] = [Counter() for _ in specs]
        connected = 0
        waiting = set(range(len(specs)))
        for number, line in workers.lines(time.monotonic() + SETUP_TIMEOUT):
            expected[number] = Counter(line["expected"])
            connected += line["connected"]
            errors.update(line["errors"])
            waiting.discard(number)
            if not waiting:
                break
        if waiting:
            raise ServerError(f"client workers {sorted(waiting)} did not connect and join in {SETUP_TIMEOUT:g} s")
        for server in servers:
            server.check()
        setup = time.monotonic() - started
        print(f"connected and joined {connected} of {clients} clients in {setup:.1f} s")
        if connected < clients:
            raise ServerError(f"only {connected} of {clients} clients connected and joined: {dict(errors)}")
        n = 0
        for room in rooms:
            for _ in range(options.warmup):
                n += 1
                send(workers, expected, room, n, sender, errors)
                time.sleep(options.gap)
            spied = samplers if room is rooms[-1] else {}
            processes = {server.name: server.pid for server in servers}
            processes.update({f"client {number}": pid for number, pid in enumerate(workers.pids)})
            cpu0 = {name: run_seconds(pid) for name, pid in processes.items()}
            began = time.monotonic()
            if spied:
                # Long enough for the counted sends; py-spy stops by itself.
                for server in servers:
                    spied[server.name].start(server.pid, 3600)
            for _ in range(options.sends):
                n += 1
                outcome = send(workers, expected, room, n, sender, errors)
                room.sends += 1
                room.counted.append(n)
                if outcome is None:
                    room.incomplete += 1
                else:
                    room.first.append(outcome[0])
                    room.last.append(outcome[1])
                    room.delivered += outcome[2]
                time.sleep(options.gap)
            cpu1 = {name: run_seconds(pid) for name, pid in processes.items()}
            for spy in spied.values():
                assert spy.process is not None
                spy.process.send_signal(signal.SIGINT)  # py-spy writes what it has on SIGINT
            for spy in spied.values():
                spy.wait()
            room.cpu = {name: cpu1[name] - cpu0[name] for name in processes}
            room.cpu["seconds"] = time.monotonic() - began
            for server in servers:
                server.check()
        workers.stopping = True
        for number in range(len(specs)):
            workers.tell(number, {"stop": True})
        reports = {}
        for number, line in workers.lines(time.monotonic() + 10.0):
            if "final" in line:
                reports[number] = line
                errors.update(line["errors"])
                if len(reports) == len(specs):
                    break
        for process in workers.processes:
            process.wait(10)
        stats = call(connectors[0].port, "area.benchHandler.stats", transport=options.transport)
        pushes = [push for connector in connectors
                  for push in call(connector.port, "connector.benchStats.pushes", transport=options.transport)]
        for room in rooms:
            room.connector_times(pushes)
    except ServerError as e:
        print(f"channel.py: {e}\n(server logs in {work})", file=sys.stderr)
        keep_logs = True
        return 2
    finally:
        for spy in samplers.values():
            if spy.process is not None and spy.process.poll() is None:
                spy.process.kill()
                spy.process.wait()
        if workers is not None:
            workers.stop()
        for server in servers:
            server.stop()
        if not keep_logs:
            shutil.rmtree(work, ignore_errors=True)

    print(f"whole run {time.monotonic() - started:.1f} s; backend: {stats['pushes']} pushes started, "
          f"{stats['unreached']} members not reached")
    print()
    print(table(rooms, [server.name for server in servers]))
    wrong = [room for room in rooms if room.sizes != {room.size}]
    for room in wrong:
        errors[f"{room.name} had {sorted(room.sizes)} members, not {room.size}"] += 1
    largest = rooms[-1]
    if largest.last:
        median = statistics.median(largest.last)
        verdict = "met" if median < TARGET else "missed"
        print(f"\ntarget: median send-to-last-delivery under {TARGET * 1e3:g} ms for {largest.size:,} members over "
              f"two connectors: {median * 1e3:.1f} ms, {verdict}")
    if samplers:
        print()
        print(breakdown(largest, samplers))
    if errors:
        print(f"\nerrors: {', '.join(f'{kind} {count}' for kind, count in errors.items())}")
    failed = errors or stats["unreached"] or any(room.incomplete for room in rooms)
    return 1 if failed else 0


def table(rooms: list[Room], names: list[str]) -> str:
    head = ("members", "sends", "incomplete", "reached p50 ms", "queued p50 ms", "written p50 ms", "first p50 ms",
            "first p95 ms",
            "last p50 ms", "last p95 ms", "deliveries/s", *(f"{name} ms/push" for name in names), "clients ms/push",
            "servers us/delivery")
    rows: list[tuple[str, ...]] = [head]
    for room in rooms:
        median_last = statistics.median(room.last) if room.last else float("nan")
        clients = sum(seconds for name, seconds in room.cpu.items() if name.startswith("client "))
        servers = sum(room.cpu[name] for name in names)
        rows.append((
            f"{room.size:,}",
            str(room.sends),
            str(room.incomplete),
            f"{statistics.median(room.reached) * 1e3:.1f}" if room.reached else "nan",
            f"{statistics.median(room.queued) * 1e3:.1f}" if room.queued else "nan",
            f"{statistics.median(room.written) * 1e3:.1f}" if room.written else "nan",
            f"{statistics.median(room.first) * 1e3:.1f}" if room.first else "nan",
            f"{room.percentile(room.first, 95) * 1e3:.1f}",
            f"{median_last * 1e3:.1f}",
            f"{room.percentile(room.last, 95) * 1e3:.1f}",
            f"{room.size / median_last:,.0f}",
            *(f"{room.cpu[name] / room.sends * 1e3:.2f}" for name in names),
            f"{clients / room.sends * 1e3:.2f}",
            f"{servers / (room.sends * room.size) * 1e6:.1f}",
        ))
    return columns(rows, left=1)


def breakdown(room: Room, samplers: dict[str, PySpy]) -> str:
    """
    Each server's CPU per push to the largest room, split by where py-spy saw it spent.
    """
    shares = {name: dict(stack_shares(spy.out)) for name, spy in samplers.items() if spy.out.exists()}
    categories = sorted({category for by in shares.values() for category in by},
                        key=lambda c: -max(by.get(c, 0.0) for by in shares.values()))
    per_push = {name: room.cpu[name] / room.sends for name in shares}
    rows: list[tuple[str, ...]] = [(f"CPU ms per push to {room.size:,} members (py-spy)", *shares)]
    for category in categories:
        rows.append((category, *(f"{by.get(category, 0.0) * per_push[name] * 1e3:.2f}"
                                 for name, by in shares.items())))
    rows.append(("total", *(f"{per_push[name] * 1e3:.2f}" for name in shares)))
    return columns(rows, left=1)


# The worker process


def _worker(spec: dict[str, Any]) -> None:
    from twisted.internet import epollreactor
    from twisted.internet.error import ReactorAlreadyInstalledError

    try:
        epollreactor.install()
    except ReactorAlreadyInstalledError:
        pass  # importing _common (which imports gamenet) installed the default one: epoll on Linux
    from twisted.internet import reactor, stdio
    from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
    from twisted.protocols.basic import LineReceiver

    from gamenet.client import Client

    def say(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    class Worker(LineReceiver):
        """
        Connects and joins the clients, then sends on command and reports deliveries.
        """

        delimiter = b"\n"

        def __init__(self) -> None:
            self.clients: dict[int, Client] = {}
            self.expected: Counter[str] = Counter()
            self.errors: Counter[str] = Counter()
            # (room, n) -> [sent, first, last, count]
            self.seen: dict[tuple[str, int], list[float]] = {}
            self.stopping = False

        async def setup(self) -> None:
            limit = DeferredSemaphore(CONNECT_LIMIT)

            async def one(index: int, port: int) -> None:
                async with limit:
                    try:
                        client = await Client.connect(reactor, "127.0.0.1", port, spec["transport"])
                    except Exception as e:
                        self.errors[f"connect: {type(e).__name__}"] += 1
                        return
                    client.on(PUSH_ROUTE, self.pushed)
                    rooms = [name for name, size in spec["rooms"].items() if index < size]
                    try:
                        await client.request(JOIN, {"uid": f"user-{index}", "rooms": rooms})
                    except Exception as e:
                        self.errors[f"join: {type(e).__name__}"] += 1
                        client.close()
                        return
                    self.clients[index] = client
                    self.expected.update(rooms)

            await gatherResults([Deferred.fromCoroutine(one(index, port)) for index, port in spec["clients"]])
            say({"connected": len(self.clients), "expected": self.expected, "errors": self.errors})
            stdio.StandardIO(self, stdout=os.open(os.devnull, os.O_WRONLY))

        def pushed(self, value: dict[str, Any]) -> None:
            now = time.time()
            key = (value["room"], value["n"])
            entry = self.seen.get(key)
            if entry is None:
                entry = self.seen[key] = [value["sent"], now, now, 0]
            entry[2] = now
            entry[3] += 1
            if entry[3] == self.expected[key[0]]:
                say({"got": True, "room": key[0], "n": key[1], "sent": entry[0], "first": entry[1],
                     "last": entry[2], "count": entry[3]})
                del self.seen[key]

        def lineReceived(self, line: bytes) -> None:
            command = json.loads(line)
            if "send" in command:
                room, n = command["send"], command["n"]
                client = self.clients.get(spec["sender"])
                if client is None:
                    say({"room": room, "n": n, "error": "no sender"})
                    return
                d = client.request(PUSH, {"room": room, "n": n})
                d.addCallbacks(
                    lambda answer: say({"room": room, "n": n, "members": answer["members"]}),
                    lambda failure: say({"room": room, "n": n, "error": type(failure.value).__name__}),
                )
            elif "stop" in command:
                self.stop()

        def connectionLost(self, reason: Any = None) -> None:
            # stdin closed: the parent is gone.
            if not self.stopping:
                self.stopping = True
                reactor.stop()

        def stop(self) -> None:
            if self.stopping:
                return
            self.stopping = True
            for key, entry in self.seen.items():
                self.errors[f"{key[0]}: {entry[3]} of {self.expected[key[0]]} pushes of a send"] += 1
            say({"final": True, "errors": self.errors})
            for client in self.clients.values():
                client.close()
            reactor.callLater(0.5, reactor.stop)

    worker = Worker()
    reactor.callWhenRunning(lambda: Deferred.fromCoroutine(worker.setup()))
    reactor.run()


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        _worker(json.loads(sys.argv[2]))
    else:
        sys.exit(main())
